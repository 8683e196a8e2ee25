// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title DataTransfer: escrowed data trades between a consumer and a provider (the paper's Appendix 1).
/// @notice One deployed instance serves the whole network: trades are keyed by an id in a mapping
///         (a clone per trade would cost ~45k gas more per trade than the paper's budget allows).
///         Only what the rules need lives in storage, packed in two slots; CIDs are published in
///         events (bytes32 sha2-256 digest + multicodec code) because storage is what costs gas.
contract DataTransfer {
    enum State {
        None, // no such trade
        Initiated, // consumer escrowed the price, waiting for the provider's data
        Provided, // provider published the encrypted AES key and data CIDs
        Settled, // provider paid (verifiedData or executeForcefulSettle)
        Refunded // consumer refunded (cancel or executeForcefulRefund)
    }

    /// Slot 0: consumer (160) | expiry (64) | state (8) | flags (8). Slot 1: provider (160) | amount (96).
    struct Trade {
        address consumer;
        uint64 expirationTime;
        State state;
        uint8 flags;
        address provider;
        uint96 amount;
    }

    uint8 private constant FLAG_REFUND_REQUESTED = 1;
    uint8 private constant FLAG_SETTLE_REQUESTED = 2;
    /// Gas forwarded with a pushed payout.
    uint256 private constant PAYOUT_GAS = 50_000;
    /// Bounds of the constructor's `duration` (seconds).
    uint64 public constant MIN_DURATION = 60;
    uint64 public constant MAX_DURATION = 30 days;

    /// The party that arbitrates forceful refunds/settlements (fixed at deploy, as in the paper).
    address public immutable authority;
    /// Seconds the provider has, from initTransaction, to provide the data.
    uint64 public immutable duration;

    /// Id the next trade gets; starts at 1 (set in the constructor so the first trade does not
    /// pay for a zero-to-nonzero write, and so id 0 never names a trade).
    uint256 public nextTradeId;
    mapping(uint256 tradeId => Trade) private _trades;
    /// Payouts whose push transfer failed, claimable with withdraw().
    mapping(address account => uint256) public pendingWithdrawals;

    event TradeInitiated(
        uint256 indexed tradeId,
        address indexed consumer,
        address indexed provider,
        uint256 amount,
        uint64 expirationTime,
        bytes32 schemaCid,
        uint64 schemaCodec,
        bytes32 consumerPubKeyCid,
        uint64 consumerPubKeyCodec
    );
    event DataProvided(
        uint256 indexed tradeId,
        bytes32 encryptedAesKeyCid,
        uint64 encryptedAesKeyCodec,
        bytes32 dataCid,
        uint64 dataCodec
    );
    event TradeSettled(uint256 indexed tradeId, address indexed provider, uint256 amount, bool forceful);
    event TradeRefunded(uint256 indexed tradeId, address indexed consumer, uint256 amount, bool forceful);
    event ForcefulRefundRequested(uint256 indexed tradeId);
    event ForcefulSettleRequested(uint256 indexed tradeId);
    event PayoutDeferred(address indexed account, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);

    error NotAuthority(address caller);
    error NotConsumer(uint256 tradeId, address caller);
    error NotProvider(uint256 tradeId, address caller);
    error NoEther();
    error AmountTooLarge(uint256 amount);
    error InvalidProvider(address provider);
    error InvalidAuthority();
    error InvalidDuration();
    error WrongState(uint256 tradeId, State state);
    error Expired(uint256 tradeId, uint64 expirationTime);
    error NotExpired(uint256 tradeId, uint64 expirationTime);
    error NotRequested(uint256 tradeId);
    error RefundRequested(uint256 tradeId);
    error NothingToWithdraw(address account);
    error TransferFailed(address account, uint256 amount);

    /// @param authority_ arbitrator of forceful refunds/settles; address(0) means msg.sender.
    /// @param duration_ seconds a provider has to provide the data; 0 means one day; else within
    ///        [MIN_DURATION, MAX_DURATION] (InvalidDuration).
    constructor(address authority_, uint64 duration_) {
        if (duration_ != 0 && (duration_ < MIN_DURATION || duration_ > MAX_DURATION)) revert InvalidDuration();
        authority = authority_ == address(0) ? msg.sender : authority_;
        duration = duration_ == 0 ? 1 days : duration_;
        nextTradeId = 1;
    }

    /// Consumer opens a trade with `dataProvider`, escrowing msg.value; returns the trade id.
    function initTransaction(
        address dataProvider_,
        bytes32 schemaCid,
        uint64 schemaCodec,
        bytes32 consumerPubKeyCid,
        uint64 consumerPubKeyCodec
    ) external payable returns (uint256 tradeId) {
        if (msg.value == 0) revert NoEther();
        if (msg.value > type(uint96).max) revert AmountTooLarge(msg.value);
        if (dataProvider_ == address(0) || dataProvider_ == msg.sender) revert InvalidProvider(dataProvider_);
        tradeId = nextTradeId;
        unchecked {
            nextTradeId = tradeId + 1;
        }
        uint64 expiry = uint64(block.timestamp) + duration;
        _trades[tradeId] = Trade({
            consumer: msg.sender,
            expirationTime: expiry,
            state: State.Initiated,
            flags: 0,
            provider: dataProvider_,
            amount: uint96(msg.value)
        });
        emit TradeInitiated(
            tradeId,
            msg.sender,
            dataProvider_,
            msg.value,
            expiry,
            schemaCid,
            schemaCodec,
            consumerPubKeyCid,
            consumerPubKeyCodec
        );
    }

    /// Provider publishes the encrypted AES key and data CIDs, before the expiration time.
    function provideData(
        uint256 tradeId,
        bytes32 encryptedAesKeyCid,
        uint64 encryptedAesKeyCodec,
        bytes32 dataCid,
        uint64 dataCodec
    ) external {
        Trade storage t = _trades[tradeId];
        if (msg.sender != t.provider) revert NotProvider(tradeId, msg.sender);
        if (t.state != State.Initiated) revert WrongState(tradeId, t.state);
        // The paper's onlyBefore(expirationTime): strictly before.
        if (block.timestamp >= t.expirationTime) revert Expired(tradeId, t.expirationTime);
        t.state = State.Provided;
        emit DataProvided(tradeId, encryptedAesKeyCid, encryptedAesKeyCodec, dataCid, dataCodec);
    }

    /// Consumer confirms the data: the provider is paid.
    function verifiedData(uint256 tradeId) external {
        Trade storage t = _trades[tradeId];
        if (msg.sender != t.consumer) revert NotConsumer(tradeId, msg.sender);
        if (t.state != State.Provided) revert WrongState(tradeId, t.state);
        _settle(tradeId, t, false);
    }

    /// Consumer takes the escrow back after expiry when no data was provided.
    function cancel(uint256 tradeId) external {
        Trade storage t = _trades[tradeId];
        if (msg.sender != t.consumer) revert NotConsumer(tradeId, msg.sender);
        if (t.state != State.Initiated) revert WrongState(tradeId, t.state);
        // The paper's onlyAfter(expirationTime).
        if (block.timestamp < t.expirationTime) revert NotExpired(tradeId, t.expirationTime);
        _refund(tradeId, t, false);
    }

    /// Consumer asks the authority for a refund (e.g. the data does not match its schema).
    function requestForcefulRefund(uint256 tradeId) external {
        Trade storage t = _trades[tradeId];
        if (msg.sender != t.consumer) revert NotConsumer(tradeId, msg.sender);
        State s = t.state;
        if (s != State.Initiated && s != State.Provided) revert WrongState(tradeId, s);
        t.flags |= FLAG_REFUND_REQUESTED;
        emit ForcefulRefundRequested(tradeId);
    }

    /// Provider asks the authority to settle (consumer does not confirm data it received).
    function requestForcefulSettle(uint256 tradeId) external {
        Trade storage t = _trades[tradeId];
        if (msg.sender != t.provider) revert NotProvider(tradeId, msg.sender);
        if (t.state != State.Provided) revert WrongState(tradeId, t.state);
        t.flags |= FLAG_SETTLE_REQUESTED;
        emit ForcefulSettleRequested(tradeId);
    }

    /// Provider settles on its own once `duration` has passed after the expiration time (the
    /// consumer then had at least `duration` to verify) and the consumer requested no refund: a
    /// silent consumer and an absent authority cannot lock the escrow.
    function settleAfterTimeout(uint256 tradeId) external {
        Trade storage t = _trades[tradeId];
        if (msg.sender != t.provider) revert NotProvider(tradeId, msg.sender);
        if (t.state != State.Provided) revert WrongState(tradeId, t.state);
        if (t.flags & FLAG_REFUND_REQUESTED != 0) revert RefundRequested(tradeId);
        uint64 settleAt = t.expirationTime + duration;
        if (block.timestamp < settleAt) revert NotExpired(tradeId, settleAt);
        _settle(tradeId, t, true);
    }

    /// Authority refunds the consumer of a trade whose consumer requested it.
    function executeForcefulRefund(uint256 tradeId) external {
        if (msg.sender != authority) revert NotAuthority(msg.sender);
        Trade storage t = _trades[tradeId];
        State s = t.state;
        if (s != State.Initiated && s != State.Provided) revert WrongState(tradeId, s);
        if (t.flags & FLAG_REFUND_REQUESTED == 0) revert NotRequested(tradeId);
        _refund(tradeId, t, true);
    }

    /// Authority pays the provider of a trade whose provider requested it.
    function executeForcefulSettle(uint256 tradeId) external {
        if (msg.sender != authority) revert NotAuthority(msg.sender);
        Trade storage t = _trades[tradeId];
        if (t.state != State.Provided) revert WrongState(tradeId, t.state);
        if (t.flags & FLAG_SETTLE_REQUESTED == 0) revert NotRequested(tradeId);
        _settle(tradeId, t, true);
    }

    /// Claim payouts whose direct transfer failed (pull fallback).
    function withdraw() external {
        uint256 amount = pendingWithdrawals[msg.sender];
        if (amount == 0) revert NothingToWithdraw(msg.sender);
        pendingWithdrawals[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        (bool ok,) = payable(msg.sender).call{value: amount}("");
        if (!ok) revert TransferFailed(msg.sender, amount);
    }

    // ---- getters the paper lists (per trade); CIDs are answered from the events ----

    function trade(uint256 tradeId) external view returns (Trade memory) {
        return _trades[tradeId];
    }

    function dataConsumer(uint256 tradeId) external view returns (address) {
        return _trades[tradeId].consumer;
    }

    function dataProvider(uint256 tradeId) external view returns (address) {
        return _trades[tradeId].provider;
    }

    function expirationTime(uint256 tradeId) external view returns (uint64) {
        return _trades[tradeId].expirationTime;
    }

    function requestedForcefulRefund(uint256 tradeId) external view returns (bool) {
        return _trades[tradeId].flags & FLAG_REFUND_REQUESTED != 0;
    }

    function requestedForcefulSettle(uint256 tradeId) external view returns (bool) {
        return _trades[tradeId].flags & FLAG_SETTLE_REQUESTED != 0;
    }

    // ---- payouts: state is final before any value leaves (checks-effects-interactions) ----

    function _settle(uint256 tradeId, Trade storage t, bool forceful) private {
        t.state = State.Settled;
        address to = t.provider;
        uint256 amount = t.amount;
        emit TradeSettled(tradeId, to, amount, forceful);
        _pay(to, amount);
    }

    function _refund(uint256 tradeId, Trade storage t, bool forceful) private {
        t.state = State.Refunded;
        address to = t.consumer;
        uint256 amount = t.amount;
        emit TradeRefunded(tradeId, to, amount, forceful);
        _pay(to, amount);
    }

    /// Push the payout; a recipient that rejects it cannot block the trade: the amount is
    /// credited for withdraw() instead. The trade's state is already final, so a reentrant
    /// call finds nothing to pay twice.
    /// The call forwards at most PAYOUT_GAS (enough for a smart-contract wallet, not enough to
    /// grief the payer) and copies no return data (no return-data bomb).
    function _pay(address to, uint256 amount) private {
        bool ok;
        assembly ("memory-safe") {
            ok := call(PAYOUT_GAS, to, amount, 0, 0, 0, 0)
        }
        if (!ok) {
            pendingWithdrawals[to] += amount;
            emit PayoutDeferred(to, amount);
        }
    }
}
