// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TestBase} from "./Vm.sol";
import {DataTransfer} from "../src/DataTransfer.sol";

/// A consumer contract that tries to re-enter cancel() while its refund is being paid.
contract ReentrantConsumer {
    DataTransfer public immutable dt;
    uint256 public tradeId;
    bool public attack = true;

    constructor(DataTransfer dt_) payable {
        dt = dt_;
    }

    function open(address provider, uint256 amount) external {
        tradeId = dt.initTransaction{value: amount}(provider, bytes32(uint256(1)), 0x55, bytes32(uint256(2)), 0x55);
    }

    function cancel() external {
        dt.cancel(tradeId);
    }

    function stopAttack() external {
        attack = false;
    }

    function withdraw() external {
        dt.withdraw();
    }

    receive() external payable {
        if (attack) dt.cancel(tradeId); // must fail: the trade is already Refunded
    }
}

contract DataTransferFuzz is TestBase {
    DataTransfer internal dt;
    address internal constant AUTH = address(0xA11);
    address internal constant CONSUMER = address(0xC0);
    address internal constant PROVIDER = address(0xD0);
    uint64 internal constant DURATION = 3600;

    function setUp() public {
        dt = new DataTransfer(AUTH, DURATION);
    }

    function _init(uint256 amount) internal returns (uint256 id) {
        vm.deal(CONSUMER, amount);
        vm.prank(CONSUMER);
        id = dt.initTransaction{value: amount}(PROVIDER, bytes32(uint256(1)), 0x55, bytes32(uint256(2)), 0x70);
    }

    function _provide(uint256 id) internal {
        vm.prank(PROVIDER);
        dt.provideData(id, bytes32(uint256(3)), 0x55, bytes32(uint256(4)), 0x70);
    }

    /// Settle: the provider gets exactly the escrow, the contract keeps nothing.
    function testFuzz_verifiedPaysProviderExactly(uint256 amount) public {
        amount = bound(amount, 1, type(uint96).max);
        uint256 id = _init(amount);
        assertEq(address(dt).balance, amount, "escrowed");
        _provide(id);
        uint256 before = PROVIDER.balance;
        vm.prank(CONSUMER);
        dt.verifiedData(id);
        assertEq(PROVIDER.balance, before + amount, "provider paid");
        assertEq(address(dt).balance, 0, "contract drained");
        vm.prank(CONSUMER);
        vm.expectRevert(abi.encodeWithSelector(DataTransfer.WrongState.selector, id, DataTransfer.State.Settled));
        dt.verifiedData(id);
    }

    /// Cancel: only after expiry, refunds exactly the escrow.
    function testFuzz_cancelRefundsAfterExpiry(uint256 amount, uint256 wait) public {
        amount = bound(amount, 1, type(uint96).max);
        wait = bound(wait, 0, 2 * uint256(DURATION));
        uint256 id = _init(amount);
        uint64 expiry = dt.expirationTime(id);
        vm.warp(block.timestamp + wait);
        vm.prank(CONSUMER);
        if (block.timestamp < expiry) {
            vm.expectRevert(abi.encodeWithSelector(DataTransfer.NotExpired.selector, id, expiry));
            dt.cancel(id);
            assertEq(address(dt).balance, amount, "still escrowed");
        } else {
            dt.cancel(id);
            assertEq(CONSUMER.balance, amount, "refunded");
            assertEq(address(dt).balance, 0, "contract drained");
        }
    }

    /// provideData: accepted strictly before the expiration time, refused from it on (exact boundary).
    function testFuzz_provideOnlyBeforeExpiry(uint256 wait) public {
        wait = bound(wait, 0, 2 * uint256(DURATION));
        uint256 id = _init(1 ether);
        uint64 expiry = dt.expirationTime(id);
        vm.warp(block.timestamp + wait);
        if (block.timestamp >= expiry) {
            vm.prank(PROVIDER);
            vm.expectRevert(abi.encodeWithSelector(DataTransfer.Expired.selector, id, expiry));
            dt.provideData(id, bytes32(uint256(3)), 0x55, bytes32(uint256(4)), 0x70);
        } else {
            _provide(id);
            assertTrue(dt.trade(id).state == DataTransfer.State.Provided, "provided");
        }
    }

    /// The exact boundaries: provide at expiry-1 works, at expiry fails; cancel at expiry works.
    function test_expiryBoundaries() public {
        uint256 a = _init(1 ether);
        uint256 b = _init(1 ether);
        uint64 expiry = dt.expirationTime(a);
        vm.warp(expiry - 1);
        _provide(a);
        vm.prank(CONSUMER);
        vm.expectRevert(abi.encodeWithSelector(DataTransfer.NotExpired.selector, b, expiry));
        dt.cancel(b);
        vm.warp(expiry);
        vm.prank(PROVIDER);
        vm.expectRevert(abi.encodeWithSelector(DataTransfer.Expired.selector, b, expiry));
        dt.provideData(b, bytes32(uint256(3)), 0x55, bytes32(uint256(4)), 0x70);
        vm.prank(CONSUMER);
        dt.cancel(b);
        assertTrue(dt.trade(b).state == DataTransfer.State.Refunded, "refunded at expiry");
    }

    /// Forceful paths: exactly one side is paid, exactly once, and only on request.
    function testFuzz_forcefulPaysOneSideOnce(uint256 amount, bool refund, bool provided) public {
        amount = bound(amount, 1, type(uint96).max);
        uint256 id = _init(amount);
        if (provided || !refund) _provide(id);
        uint256 c0 = CONSUMER.balance;
        uint256 p0 = PROVIDER.balance;
        if (refund) {
            vm.prank(CONSUMER);
            dt.requestForcefulRefund(id);
            vm.prank(AUTH);
            dt.executeForcefulRefund(id);
            assertEq(CONSUMER.balance, c0 + amount, "consumer refunded");
            assertEq(PROVIDER.balance, p0, "provider unpaid");
        } else {
            vm.prank(PROVIDER);
            dt.requestForcefulSettle(id);
            vm.prank(AUTH);
            dt.executeForcefulSettle(id);
            assertEq(PROVIDER.balance, p0 + amount, "provider paid");
            assertEq(CONSUMER.balance, c0, "consumer not refunded");
        }
        assertEq(address(dt).balance, 0, "contract drained");
        vm.prank(AUTH);
        vm.expectRevert();
        dt.executeForcefulRefund(id);
    }

    /// Many trades at once: the balance always equals the sum of open escrows.
    function testFuzz_balanceIsSumOfOpenEscrows(uint96[4] memory amounts, uint8 settleMask) public {
        uint256 open;
        uint256[4] memory ids;
        for (uint256 i; i < 4; ++i) {
            uint256 a = bound(amounts[i], 1, type(uint96).max / 4);
            ids[i] = _init(a);
            open += a;
        }
        for (uint256 i; i < 4; ++i) {
            if (settleMask & (1 << i) == 0) continue;
            (,,,,, uint96 a) = _tradeTuple(ids[i]);
            _provide(ids[i]);
            vm.prank(CONSUMER);
            dt.verifiedData(ids[i]);
            open -= a;
        }
        assertEq(address(dt).balance, open, "balance == open escrow");
    }

    function _tradeTuple(uint256 id)
        internal
        view
        returns (address, uint64, DataTransfer.State, uint8, address, uint96)
    {
        DataTransfer.Trade memory t = dt.trade(id);
        return (t.consumer, t.expirationTime, t.state, t.flags, t.provider, t.amount);
    }

    /// A re-entering consumer cannot get a second refund; its payout is deferred, withdrawable once.
    function testFuzz_reentrantRefundPaysOnce(uint256 amount) public {
        amount = bound(amount, 1, type(uint96).max);
        ReentrantConsumer rc = new ReentrantConsumer(dt);
        vm.deal(address(rc), amount);
        rc.open(PROVIDER, amount);
        vm.warp(block.timestamp + DURATION);
        rc.cancel();
        assertEq(address(rc).balance, 0, "push refused by re-entry");
        assertEq(dt.pendingWithdrawals(address(rc)), amount, "credited once");
        assertEq(address(dt).balance, amount, "still held");
        rc.stopAttack();
        rc.withdraw();
        assertEq(address(rc).balance, amount, "paid once");
        assertEq(address(dt).balance, 0, "contract drained");
        vm.expectRevert(abi.encodeWithSelector(DataTransfer.NothingToWithdraw.selector, address(rc)));
        rc.withdraw();
    }
    /// Why-list attack: a silent consumer and an absent authority no longer lock a provided trade.
    function testFuzz_providerSettlesAloneAfterTimeout(uint256 amount, uint256 wait) public {
        amount = bound(amount, 1, type(uint96).max);
        uint256 id = _init(amount);
        _provide(id);
        uint256 settleAt = uint256(dt.expirationTime(id)) + DURATION;
        wait = bound(wait, 0, 3 * uint256(DURATION));
        vm.warp(block.timestamp + wait);
        vm.prank(CONSUMER);
        vm.expectRevert(abi.encodeWithSelector(DataTransfer.NotProvider.selector, id, CONSUMER));
        dt.settleAfterTimeout(id);
        vm.prank(PROVIDER);
        if (block.timestamp < settleAt) {
            vm.expectRevert(abi.encodeWithSelector(DataTransfer.NotExpired.selector, id, uint64(settleAt)));
            dt.settleAfterTimeout(id);
            return;
        }
        uint256 before = PROVIDER.balance;
        dt.settleAfterTimeout(id);
        assertEq(PROVIDER.balance, before + amount, "provider paid alone");
        assertEq(address(dt).balance, 0, "contract drained");
    }

    /// A consumer's refund request freezes the provider-alone settle (the authority decides).
    function test_refundRequestBlocksTimeoutSettle() public {
        uint256 id = _init(1 ether);
        _provide(id);
        vm.prank(CONSUMER);
        dt.requestForcefulRefund(id);
        vm.warp(block.timestamp + 3 * uint256(DURATION));
        vm.prank(PROVIDER);
        vm.expectRevert(abi.encodeWithSelector(DataTransfer.RefundRequested.selector, id));
        dt.settleAfterTimeout(id);
        vm.prank(PROVIDER);
        vm.expectRevert(abi.encodeWithSelector(DataTransfer.NotProvider.selector, id + 1, PROVIDER));
        dt.settleAfterTimeout(id + 1);
    }

    /// Why-list: the constructor bounds `duration` (0 still means one day).
    function testFuzz_constructorBoundsDuration(uint64 d) public {
        bool ok = d == 0 || (d >= dt.MIN_DURATION() && d <= dt.MAX_DURATION());
        if (!ok) vm.expectRevert(DataTransfer.InvalidDuration.selector);
        DataTransfer x = new DataTransfer(AUTH, d);
        if (ok) assertEq(x.duration(), d == 0 ? 1 days : d, "duration kept");
    }
}
