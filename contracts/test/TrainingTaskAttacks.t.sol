// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TrainingTask} from "../src/TrainingTask.sol";
import {Registry} from "../src/Registry.sol";
import {TrainingTaskBase} from "./TrainingTaskBase.sol";

/// One test per attack of issue 12's "Why" list on the old contract: each now reverts with a
/// named error or gains the attacker nothing.
contract TrainingTaskAttacks is TrainingTaskBase {
    uint256 internal constant ETH = 1 ether;

    /// An all-zero split is refused; the bonus must go in full to data providers that provided data.
    function test_attack_zeroSplitIsRefused() public {
        uint256 id = _trained(10 * ETH, 2, 2, ETH, ETH);
        uint256[] memory zeros = new uint256[](2);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.SplitNotFull.selector, id, 0, 6 * ETH));
        tt.postSplit(id, zeros, bytes32(uint256(9)), RAW);
        _postSplit(id, _equal(id, 2));
        _reveal(id);
        vm.warp(block.timestamp + CW + 1);
        tt.finalize(id, _equal(id, 2));
        assertEq(tt.balances(MP), 0, "model provider recovers nothing of the pool");
        assertEq(tt.balances(dp[0]), ETH + 3 * ETH, "price + half the bonus");
    }

    /// Abandoning a task after training started pays the data providers their price and the bonus.
    function test_attack_abandonPaysDataProviders() public {
        uint256 id = _open(10 * ETH, 3, 0);
        _match(id, 0, 0, ETH, 3 * ETH);
        _match(id, 1, 1, ETH, 3 * ETH);
        _provide(id, 0);
        _provide(id, 1);
        _start(id);
        _submit(id, 0, 0);
        _submit(id, 1, 0);
        _publish(id, 0); // each compute provider earned 1 ETH
        _submit(id, 0, 1); // open round: cp0 did the work, cp1 did not
        vm.prank(MP);
        tt.abandon(id);
        assertEq(tt.balances(cp[0]), 2 * ETH, "cp0: two rounds of work");
        assertEq(tt.balances(cp[1]), ETH, "cp1: one round");
        // bonus 2 ETH + unearned compute 3 ETH go equally to the two data providers
        assertEq(tt.balances(dp[0]), ETH + 2.5 ether, "dp0 price + equal share");
        assertEq(tt.balances(dp[1]), ETH + 2.5 ether, "dp1 price + equal share");
        assertEq(tt.balances(MP), 0, "abandoning saves the model provider nothing");
    }

    /// Publishing every round at once: refused before quorum or window; updates of a closed round
    /// are refused by round number, and pay skipped by an early close goes to the bonus, not back.
    function test_attack_publishAllRoundsInOneBlock() public {
        uint256 id = _open(10 * ETH, 3, 2);
        _match(id, 0, 0, ETH, 3 * ETH);
        _match(id, 1, 1, ETH, 3 * ETH);
        _provide(id, 0);
        _provide(id, 1);
        _start(id);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.QuorumNotReached.selector, id, 0, 0, 2));
        tt.publishGlobalModel(id, 0, bytes32(uint256(1)), RAW);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.WrongRound.selector, id, 1, 0));
        tt.publishGlobalModel(id, 1, bytes32(uint256(1)), RAW);
        _submit(id, 0, 0);
        _submit(id, 1, 0);
        _publish(id, 0);
        assertEq(tt.balances(cp[0]), ETH, "round 0 pay credited when it closed");
        // The same transaction landing twice cannot close round 1.
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.WrongRound.selector, id, 0, 1));
        tt.publishGlobalModel(id, 0, bytes32(uint256(0x6106A1)), RAW);
        // Round 1: only cp0 submits; the model provider must wait for the window to close.
        _submit(id, 0, 1);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.QuorumNotReached.selector, id, 1, 1, 2));
        tt.publishGlobalModel(id, 1, bytes32(uint256(1)), RAW);
        vm.warp(block.timestamp + RD);
        _publish(id, 1);
        uint256 cpPay = tt.balances(cp[0]) + tt.balances(cp[1]);
        assertEq(cpPay, 3 * ETH, "cp0 two rounds, cp1 one");
        assertEq(_bonus(id), 2 * ETH + ETH, "cp1's skipped share went to the bonus");
    }

    /// The deadline is bounded by the rounds' windows; pay is never locked beyond them.
    function test_attack_farDeadlineIsRefused() public {
        TrainingTask.TaskParams memory p = _params(2, 0);
        uint256 earliest = block.timestamp + 2 * (RD + AW) + AW;
        p.deadline = uint40(earliest + tt.MATCHING_MARGIN() + 1);
        vm.deal(MP, ETH);
        vm.prank(MP);
        vm.expectRevert(
            abi.encodeWithSelector(TrainingTask.InvalidDeadline.selector, p.deadline, earliest, earliest + tt.MATCHING_MARGIN())
        );
        tt.openTask{value: ETH}(p);
        // A model provider that stops publishing: anyone abandons once the aggregation window passed.
        uint256 id = _open(10 * ETH, 2, 0);
        _match(id, 0, 0, ETH, 2 * ETH);
        _provide(id, 0);
        _start(id);
        _submit(id, 0, 0);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.TooEarly.selector, id, block.timestamp + RD + AW + 1));
        tt.abandon(id);
        vm.warp(block.timestamp + RD + AW + 1);
        vm.prank(STRANGER);
        tt.abandon(id);
        assertEq(tt.balances(cp[0]), ETH, "the submitted update is paid");
        assertEq(tt.balances(dp[0]), ETH + 8 * ETH, "data provider: price + bonus + unearned compute");
    }

    /// Matches need both owners' consent over this task, these offers and prices; no late matches.
    function test_attack_matchWithoutConsent() public {
        uint256 id = _open(10 * ETH, 1, 0);
        uint256 until = block.timestamp + 1 hours;
        bytes32 d = tt.consentDigest(TrainingTask.MatchConsent(id, dOffer[0], cOffer[0], ETH, ETH, until));
        bytes memory ds = _sig(dpKey[0], d);
        bytes memory cs = _sig(cpKey[0], d);
        bytes memory forged = _sig(0xBAD, d);
        vm.startPrank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.InvalidSignature.selector, dp[0]));
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[0], cOffer[0], ETH, ETH, until), forged, cs);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.InvalidSignature.selector, cp[0]));
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[0], cOffer[0], ETH, ETH, until), ds, ds);
        // A higher price than signed does not verify.
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.InvalidSignature.selector, dp[0]));
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[0], cOffer[0], 2 * ETH, ETH, until), ds, cs);
        // Offers must be of the right kind and active.
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.WrongOfferKind.selector, cOffer[0]));
        tt.recordMatch(TrainingTask.MatchConsent(id, cOffer[0], cOffer[0], ETH, ETH, until), ds, cs);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.UnknownOffer.selector, 999));
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[0], 999, ETH, ETH, until), ds, cs);
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[0], cOffer[0], ETH, ETH, until), ds, cs);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.ConsentAlreadyUsed.selector, d));
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[0], cOffer[0], ETH, ETH, until), ds, cs);
        vm.stopPrank();
        vm.prank(dp[1]);
        reg.withdrawOffer(dOffer[1]);
        bytes32 d1 = tt.consentDigest(TrainingTask.MatchConsent(id, dOffer[1], cOffer[1], ETH, ETH, until));
        (ds, cs) = (_sig(dpKey[1], d1), _sig(cpKey[1], d1));
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.OfferNotActive.selector, dOffer[1]));
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[1], cOffer[1], ETH, ETH, until), ds, cs);
        // A consent for another task does not verify here.
        uint256 other = _open(ETH, 1, 0);
        bytes32 d2 = tt.consentDigest(TrainingTask.MatchConsent(other, dOffer[2], cOffer[2], 0, 0, until));
        (ds, cs) = (_sig(dpKey[2], d2), _sig(cpKey[2], d2));
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.InvalidSignature.selector, dp[2]));
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[2], cOffer[2], 0, 0, until), ds, cs);
        // Expired consent.
        vm.warp(until + 1);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.ConsentExpired.selector, until));
        tt.recordMatch(TrainingTask.MatchConsent(other, dOffer[2], cOffer[2], 0, 0, until), ds, cs);
        // After training starts no match can be added (a late sybil cannot take the pool).
        _start(id);
        uint256 until2 = block.timestamp + 1 hours;
        bytes32 d3 = tt.consentDigest(TrainingTask.MatchConsent(id, dOffer[3], cOffer[3], ETH, ETH, until2));
        (ds, cs) = (_sig(dpKey[3], d3), _sig(cpKey[3], d3));
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.WrongPhase.selector, id, TrainingTask.Phase.Training));
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[3], cOffer[3], ETH, ETH, until2), ds, cs);
    }

    /// An update for a closed round is refused by its round number (not counted for the next round),
    /// and one after the round window is refused.
    function test_attack_lateUpdateIsNotCountedForTheNextRound() public {
        uint256 id = _open(10 * ETH, 3, 1);
        _match(id, 0, 0, ETH, 3 * ETH);
        _match(id, 1, 1, ETH, 3 * ETH);
        _start(id);
        _submit(id, 0, 0);
        _publish(id, 0); // quorum 1 reached
        vm.prank(cp[1]);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.WrongRound.selector, id, 0, 1));
        tt.submitUpdate(id, 1, 0, bytes32(uint256(5)), RAW);
        vm.warp(block.timestamp + RD);
        vm.prank(cp[1]);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.RoundWindowClosed.selector, id, 1, block.timestamp));
        tt.submitUpdate(id, 1, 1, bytes32(uint256(5)), RAW);
    }

    /// A copied or junk update is rejected with evidence and earns nothing; the rejection does not
    /// pay the model provider either (the share goes to the bonus).
    function test_attack_copiedUpdateEarnsNothing() public {
        uint256 id = _open(10 * ETH, 1, 0);
        _match(id, 0, 0, ETH, 2 * ETH);
        _match(id, 1, 1, ETH, 2 * ETH);
        _provide(id, 0);
        _provide(id, 1);
        _start(id);
        bytes32 honest = bytes32(uint256(0xAAAA));
        vm.prank(cp[0]);
        tt.submitUpdate(id, 0, 0, honest, RAW);
        vm.prank(cp[1]);
        tt.submitUpdate(id, 1, 0, honest, RAW); // copied from the event
        vm.prank(cp[1]);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotModelProvider.selector, id, cp[1]));
        tt.rejectUpdate(id, 0, 0, bytes32(uint256(0xE1)), RAW);
        vm.prank(MP);
        tt.rejectUpdate(id, 1, 0, bytes32(uint256(0xE1)), RAW); // evidence: envelope bound to cp0
        vm.prank(cp[1]);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.AlreadySubmitted.selector, id, 1, 0));
        tt.submitUpdate(id, 1, 0, bytes32(uint256(0xBBBB)), RAW);
        vm.warp(block.timestamp + RD); // quorum (2) not reached after the rejection: wait for the window
        _publish(id, 0);
        assertEq(tt.balances(cp[0]), 2 * ETH, "honest update paid");
        assertEq(tt.balances(cp[1]), 0, "copied update earns nothing");
        assertEq(_bonus(id), 4 * ETH + 2 * ETH, "its share went to the bonus");
    }

    /// The test set must open the commitment; a model provider that never reveals gets the equal
    /// split imposed; payouts wait for the challenge window, and the arbiter can replace the split.
    function test_attack_revealIsCheckedAndHasConsequences() public {
        uint256 id = _trained(10 * ETH, 1, 2, ETH, ETH);
        uint256[] memory skewed = new uint256[](2);
        skewed[0] = _bonus(id); // everything to dp0 (say, the model provider's sybil)
        _postSplit(id, skewed);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.TestSetMismatch.selector, id));
        tt.revealTestSet(id, TS_CID, TS_CODEC, bytes32(uint256(1)));
        _reveal(id);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.TooEarly.selector, id, block.timestamp + CW + 1));
        tt.finalize(id, skewed);
        assertEq(tt.balances(dp[0]), ETH, "nothing of the bonus before the challenge window ends");
        vm.prank(dp[1]);
        tt.challenge(id, bytes32(uint256(0xE2)), RAW);
        uint256[] memory fair = _equal(id, 2);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotArbiter.selector, id, MP));
        tt.replaceSplit(id, fair, bytes32(uint256(0xE3)), RAW);
        vm.prank(ARB);
        tt.replaceSplit(id, fair, bytes32(uint256(0xE3)), RAW);
        assertEq(tt.balances(dp[1]), ETH + 3 * ETH, "arbiter's split credited");
        assertTrue(tt.task(id).phase == TrainingTask.Phase.Final, "final");
    }

    function test_attack_neverRevealedSplitsTheBonusEqually() public {
        uint256 id = _trained(10 * ETH, 1, 2, ETH, ETH);
        uint256[] memory skewed = new uint256[](2);
        skewed[0] = _bonus(id);
        _postSplit(id, skewed);
        vm.prank(MP);
        tt.revealKey(id, bytes32(uint256(0x4E7)), RAW); // key only: the test set never comes
        vm.warp(block.timestamp + AW + 1);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.RevealWindowPassed.selector, id, block.timestamp - 1));
        tt.revealTestSet(id, TS_CID, TS_CODEC, SALT);
        tt.finalize(id, new uint256[](0));
        assertEq(tt.balances(dp[0]), ETH + 3 * ETH, "equal split, not the posted one");
        assertEq(tt.balances(dp[1]), ETH + 3 * ETH, "equal split");
    }
}
