// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Registry} from "./Registry.sol";

/// @title TrainingTask: federated-learning tasks whose rules make cheating unprofitable (paper §3.3, §4.3-4.5).
/// @notice One contract holds every task by id. Phases: Matching -> Training -> SplitPosted ->
///         (Challenged) -> Final, or Abandoned. A model provider escrows a pool and records matches
///         (a Registry data offer + compute offer, consented by both owners with EIP-712 signatures);
///         each match's data price and compute price are reserved at match time, the rest of the pool
///         is the contribution bonus that the final split must give in full to the data providers that
///         provided data. Rounds have windows; compute pay of a round is credited when the round closes.
///         After the split the model provider reveals the envelope key and the test set, then a
///         challenge window runs; the task's arbiter settles a challenged split. Every payout is
///         credited and pulled with withdraw()/withdrawTo(). CIDs (sha2-256 digest + multicodec code)
///         are only in events. See docs/contracts.md.
contract TrainingTask {
    enum Phase {
        None, // no such task
        Matching, // recording consented matches; data may already be provided
        Training, // matches frozen; rounds run
        SplitPosted, // bonus split posted; reveal, then challenge window
        Challenged, // a matched party disputes the split; the arbiter rules
        Final, // everything credited
        Abandoned // ended early; everything credited
    }

    /// What the model provider fixes at open (also published whole in TaskOpened).
    struct TaskParams {
        bytes32 manifestCid;
        uint64 manifestCodec;
        bytes32 hePublicKeyCid;
        uint64 hePublicKeyCodec;
        bytes32 encPublicKeyCid;
        uint64 encPublicKeyCodec;
        /// keccak256(abi.encodePacked(testSetCidDigest, salt)); checked by revealTestSet (dainode/tasks/testset.py).
        bytes32 testSetCommitment;
        uint16 rounds;
        /// Accepted updates that let the model provider close a round before its window ends (0 = every match).
        uint16 quorum;
        uint32 roundDuration;
        uint32 aggregationWindow;
        uint32 challengeWindow;
        uint40 deadline;
        /// Who rules on a challenged split; address(0) = the contract's authority.
        address arbiter;
    }

    /// Slot 0: modelProvider | phase | rounds | round | quorum | roundUpdates | matchCount | revealed flags.
    /// Slot 1: escrow (wei of this task not yet credited) | bonus (wei the split must distribute).
    /// Slot 2: arbiter | roundDuration | aggregationWindow | challengeWindow.
    /// Slot 3: deadline | roundStart | splitAt | revealedAt | challengedAt.
    struct Task {
        address modelProvider;
        Phase phase;
        uint16 rounds;
        uint16 round; // rounds closed so far (= index of the open round)
        uint16 quorum;
        uint16 roundUpdates; // accepted updates in the open round
        uint8 matchCount;
        uint8 revealed; // bit 0: key revealed, bit 1: test set revealed
        uint128 escrow;
        uint128 bonus;
        address arbiter;
        uint32 roundDuration;
        uint32 aggregationWindow;
        uint32 challengeWindow;
        uint40 deadline;
        uint40 roundStart; // when the open round started (after the last round: when it closed)
        uint40 splitAt;
        uint40 revealedAt;
        uint40 challengedAt;
        bytes32 testSetCommitment;
        bytes32 splitHash; // keccak256(abi.encode(bonuses)) of the posted split
    }

    /// What the data provider and the compute provider both sign (EIP-712 type MatchConsent);
    /// `deadline` is when the consent stops being usable.
    struct MatchConsent {
        uint256 taskId;
        uint256 dataOfferId;
        uint256 computeOfferId;
        uint256 dataPrice;
        uint256 computePrice;
        uint256 deadline;
    }

    /// Slot 0: dataProvider | dataPrice | provided. Slot 1: computeProvider | computePrice | lastRound.
    struct Match {
        address dataProvider;
        uint80 dataPrice;
        bool provided;
        address computeProvider;
        uint80 computePrice;
        /// 1 + the round of the latest update (0: none); bit 15 set: that update was rejected.
        uint16 lastRound;
    }

    uint256 public constant MAX_MATCHES = 64;
    uint256 public constant MAX_ROUNDS = 1000;
    uint256 public constant MIN_WINDOW = 60;
    uint256 public constant MAX_WINDOW = 30 days;
    /// Slack the deadline may leave beyond the time the rounds and the split need (matching time).
    uint256 public constant MATCHING_MARGIN = 7 days;
    /// Time the arbiter has to rule on a challenge before anyone may finalize with the equal split.
    uint256 public constant ARBITRATION_PERIOD = 14 days;
    uint16 private constant REJECTED = 0x8000;
    uint8 private constant KEY_REVEALED = 1;
    uint8 private constant TEST_SET_REVEALED = 2;

    bytes32 public constant CONSENT_TYPEHASH = keccak256(
        "MatchConsent(uint256 taskId,uint256 dataOfferId,uint256 computeOfferId,uint256 dataPrice,uint256 computePrice,uint256 deadline)"
    );
    bytes32 private constant DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant NAME_HASH = keccak256("dainode TrainingTask");
    bytes32 private constant VERSION_HASH = keccak256("2");
    uint256 private constant HALF_N = 0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF5D576E7357A4501DDFE92F46681B20A0;

    Registry public immutable registry;
    /// Default arbiter of every task that names none (fixed at deploy, like DataTransfer's authority).
    address public immutable authority;
    uint256 private immutable _chainId;
    bytes32 private immutable _domainSeparator;

    /// Id the next task gets; starts at 1 (so id 0 never names a task).
    uint256 public nextTaskId;
    mapping(uint256 taskId => Task) private _tasks;
    mapping(uint256 taskId => mapping(uint256 matchId => Match)) private _matches;
    /// EIP-712 digests of consents already used (a consent makes one match).
    mapping(bytes32 digest => bool) public consentUsed;
    /// Credited payouts, claimed with withdraw()/withdrawTo().
    mapping(address account => uint256) public balances;

    event TaskOpened(uint256 indexed taskId, address indexed modelProvider, uint256 pool, address arbiter, TaskParams params);
    event MatchRecorded(
        uint256 indexed taskId,
        uint256 matchId,
        address indexed dataProvider,
        address indexed computeProvider,
        uint256 dataOfferId,
        uint256 computeOfferId,
        uint256 dataPrice,
        uint256 computePrice
    );
    event TrainingStarted(uint256 indexed taskId, uint256 matches, uint16 quorum);
    event DataProvided(
        uint256 indexed taskId, uint256 indexed matchId, bytes32 encryptedDataCid, uint64 encryptedDataCodec,
        bytes32 wrappedKeyCid, uint64 wrappedKeyCodec
    );
    event UpdateSubmitted(
        uint256 indexed taskId, uint16 indexed round, uint256 matchId, address indexed computeProvider, bytes32 cid, uint64 codec
    );
    event UpdateRejected(uint256 indexed taskId, uint16 indexed round, uint256 matchId, bytes32 evidenceCid, uint64 evidenceCodec);
    event GlobalModelPublished(uint256 indexed taskId, uint16 indexed round, bytes32 cid, uint64 codec);
    event SplitPosted(uint256 indexed taskId, uint256[] bonuses, bytes32 reportCid, uint64 reportCodec);
    event KeyRevealed(uint256 indexed taskId, bytes32 cid, uint64 codec);
    event TestSetRevealed(uint256 indexed taskId, bytes32 cid, uint64 codec, bytes32 salt);
    event Challenged(uint256 indexed taskId, address indexed challenger, bytes32 evidenceCid, uint64 evidenceCodec);
    event SplitReplaced(uint256 indexed taskId, uint256[] bonuses, bytes32 rulingCid, uint64 rulingCodec);
    /// kind: 0 data price, 1 compute pay, 2 bonus, 3 refund to the model provider.
    event RewardCredited(uint256 indexed taskId, address indexed account, uint256 amount, uint8 kind);
    /// equalSplit: the bonus went out equally (no reveal, arbiter silent, or abandoned during training).
    event TaskFinalized(uint256 indexed taskId, bool equalSplit);
    event TaskAbandoned(uint256 indexed taskId, Phase phase, uint16 round);
    event Withdrawn(address indexed account, address indexed to, uint256 amount);

    error NoEther();
    error PoolTooLarge(uint256 pool);
    error InvalidRounds(uint256 rounds);
    error InvalidWindow(uint256 seconds_);
    error InvalidDeadline(uint256 deadline, uint256 earliest, uint256 latest);
    error InvalidArbiter(address arbiter);
    error EmptyCid();
    error NotModelProvider(uint256 taskId, address caller);
    error NotDataProvider(uint256 taskId, uint256 matchId, address caller);
    error NotComputeProvider(uint256 taskId, uint256 matchId, address caller);
    error NotMatchedParty(uint256 taskId, address caller);
    error NotArbiter(uint256 taskId, address caller);
    error WrongPhase(uint256 taskId, Phase phase);
    error UnknownOffer(uint256 offerId);
    error WrongOfferKind(uint256 offerId);
    error OfferNotActive(uint256 offerId);
    error InvalidParty(address party);
    error ConsentExpired(uint256 deadline);
    error ConsentAlreadyUsed(bytes32 digest);
    error InvalidSignature(address expectedSigner);
    error TooManyMatches(uint256 taskId);
    error PriceTooLarge(uint256 price);
    error InsufficientPool(uint256 taskId, uint256 needed, uint256 available);
    error NoMatches(uint256 taskId);
    error TooLateToStart(uint256 taskId, uint256 latestStart);
    error UnknownMatch(uint256 taskId, uint256 matchId);
    error AlreadyProvided(uint256 taskId, uint256 matchId);
    error WrongRound(uint256 taskId, uint16 round, uint16 current);
    error RoundWindowClosed(uint256 taskId, uint16 round, uint256 closedAt);
    error AlreadySubmitted(uint256 taskId, uint256 matchId, uint16 round);
    error NoSuchUpdate(uint256 taskId, uint256 matchId, uint16 round);
    error QuorumNotReached(uint256 taskId, uint16 round, uint16 updates, uint16 quorum);
    error AggregationWindowPassed(uint256 taskId, uint256 closedAt);
    error RoundsNotComplete(uint256 taskId, uint16 round, uint16 rounds);
    error LengthMismatch(uint256 matches, uint256 bonuses);
    error BonusToNonProvider(uint256 taskId, uint256 matchId);
    error SplitNotFull(uint256 taskId, uint256 sum, uint256 bonus);
    error SplitMismatch(uint256 taskId);
    error AlreadyRevealed(uint256 taskId);
    error TestSetMismatch(uint256 taskId);
    error RevealWindowPassed(uint256 taskId, uint256 closedAt);
    error NotRevealed(uint256 taskId);
    error ChallengeWindowPassed(uint256 taskId, uint256 closedAt);
    error TooEarly(uint256 taskId, uint256 notBefore);
    error NothingToWithdraw(address account);
    error InvalidRecipient(address to);
    error TransferFailed(address to, uint256 amount);

    /// @param registry_ the offer Registry matches must come from.
    /// @param authority_ default arbiter; address(0) means msg.sender.
    constructor(Registry registry_, address authority_) {
        if (address(registry_).code.length == 0) revert InvalidParty(address(registry_));
        registry = registry_;
        authority = authority_ == address(0) ? msg.sender : authority_;
        _chainId = block.chainid;
        _domainSeparator = _buildDomainSeparator();
        nextTaskId = 1;
    }

    modifier onlyModelProvider(uint256 taskId) {
        if (msg.sender != _tasks[taskId].modelProvider) revert NotModelProvider(taskId, msg.sender);
        _;
    }

    // ---- Matching ----

    /// Open a task; msg.value is the pool. The deadline must leave room for every round and the
    /// split (rounds x (roundDuration + aggregationWindow) + aggregationWindow) and at most
    /// MATCHING_MARGIN more.
    function openTask(TaskParams calldata p) external payable returns (uint256 taskId) {
        if (msg.value == 0) revert NoEther();
        if (msg.value > type(uint128).max) revert PoolTooLarge(msg.value);
        if (p.rounds == 0 || p.rounds > MAX_ROUNDS) revert InvalidRounds(p.rounds);
        _checkWindow(p.roundDuration);
        _checkWindow(p.aggregationWindow);
        _checkWindow(p.challengeWindow);
        if (p.manifestCid == bytes32(0)) revert EmptyCid();
        uint256 earliest = block.timestamp + _span(p.rounds, p.roundDuration, p.aggregationWindow);
        uint256 latest = earliest + MATCHING_MARGIN;
        if (p.deadline < earliest || p.deadline > latest) revert InvalidDeadline(p.deadline, earliest, latest);
        address arbiter = p.arbiter == address(0) ? authority : p.arbiter;
        if (arbiter == msg.sender) revert InvalidArbiter(arbiter);
        taskId = nextTaskId;
        unchecked {
            nextTaskId = taskId + 1;
        }
        Task storage t = _tasks[taskId];
        t.modelProvider = msg.sender;
        t.phase = Phase.Matching;
        t.rounds = p.rounds;
        t.quorum = p.quorum;
        t.escrow = uint128(msg.value);
        t.bonus = uint128(msg.value);
        t.arbiter = arbiter;
        t.roundDuration = p.roundDuration;
        t.aggregationWindow = p.aggregationWindow;
        t.challengeWindow = p.challengeWindow;
        t.deadline = p.deadline;
        t.testSetCommitment = p.testSetCommitment;
        emit TaskOpened(taskId, msg.sender, msg.value, arbiter, p);
    }

    /// Record a match of an active data offer and an active compute offer whose owners both signed
    /// the MatchConsent `c` (EIP-712) for this task, these offers, prices and consent deadline.
    /// Both prices are reserved from the pool.
    function recordMatch(MatchConsent calldata c, bytes calldata dataSignature, bytes calldata computeSignature)
        external
        returns (uint256 matchId)
    {
        uint256 taskId = c.taskId;
        Task storage t = _tasks[taskId];
        if (msg.sender != t.modelProvider) revert NotModelProvider(taskId, msg.sender);
        if (t.phase != Phase.Matching) revert WrongPhase(taskId, t.phase);
        if (block.timestamp > c.deadline) revert ConsentExpired(c.deadline);
        if (c.dataPrice > type(uint80).max) revert PriceTooLarge(c.dataPrice);
        if (c.computePrice > type(uint80).max) revert PriceTooLarge(c.computePrice);
        matchId = t.matchCount;
        if (matchId >= MAX_MATCHES) revert TooManyMatches(taskId);
        uint256 needed = c.dataPrice + c.computePrice;
        if (needed > t.bonus) revert InsufficientPool(taskId, needed, t.bonus);
        address dp = _offerOwner(c.dataOfferId, Registry.Kind.Data);
        address cp = _offerOwner(c.computeOfferId, Registry.Kind.Compute);
        if (dp == msg.sender) revert InvalidParty(dp);
        if (cp == msg.sender) revert InvalidParty(cp);
        bytes32 digest = consentDigest(c);
        if (consentUsed[digest]) revert ConsentAlreadyUsed(digest);
        _checkSignature(digest, dataSignature, dp);
        _checkSignature(digest, computeSignature, cp);
        consentUsed[digest] = true;
        t.bonus -= uint128(needed); // <= bonus, checked above
        t.matchCount = uint8(matchId + 1); // < MAX_MATCHES
        _storeMatch(c, matchId, dp, cp);
    }

    /// (Its own frame: recordMatch alone would not fit the legacy code generator's stack, which slither uses.)
    function _storeMatch(MatchConsent calldata c, uint256 matchId, address dp, address cp) private {
        _matches[c.taskId][matchId] = Match({
            dataProvider: dp,
            dataPrice: uint80(c.dataPrice), // checked in recordMatch
            provided: false,
            computeProvider: cp,
            computePrice: uint80(c.computePrice),
            lastRound: 0
        });
        emit MatchRecorded(c.taskId, matchId, dp, cp, c.dataOfferId, c.computeOfferId, c.dataPrice, c.computePrice);
    }

    /// Freeze the matches and open round 0.
    function startTraining(uint256 taskId) external onlyModelProvider(taskId) {
        Task storage t = _tasks[taskId];
        if (t.phase != Phase.Matching) revert WrongPhase(taskId, t.phase);
        uint256 n = t.matchCount;
        if (n == 0) revert NoMatches(taskId);
        uint256 latestStart = _latestStart(t);
        if (block.timestamp > latestStart) revert TooLateToStart(taskId, latestStart);
        uint16 q = t.quorum;
        if (q == 0 || q > n) q = uint16(n);
        t.quorum = q;
        t.phase = Phase.Training;
        t.roundStart = uint40(block.timestamp);
        emit TrainingStarted(taskId, n, q);
    }

    /// The match's data provider publishes its encrypted data and the wrapped key; its price is credited.
    function provideData(
        uint256 taskId,
        uint256 matchId,
        bytes32 encryptedDataCid,
        uint64 encryptedDataCodec,
        bytes32 wrappedKeyCid,
        uint64 wrappedKeyCodec
    ) external {
        Task storage t = _tasks[taskId];
        if (t.phase != Phase.Matching && t.phase != Phase.Training) revert WrongPhase(taskId, t.phase);
        Match storage m = _match(taskId, t, matchId);
        if (msg.sender != m.dataProvider) revert NotDataProvider(taskId, matchId, msg.sender);
        if (m.provided) revert AlreadyProvided(taskId, matchId);
        if (encryptedDataCid == bytes32(0) || wrappedKeyCid == bytes32(0)) revert EmptyCid();
        m.provided = true;
        emit DataProvided(taskId, matchId, encryptedDataCid, encryptedDataCodec, wrappedKeyCid, wrappedKeyCodec);
        _credit(taskId, t, msg.sender, m.dataPrice, 0);
    }

    // ---- Training ----

    /// The match's compute provider submits its update for the open `round`, inside the round window.
    /// The update envelope binds (task, round, match, sender) in its associated data, so a copied CID
    /// does not open under the copier's binding and the model provider rejects it (docs/contracts.md).
    function submitUpdate(uint256 taskId, uint256 matchId, uint16 round, bytes32 cid, uint64 codec) external {
        Task storage t = _tasks[taskId];
        if (t.phase != Phase.Training) revert WrongPhase(taskId, t.phase);
        Match storage m = _match(taskId, t, matchId);
        if (msg.sender != m.computeProvider) revert NotComputeProvider(taskId, matchId, msg.sender);
        uint16 current = t.round;
        if (round != current) revert WrongRound(taskId, round, current);
        uint256 closesAt = uint256(t.roundStart) + t.roundDuration;
        if (block.timestamp >= closesAt) revert RoundWindowClosed(taskId, round, closesAt);
        if (m.lastRound & ~REJECTED == round + 1) revert AlreadySubmitted(taskId, matchId, round);
        if (cid == bytes32(0)) revert EmptyCid();
        m.lastRound = round + 1;
        t.roundUpdates += 1;
        emit UpdateSubmitted(taskId, round, matchId, msg.sender, cid, codec);
    }

    /// The model provider rejects an update of the open round, naming its evidence; it earns nothing
    /// and its share goes to the bonus (so rejecting never saves the model provider money).
    function rejectUpdate(uint256 taskId, uint256 matchId, uint16 round, bytes32 evidenceCid, uint64 evidenceCodec)
        external
        onlyModelProvider(taskId)
    {
        Task storage t = _tasks[taskId];
        if (t.phase != Phase.Training) revert WrongPhase(taskId, t.phase);
        Match storage m = _match(taskId, t, matchId);
        if (round != t.round) revert WrongRound(taskId, round, t.round);
        if (m.lastRound != round + 1) revert NoSuchUpdate(taskId, matchId, round);
        if (evidenceCid == bytes32(0)) revert EmptyCid();
        m.lastRound = (round + 1) | REJECTED;
        t.roundUpdates -= 1;
        emit UpdateRejected(taskId, round, matchId, evidenceCid, evidenceCodec);
    }

    /// Close `round` with its global model: allowed once `quorum` updates are accepted or the round
    /// window has ended, and until the aggregation window after it. Credits the round's compute pay.
    function publishGlobalModel(uint256 taskId, uint16 round, bytes32 cid, uint64 codec)
        external
        onlyModelProvider(taskId)
    {
        Task storage t = _tasks[taskId];
        if (t.phase != Phase.Training) revert WrongPhase(taskId, t.phase);
        uint16 current = t.round;
        if (round != current || round >= t.rounds) revert WrongRound(taskId, round, current);
        uint256 windowEnd = uint256(t.roundStart) + t.roundDuration;
        uint16 updates = t.roundUpdates;
        if (updates < t.quorum && block.timestamp < windowEnd) {
            revert QuorumNotReached(taskId, round, updates, t.quorum);
        }
        uint256 closedAt = windowEnd + t.aggregationWindow;
        if (block.timestamp > closedAt) revert AggregationWindowPassed(taskId, closedAt);
        if (cid == bytes32(0)) revert EmptyCid();
        t.round = round + 1;
        t.roundUpdates = 0;
        t.roundStart = uint40(block.timestamp);
        emit GlobalModelPublished(taskId, round, cid, codec);
        _payRound(taskId, t, round, true);
    }

    // ---- Payout ----

    /// After the last round, within the aggregation window: post the bonus split, one entry per
    /// match; only data providers that provided data get a share and the shares sum to the bonus.
    function postSplit(uint256 taskId, uint256[] calldata bonuses, bytes32 reportCid, uint64 reportCodec)
        external
        onlyModelProvider(taskId)
    {
        Task storage t = _tasks[taskId];
        if (t.phase != Phase.Training) revert WrongPhase(taskId, t.phase);
        if (t.round < t.rounds) revert RoundsNotComplete(taskId, t.round, t.rounds);
        uint256 closedAt = uint256(t.roundStart) + t.aggregationWindow;
        if (block.timestamp > closedAt) revert AggregationWindowPassed(taskId, closedAt);
        if (reportCid == bytes32(0)) revert EmptyCid();
        _checkSplit(taskId, t, bonuses);
        t.phase = Phase.SplitPosted;
        t.splitAt = uint40(block.timestamp);
        t.splitHash = keccak256(abi.encode(bonuses));
        emit SplitPosted(taskId, bonuses, reportCid, reportCodec);
    }

    /// The model provider reveals the per-task envelope private key (by CID) so anyone can audit.
    function revealKey(uint256 taskId, bytes32 cid, uint64 codec) external onlyModelProvider(taskId) {
        Task storage t = _reveal(taskId, KEY_REVEALED);
        if (cid == bytes32(0)) revert EmptyCid();
        emit KeyRevealed(taskId, cid, codec);
        _revealed(t);
    }

    /// The model provider reveals the test set; its CID digest and salt must open the commitment made
    /// at open (the codec is only published, so the CID can be rebuilt).
    function revealTestSet(uint256 taskId, bytes32 cid, uint64 codec, bytes32 salt) external onlyModelProvider(taskId) {
        Task storage t = _reveal(taskId, TEST_SET_REVEALED);
        if (keccak256(abi.encodePacked(cid, salt)) != t.testSetCommitment) revert TestSetMismatch(taskId);
        emit TestSetRevealed(taskId, cid, codec, salt);
        _revealed(t);
    }

    /// A matched data or compute provider disputes the split within the challenge window after the reveal.
    function challenge(uint256 taskId, bytes32 evidenceCid, uint64 evidenceCodec) external {
        Task storage t = _tasks[taskId];
        if (t.phase != Phase.SplitPosted) revert WrongPhase(taskId, t.phase);
        if (!_isMatchedParty(taskId, t, msg.sender)) revert NotMatchedParty(taskId, msg.sender);
        if (t.revealedAt == 0) revert NotRevealed(taskId);
        uint256 closedAt = uint256(t.revealedAt) + t.challengeWindow;
        if (block.timestamp > closedAt) revert ChallengeWindowPassed(taskId, closedAt);
        if (evidenceCid == bytes32(0)) revert EmptyCid();
        t.phase = Phase.Challenged;
        t.challengedAt = uint40(block.timestamp);
        emit Challenged(taskId, msg.sender, evidenceCid, evidenceCodec);
    }

    /// The arbiter upholds the posted split (passed again; checked against its hash): everything is credited.
    function upholdSplit(uint256 taskId, uint256[] calldata bonuses) external {
        Task storage t = _arbiterTask(taskId);
        if (keccak256(abi.encode(bonuses)) != t.splitHash) revert SplitMismatch(taskId);
        _settle(taskId, t, bonuses, false);
    }

    /// The arbiter replaces the split (same rules as postSplit): everything is credited.
    function replaceSplit(uint256 taskId, uint256[] calldata bonuses, bytes32 rulingCid, uint64 rulingCodec) external {
        Task storage t = _arbiterTask(taskId);
        if (rulingCid == bytes32(0)) revert EmptyCid();
        _checkSplit(taskId, t, bonuses);
        emit SplitReplaced(taskId, bonuses, rulingCid, rulingCodec);
        _settle(taskId, t, bonuses, false);
    }

    /// Anyone: credit a posted split once its challenge window is over (`bonuses` as posted), or the
    /// equal split when the model provider did not reveal within the aggregation window after the
    /// split, or when the arbiter did not rule within ARBITRATION_PERIOD (`bonuses` ignored then).
    function finalize(uint256 taskId, uint256[] calldata bonuses) external {
        Task storage t = _tasks[taskId];
        Phase phase = t.phase;
        if (phase == Phase.SplitPosted) {
            if (t.revealedAt != 0) {
                uint256 notBefore = uint256(t.revealedAt) + t.challengeWindow + 1;
                if (block.timestamp < notBefore) revert TooEarly(taskId, notBefore);
                if (keccak256(abi.encode(bonuses)) != t.splitHash) revert SplitMismatch(taskId);
                _settle(taskId, t, bonuses, false);
            } else {
                uint256 notBefore = uint256(t.splitAt) + t.aggregationWindow + 1;
                if (block.timestamp < notBefore) revert TooEarly(taskId, notBefore);
                _settle(taskId, t, bonuses, true);
            }
        } else if (phase == Phase.Challenged) {
            uint256 notBefore = uint256(t.challengedAt) + ARBITRATION_PERIOD + 1;
            if (block.timestamp < notBefore) revert TooEarly(taskId, notBefore);
            _settle(taskId, t, bonuses, true);
        } else {
            revert WrongPhase(taskId, phase);
        }
    }

    /// End a task early. Matching: the model provider at any time, anyone once training can no
    /// longer start in time; everything not earned is refunded. Training: the model provider at any
    /// time, anyone once the open round's aggregation window (or, after the last round, the split's)
    /// has passed; the open round's accepted updates are paid, and the bonus with all unearned
    /// compute pay goes equally to the data providers that provided data (so abandoning never costs
    /// the model provider less than finishing). Unprovided data prices return to the model provider.
    function abandon(uint256 taskId) external {
        Task storage t = _tasks[taskId];
        Phase phase = t.phase;
        if (phase == Phase.Matching) {
            if (msg.sender != t.modelProvider) {
                uint256 latestStart = _latestStart(t);
                if (block.timestamp <= latestStart) revert TooEarly(taskId, latestStart + 1);
            }
        } else if (phase == Phase.Training) {
            if (msg.sender != t.modelProvider) {
                uint256 closedAt = uint256(t.roundStart) + t.aggregationWindow;
                if (t.round < t.rounds) closedAt += t.roundDuration;
                if (block.timestamp <= closedAt) revert TooEarly(taskId, closedAt + 1);
            }
        } else {
            revert WrongPhase(taskId, phase);
        }
        t.phase = Phase.Abandoned;
        emit TaskAbandoned(taskId, phase, t.round);
        if (phase == Phase.Training) {
            if (t.round < t.rounds) _payRound(taskId, t, t.round, false);
            _creditEqual(taskId, t, t.escrow - _unprovidedPrices(taskId, t));
        }
        _refundRest(taskId, t);
    }

    /// Pull every credited payout to the caller.
    function withdraw() external {
        _withdraw(payable(msg.sender));
    }

    /// Pull every credited payout of the caller to `to`.
    function withdrawTo(address payable to) external {
        if (to == address(0)) revert InvalidRecipient(to);
        _withdraw(to);
    }

    // ---- views ----

    function task(uint256 taskId) external view returns (Task memory) {
        return _tasks[taskId];
    }

    function getMatch(uint256 taskId, uint256 matchId) external view returns (Match memory) {
        return _match(taskId, _tasks[taskId], matchId);
    }

    function domainSeparator() public view returns (bytes32) {
        return block.chainid == _chainId ? _domainSeparator : _buildDomainSeparator();
    }

    /// The EIP-712 digest the data and the compute provider sign to consent to a match.
    function consentDigest(MatchConsent calldata c) public view returns (bytes32) {
        bytes32 structHash = keccak256(abi.encode(CONSENT_TYPEHASH, c));
        return keccak256(abi.encodePacked("\x19\x01", domainSeparator(), structHash));
    }

    // ---- internals ----

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(DOMAIN_TYPEHASH, NAME_HASH, VERSION_HASH, block.chainid, address(this)));
    }

    function _checkWindow(uint256 s) private pure {
        if (s < MIN_WINDOW || s > MAX_WINDOW) revert InvalidWindow(s);
    }

    /// Seconds the rounds and the split need at most: rounds x (window + aggregation) + aggregation.
    function _span(uint256 rounds, uint256 roundDuration, uint256 aggregationWindow) private pure returns (uint256) {
        return rounds * (roundDuration + aggregationWindow) + aggregationWindow;
    }

    function _latestStart(Task storage t) private view returns (uint256) {
        return uint256(t.deadline) - _span(t.rounds, t.roundDuration, t.aggregationWindow);
    }

    function _offerOwner(uint256 offerId, Registry.Kind kind) private view returns (address owner) {
        // The listed price is only a starting point: the consented prices are what counts.
        (address o, Registry.Kind k, uint256 listed, bool active) = registry.offer(offerId);
        listed;
        if (o == address(0)) revert UnknownOffer(offerId);
        if (k != kind) revert WrongOfferKind(offerId);
        if (!active) revert OfferNotActive(offerId);
        return o;
    }

    /// 65-byte (r, s, v) secp256k1 signature by `signer` over `digest`; high-s and malleable forms refused.
    function _checkSignature(bytes32 digest, bytes calldata sig, address signer) private pure {
        if (sig.length != 65) revert InvalidSignature(signer);
        bytes32 r = bytes32(sig[0:32]);
        bytes32 s = bytes32(sig[32:64]);
        uint8 v = uint8(sig[64]);
        if (uint256(s) > HALF_N || (v != 27 && v != 28)) revert InvalidSignature(signer);
        address got = ecrecover(digest, v, r, s);
        if (got == address(0) || got != signer) revert InvalidSignature(signer);
    }

    function _match(uint256 taskId, Task storage t, uint256 matchId) private view returns (Match storage) {
        if (matchId >= t.matchCount) revert UnknownMatch(taskId, matchId);
        return _matches[taskId][matchId];
    }

    function _isMatchedParty(uint256 taskId, Task storage t, address who) private view returns (bool) {
        uint256 n = t.matchCount;
        for (uint256 i; i < n; ++i) {
            Match storage m = _matches[taskId][i];
            if (m.dataProvider == who || m.computeProvider == who) return true;
        }
        return false;
    }

    /// Credit each match's share of `round`: to its compute provider when it has an accepted update
    /// for the round; otherwise to the bonus when `forfeit` (a closed round), else left in escrow.
    function _payRound(uint256 taskId, Task storage t, uint16 round, bool forfeit) private {
        uint256 n = t.matchCount;
        uint256 rounds = t.rounds;
        uint256 forfeited = 0;
        for (uint256 i; i < n; ++i) {
            Match storage m = _matches[taskId][i];
            uint256 price = m.computePrice;
            uint256 share = (price * (uint256(round) + 1)) / rounds - (price * round) / rounds;
            if (share == 0) continue;
            if (m.lastRound == round + 1) {
                _credit(taskId, t, m.computeProvider, share, 1);
            } else {
                forfeited += share;
            }
        }
        if (forfeit && forfeited != 0) t.bonus += uint128(forfeited); // <= escrow
    }

    function _checkSplit(uint256 taskId, Task storage t, uint256[] calldata bonuses) private view {
        uint256 n = t.matchCount;
        if (bonuses.length != n) revert LengthMismatch(n, bonuses.length);
        uint256 sum = 0;
        bool anyProvided = false;
        for (uint256 i; i < n; ++i) {
            bool provided = _matches[taskId][i].provided;
            anyProvided = anyProvided || provided;
            if (bonuses[i] != 0 && !provided) revert BonusToNonProvider(taskId, i);
            sum += bonuses[i];
        }
        uint256 want = anyProvided ? t.bonus : 0;
        if (sum != want) revert SplitNotFull(taskId, sum, want);
    }

    function _reveal(uint256 taskId, uint8 flag) private returns (Task storage t) {
        t = _tasks[taskId];
        if (t.phase != Phase.SplitPosted) revert WrongPhase(taskId, t.phase);
        if (t.revealed & flag != 0) revert AlreadyRevealed(taskId);
        uint256 closedAt = uint256(t.splitAt) + t.aggregationWindow;
        if (block.timestamp > closedAt) revert RevealWindowPassed(taskId, closedAt);
        t.revealed |= flag;
    }

    /// Both the key and the test set are out: the challenge window starts.
    function _revealed(Task storage t) private {
        if (t.revealed == KEY_REVEALED | TEST_SET_REVEALED) t.revealedAt = uint40(block.timestamp);
    }

    function _arbiterTask(uint256 taskId) private view returns (Task storage t) {
        t = _tasks[taskId];
        if (msg.sender != t.arbiter) revert NotArbiter(taskId, msg.sender);
        if (t.phase != Phase.Challenged) revert WrongPhase(taskId, t.phase);
    }

    /// Final: the bonus by `bonuses` (already checked) or equally, the rest back to the model provider.
    function _settle(uint256 taskId, Task storage t, uint256[] calldata bonuses, bool equal) private {
        t.phase = Phase.Final;
        emit TaskFinalized(taskId, equal);
        if (equal) {
            _creditEqual(taskId, t, t.bonus);
        } else {
            uint256 n = bonuses.length;
            for (uint256 i; i < n; ++i) {
                if (bonuses[i] != 0) _credit(taskId, t, _matches[taskId][i].dataProvider, bonuses[i], 2);
            }
        }
        _refundRest(taskId, t);
    }

    /// `amount` equally to the data providers that provided data (the first gets the rounding dust);
    /// nothing when none did (it stays in escrow for the refund).
    function _creditEqual(uint256 taskId, Task storage t, uint256 amount) private {
        uint256 n = t.matchCount;
        uint256 count = 0;
        for (uint256 i; i < n; ++i) {
            if (_matches[taskId][i].provided) ++count;
        }
        if (count == 0 || amount == 0) return;
        uint256 each = amount / count;
        uint256 dust = amount % count;
        for (uint256 i; i < n; ++i) {
            Match storage m = _matches[taskId][i];
            if (!m.provided) continue;
            _credit(taskId, t, m.dataProvider, each + dust, 2);
            dust = 0;
        }
    }

    function _unprovidedPrices(uint256 taskId, Task storage t) private view returns (uint256 sum) {
        uint256 n = t.matchCount;
        for (uint256 i; i < n; ++i) {
            Match storage m = _matches[taskId][i];
            if (!m.provided) sum += m.dataPrice;
        }
    }

    function _refundRest(uint256 taskId, Task storage t) private {
        uint256 rest = t.escrow;
        t.bonus = 0;
        if (rest != 0) _credit(taskId, t, t.modelProvider, rest, 3);
    }

    /// Move `amount` of this task's escrow to `account`'s balance (escrow always covers it).
    function _credit(uint256 taskId, Task storage t, address account, uint256 amount, uint8 kind) private {
        if (amount == 0) return;
        t.escrow -= uint128(amount);
        balances[account] += amount;
        emit RewardCredited(taskId, account, amount, kind);
    }

    function _withdraw(address payable to) private {
        uint256 amount = balances[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        balances[msg.sender] = 0;
        emit Withdrawn(msg.sender, to, amount);
        (bool ok,) = to.call{value: amount}("");
        if (!ok) revert TransferFailed(to, amount);
    }
}
