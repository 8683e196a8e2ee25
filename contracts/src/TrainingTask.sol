// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title TrainingTask: federated-learning tasks with an escrowed reward pool (paper §3.3, §4.3-4.5).
/// @notice One contract holds every task by id. A model provider opens a task (escrowing the pool),
///         records the matches it negotiated off chain (data provider, compute provider, price),
///         matched compute providers submit one update per round, the model provider publishes each
///         round's global model, then posts the data providers' reward split. Payouts are credited
///         and pulled with withdraw(). CIDs (sha2-256 digest + multicodec code) are only in events.
contract TrainingTask {
    enum State {
        None, // no such task
        Open, // training in progress
        Finished, // reward split posted, everyone credited
        Abandoned // deadline passed unfinished, pool refunded (compute work paid)
    }

    /// Slot 0: modelProvider (160) | deadline (40) | rounds (16) | round (16) | state (8).
    /// Slot 1: pool (128, escrow left) | committed (128, sum of matched compute prices).
    struct Task {
        address modelProvider;
        uint40 deadline;
        uint16 rounds;
        uint16 round;
        State state;
        uint128 pool;
        uint128 committed;
    }

    /// Slot 0: dataProvider (160) | price (96). Slot 1: computeProvider (160) | updates (16) | lastRound (16).
    struct Match {
        address dataProvider;
        uint96 price;
        address computeProvider;
        uint16 updates; // rounds for which an update was submitted
        uint16 lastRound; // 1 + the round of the latest update (0: none)
    }

    /// Bounds the loops in finishTask/refundAbandoned so they always fit in a block.
    uint256 public constant MAX_MATCHES = 64;

    /// Id the next task gets; starts at 1 (set in the constructor so the first task does not
    /// pay for a zero-to-nonzero write, and so id 0 never names a task).
    uint256 public nextTaskId;
    mapping(uint256 taskId => Task) private _tasks;
    mapping(uint256 taskId => Match[]) private _matches;
    /// Credited payouts, claimed with withdraw().
    mapping(address account => uint256) public balances;

    constructor() {
        nextTaskId = 1;
    }

    event TaskOpened(
        uint256 indexed taskId,
        address indexed modelProvider,
        uint256 pool,
        uint16 rounds,
        uint40 deadline,
        bytes32 manifestCid,
        uint64 manifestCodec,
        bytes32 hePublicKeyCid,
        uint64 hePublicKeyCodec,
        bytes32 encPublicKeyCid,
        uint64 encPublicKeyCodec,
        bytes32 testSetCommitment
    );
    event MatchRecorded(
        uint256 indexed taskId,
        uint256 matchId,
        address indexed dataProvider,
        address indexed computeProvider,
        uint256 price
    );
    event UpdateSubmitted(
        uint256 indexed taskId, uint16 indexed round, uint256 matchId, address indexed computeProvider, bytes32 cid, uint64 codec
    );
    event GlobalModelPublished(uint256 indexed taskId, uint16 indexed round, bytes32 cid, uint64 codec);
    event RewardCredited(uint256 indexed taskId, address indexed account, uint256 amount, bool compute);
    event TaskFinished(uint256 indexed taskId, uint256 dataTotal, uint256 computeTotal, uint256 refund);
    event TaskAbandoned(uint256 indexed taskId, uint256 computeTotal, uint256 refund);
    event KeyRevealed(uint256 indexed taskId, bytes32 cid, uint64 codec);
    event Withdrawn(address indexed account, uint256 amount);

    error NoEther();
    error PoolTooLarge(uint256 pool);
    error InvalidRounds(uint256 rounds);
    error InvalidDeadline(uint256 deadline);
    error EmptyCid();
    error NotModelProvider(uint256 taskId, address caller);
    error NotComputeProvider(uint256 taskId, uint256 matchId, address caller);
    error WrongState(uint256 taskId, State state);
    error DeadlinePassed(uint256 taskId, uint40 deadline);
    error DeadlineNotPassed(uint256 taskId, uint40 deadline);
    error InvalidParty(address party);
    error TooManyMatches(uint256 taskId);
    error PriceTooLarge(uint256 price);
    error InsufficientPool(uint256 taskId, uint256 needed, uint256 available);
    error UnknownMatch(uint256 taskId, uint256 matchId);
    error AlreadySubmitted(uint256 taskId, uint256 matchId, uint16 round);
    error TrainingComplete(uint256 taskId);
    error RoundsNotComplete(uint256 taskId, uint16 round, uint16 rounds);
    error LengthMismatch(uint256 matches, uint256 rewards);
    error NothingToWithdraw(address account);
    error TransferFailed(address account, uint256 amount);

    modifier onlyModelProvider(uint256 taskId) {
        if (msg.sender != _tasks[taskId].modelProvider) revert NotModelProvider(taskId, msg.sender);
        _;
    }

    /// Open a task; msg.value is the reward pool. `rounds` >= 1 federated rounds before `deadline` (unix s).
    function openTask(
        bytes32 manifestCid,
        uint64 manifestCodec,
        bytes32 hePublicKeyCid,
        uint64 hePublicKeyCodec,
        bytes32 encPublicKeyCid,
        uint64 encPublicKeyCodec,
        bytes32 testSetCommitment,
        uint16 rounds,
        uint40 deadline
    ) external payable returns (uint256 taskId) {
        if (msg.value == 0) revert NoEther();
        if (msg.value > type(uint128).max) revert PoolTooLarge(msg.value);
        if (rounds == 0) revert InvalidRounds(rounds);
        if (deadline <= block.timestamp) revert InvalidDeadline(deadline);
        if (manifestCid == bytes32(0)) revert EmptyCid();
        taskId = nextTaskId;
        unchecked {
            nextTaskId = taskId + 1;
        }
        _tasks[taskId] = Task({
            modelProvider: msg.sender,
            deadline: deadline,
            rounds: rounds,
            round: 0,
            state: State.Open,
            pool: uint128(msg.value),
            committed: 0
        });
        emit TaskOpened(
            taskId,
            msg.sender,
            msg.value,
            rounds,
            deadline,
            manifestCid,
            manifestCodec,
            hePublicKeyCid,
            hePublicKeyCodec,
            encPublicKeyCid,
            encPublicKeyCodec,
            testSetCommitment
        );
    }

    /// Record a match negotiated off chain; `price` (wei) is reserved from the pool for the compute provider.
    function recordMatch(uint256 taskId, address dataProvider, address computeProvider, uint256 price)
        external
        returns (uint256 matchId)
    {
        Task storage t = _tasks[taskId];
        if (msg.sender != t.modelProvider) revert NotModelProvider(taskId, msg.sender);
        _requireOpenBeforeDeadline(taskId, t);
        if (dataProvider == address(0) || dataProvider == msg.sender) revert InvalidParty(dataProvider);
        if (computeProvider == address(0) || computeProvider == msg.sender) revert InvalidParty(computeProvider);
        Match[] storage ms = _matches[taskId];
        if (ms.length >= MAX_MATCHES) revert TooManyMatches(taskId);
        uint256 available = t.pool - t.committed;
        if (price > available) revert InsufficientPool(taskId, price, available);
        if (price > type(uint96).max) revert PriceTooLarge(price);
        t.committed += uint128(price); // <= pool, which fits in uint128
        matchId = ms.length;
        // Pushed through the mapping (not the `ms` alias) so static analysis sees the write.
        _matches[taskId].push(
            Match({
                dataProvider: dataProvider,
                price: uint96(price), // checked above
                computeProvider: computeProvider,
                updates: 0,
                lastRound: 0
            })
        );
        emit MatchRecorded(taskId, matchId, dataProvider, computeProvider, price);
    }

    /// A matched compute provider submits its model update for the current round.
    function submitUpdate(uint256 taskId, uint256 matchId, bytes32 cid, uint64 codec) external {
        Task storage t = _tasks[taskId];
        _requireOpenBeforeDeadline(taskId, t);
        Match[] storage ms = _matches[taskId];
        if (matchId >= ms.length) revert UnknownMatch(taskId, matchId);
        Match storage m = ms[matchId];
        if (msg.sender != m.computeProvider) revert NotComputeProvider(taskId, matchId, msg.sender);
        uint16 round = t.round;
        if (round >= t.rounds) revert TrainingComplete(taskId);
        if (m.lastRound == round + 1) revert AlreadySubmitted(taskId, matchId, round);
        if (cid == bytes32(0)) revert EmptyCid();
        m.lastRound = round + 1;
        m.updates += 1;
        emit UpdateSubmitted(taskId, round, matchId, msg.sender, cid, codec);
    }

    /// The model provider publishes the aggregated global model of the current round (advances the round).
    function publishGlobalModel(uint256 taskId, bytes32 cid, uint64 codec)
        external
        onlyModelProvider(taskId)
    {
        Task storage t = _tasks[taskId];
        _requireOpenBeforeDeadline(taskId, t);
        uint16 round = t.round;
        if (round >= t.rounds) revert TrainingComplete(taskId);
        if (cid == bytes32(0)) revert EmptyCid();
        t.round = round + 1;
        emit GlobalModelPublished(taskId, round, cid, codec);
    }

    /// After the last round: post the reward split. `dataRewards[i]` (wei) goes to the data
    /// provider of match i (one entry per match, so only matched data providers can be paid);
    /// compute providers earn price * roundsSubmitted / rounds; the rest returns to the model
    /// provider. Everything is credited for withdraw().
    function finishTask(uint256 taskId, uint256[] calldata dataRewards) external onlyModelProvider(taskId) {
        Task storage t = _tasks[taskId];
        if (t.state != State.Open) revert WrongState(taskId, t.state);
        if (t.round < t.rounds) revert RoundsNotComplete(taskId, t.round, t.rounds);
        Match[] storage ms = _matches[taskId];
        uint256 n = ms.length;
        if (dataRewards.length != n) revert LengthMismatch(n, dataRewards.length);
        uint256 pool = t.pool;
        uint256 dataBudget = pool - t.committed;
        uint256 dataTotal = 0;
        // Effects first: the task is final before any credit (nothing is transferred here anyway).
        t.state = State.Finished;
        t.pool = 0;
        for (uint256 i; i < n; ++i) {
            uint256 amount = dataRewards[i];
            if (amount == 0) continue;
            dataTotal += amount;
            if (dataTotal > dataBudget) revert InsufficientPool(taskId, dataTotal, dataBudget);
            address dp = ms[i].dataProvider;
            balances[dp] += amount;
            emit RewardCredited(taskId, dp, amount, false);
        }
        uint256 computeTotal = _creditCompute(taskId, t.rounds);
        uint256 refund = pool - dataTotal - computeTotal;
        balances[t.modelProvider] += refund;
        emit TaskFinished(taskId, dataTotal, computeTotal, refund);
    }

    /// After the deadline, an unfinished task is abandoned: compute providers are credited for
    /// the rounds they submitted, the rest of the pool is credited back to the model provider.
    /// Anyone may call it (the money only goes to the task's parties).
    function refundAbandoned(uint256 taskId) external {
        Task storage t = _tasks[taskId];
        if (t.state != State.Open) revert WrongState(taskId, t.state);
        if (block.timestamp <= t.deadline) revert DeadlineNotPassed(taskId, t.deadline);
        uint256 pool = t.pool;
        t.state = State.Abandoned;
        t.pool = 0;
        uint256 computeTotal = _creditCompute(taskId, t.rounds);
        uint256 refund = pool - computeTotal;
        balances[t.modelProvider] += refund;
        emit TaskAbandoned(taskId, computeTotal, refund);
    }

    /// The model provider reveals its asymmetric private key (by CID) so anyone can re-check the split.
    function revealKey(uint256 taskId, bytes32 cid, uint64 codec) external onlyModelProvider(taskId) {
        if (cid == bytes32(0)) revert EmptyCid();
        emit KeyRevealed(taskId, cid, codec);
    }

    /// Pull every credited payout.
    function withdraw() external {
        uint256 amount = balances[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        balances[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = payable(msg.sender).call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    // ---- getters ----

    function task(uint256 taskId) external view returns (Task memory) {
        return _tasks[taskId];
    }

    function matchCount(uint256 taskId) external view returns (uint256) {
        return _matches[taskId].length;
    }

    function getMatch(uint256 taskId, uint256 matchId) external view returns (Match memory) {
        Match[] storage ms = _matches[taskId];
        if (matchId >= ms.length) revert UnknownMatch(taskId, matchId);
        return ms[matchId];
    }

    // ---- internals ----

    function _requireOpenBeforeDeadline(uint256 taskId, Task storage t) private view {
        if (t.state != State.Open) revert WrongState(taskId, t.state);
        if (block.timestamp > t.deadline) revert DeadlinePassed(taskId, t.deadline);
    }

    function _creditCompute(uint256 taskId, uint16 rounds) private returns (uint256 total) {
        Match[] storage ms = _matches[taskId];
        uint256 n = ms.length;
        for (uint256 i; i < n; ++i) {
            Match storage m = ms[i];
            uint256 earned = (uint256(m.price) * m.updates) / rounds;
            if (earned == 0) continue;
            total += earned;
            balances[m.computeProvider] += earned;
            emit RewardCredited(taskId, m.computeProvider, earned, true);
        }
    }
}
