// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TrainingTask} from "../src/TrainingTask.sol";
import {TrainingTaskBase} from "./TrainingTaskBase.sol";

/// Every function x wrong caller x wrong phase (and bad argument) reverts with its custom error.
contract TrainingTaskAccess is TrainingTaskBase {
    uint256 internal constant ETH = 1 ether;
    bytes32 internal constant C = bytes32(uint256(0xC1D));

    function _wrongPhase(uint256 id, TrainingTask.Phase p) internal {
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.WrongPhase.selector, id, p));
    }

    function test_openTaskRejectsBadParameters() public {
        TrainingTask.TaskParams memory p = _params(2, 0);
        vm.deal(MP, 10 * ETH);
        vm.startPrank(MP);
        vm.expectRevert(TrainingTask.NoEther.selector);
        tt.openTask(p);
        p.rounds = 0;
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.InvalidRounds.selector, 0));
        tt.openTask{value: ETH}(p);
        p = _params(2, 0);
        p.roundDuration = 59;
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.InvalidWindow.selector, 59));
        tt.openTask{value: ETH}(p);
        p = _params(2, 0);
        p.challengeWindow = 31 days;
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.InvalidWindow.selector, 31 days));
        tt.openTask{value: ETH}(p);
        p = _params(2, 0);
        p.deadline = uint40(block.timestamp + 2 * (RD + AW)); // no room for the split
        vm.expectPartialRevert(TrainingTask.InvalidDeadline.selector);
        tt.openTask{value: ETH}(p);
        p = _params(2, 0);
        p.manifestCid = bytes32(0);
        vm.expectRevert(TrainingTask.EmptyCid.selector);
        tt.openTask{value: ETH}(p);
        p = _params(2, 0);
        p.arbiter = MP;
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.InvalidArbiter.selector, MP));
        tt.openTask{value: ETH}(p);
        vm.stopPrank();
        uint256 id = _open(ETH, 2, 0);
        assertEq(uint256(uint160(tt.task(id).arbiter)), uint256(uint160(ARB)), "default arbiter = authority");
    }

    function test_matchingPhaseGuards() public {
        uint256 id = _open(10 * ETH, 1, 0);
        uint256 until = block.timestamp + 1 hours;
        bytes32 d = tt.consentDigest(TrainingTask.MatchConsent(id, dOffer[0], cOffer[0], ETH, ETH, until));
        bytes memory ds = _sig(dpKey[0], d);
        bytes memory cs = _sig(cpKey[0], d);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotModelProvider.selector, id, STRANGER));
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[0], cOffer[0], ETH, ETH, until), ds, cs);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.PriceTooLarge.selector, uint256(type(uint80).max) + 1));
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[0], cOffer[0], uint256(type(uint80).max) + 1, ETH, until), ds, cs);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.InsufficientPool.selector, id, 11 * ETH, 10 * ETH));
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[0], cOffer[0], 10 * ETH, ETH, until), ds, cs);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.InvalidSignature.selector, dp[0]));
        tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[0], cOffer[0], ETH, ETH, until), hex"00", cs);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotModelProvider.selector, id, STRANGER));
        tt.startTraining(id);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NoMatches.selector, id));
        tt.startTraining(id);
        _match(id, 0, 0, ETH, ETH);
        // training-phase functions in Matching
        vm.prank(cp[0]);
        _wrongPhase(id, TrainingTask.Phase.Matching);
        tt.submitUpdate(id, 0, 0, C, RAW);
        vm.prank(MP);
        _wrongPhase(id, TrainingTask.Phase.Matching);
        tt.rejectUpdate(id, 0, 0, C, RAW);
        vm.prank(MP);
        _wrongPhase(id, TrainingTask.Phase.Matching);
        tt.publishGlobalModel(id, 0, C, RAW);
        vm.prank(MP);
        _wrongPhase(id, TrainingTask.Phase.Matching);
        tt.postSplit(id, new uint256[](1), C, RAW);
        vm.prank(MP);
        _wrongPhase(id, TrainingTask.Phase.Matching);
        tt.revealKey(id, C, RAW);
        vm.prank(MP);
        _wrongPhase(id, TrainingTask.Phase.Matching);
        tt.revealTestSet(id, TS_CID, TS_CODEC, SALT);
        vm.prank(dp[0]);
        _wrongPhase(id, TrainingTask.Phase.Matching);
        tt.challenge(id, C, RAW);
        _wrongPhase(id, TrainingTask.Phase.Matching);
        tt.finalize(id, new uint256[](1));
        vm.prank(ARB);
        _wrongPhase(id, TrainingTask.Phase.Matching);
        tt.upholdSplit(id, new uint256[](1));
        // provideData guards
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotDataProvider.selector, id, 0, STRANGER));
        tt.provideData(id, 0, C, RAW, C, RAW);
        vm.prank(dp[0]);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.UnknownMatch.selector, id, 1));
        tt.provideData(id, 1, C, RAW, C, RAW);
        vm.prank(dp[0]);
        vm.expectRevert(TrainingTask.EmptyCid.selector);
        tt.provideData(id, 0, bytes32(0), RAW, C, RAW);
        _provide(id, 0);
        vm.prank(dp[0]);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.AlreadyProvided.selector, id, 0));
        tt.provideData(id, 0, C, RAW, C, RAW);
        // a stranger cannot abandon while training can still start; too late to start
        TrainingTask.Task memory t = tt.task(id);
        uint256 latestStart = uint256(t.deadline) - (uint256(RD + AW) + AW);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.TooEarly.selector, id, latestStart + 1));
        tt.abandon(id);
        vm.warp(latestStart + 1);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.TooLateToStart.selector, id, latestStart));
        tt.startTraining(id);
        vm.prank(STRANGER);
        tt.abandon(id);
        assertEq(tt.balances(MP), 9 * ETH, "refund all but the provided data price");
        _wrongPhase(id, TrainingTask.Phase.Abandoned);
        tt.abandon(id);
    }

    function test_trainingPhaseGuards() public {
        uint256 id = _open(10 * ETH, 2, 0);
        _match(id, 0, 0, ETH, ETH);
        _match(id, 1, 1, ETH, ETH);
        _start(id);
        vm.prank(MP);
        _wrongPhase(id, TrainingTask.Phase.Training);
        tt.startTraining(id);
        vm.prank(cp[1]);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotComputeProvider.selector, id, 0, cp[1]));
        tt.submitUpdate(id, 0, 0, C, RAW);
        vm.prank(cp[0]);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.UnknownMatch.selector, id, 2));
        tt.submitUpdate(id, 2, 0, C, RAW);
        vm.prank(cp[0]);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.WrongRound.selector, id, 1, 0));
        tt.submitUpdate(id, 0, 1, C, RAW);
        vm.prank(cp[0]);
        vm.expectRevert(TrainingTask.EmptyCid.selector);
        tt.submitUpdate(id, 0, 0, bytes32(0), RAW);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NoSuchUpdate.selector, id, 0, 0));
        tt.rejectUpdate(id, 0, 0, C, RAW);
        _submit(id, 0, 0);
        vm.prank(cp[0]);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.AlreadySubmitted.selector, id, 0, 0));
        tt.submitUpdate(id, 0, 0, C, RAW);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.WrongRound.selector, id, 1, 0));
        tt.rejectUpdate(id, 0, 1, C, RAW);
        vm.prank(MP);
        vm.expectRevert(TrainingTask.EmptyCid.selector);
        tt.rejectUpdate(id, 0, 0, bytes32(0), RAW);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotModelProvider.selector, id, STRANGER));
        tt.publishGlobalModel(id, 0, C, RAW);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.RoundsNotComplete.selector, id, 0, 2));
        tt.postSplit(id, new uint256[](2), C, RAW);
        // payout-phase functions during training
        vm.prank(MP);
        _wrongPhase(id, TrainingTask.Phase.Training);
        tt.revealKey(id, C, RAW);
        vm.prank(dp[0]);
        _wrongPhase(id, TrainingTask.Phase.Training);
        tt.challenge(id, C, RAW);
        _wrongPhase(id, TrainingTask.Phase.Training);
        tt.finalize(id, new uint256[](2));
        vm.prank(ARB);
        _wrongPhase(id, TrainingTask.Phase.Training);
        tt.replaceSplit(id, new uint256[](2), C, RAW);
        // the aggregation window: a late publish is refused, anyone may abandon
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.TooEarly.selector, id, block.timestamp + RD + AW + 1));
        tt.abandon(id);
        vm.warp(block.timestamp + RD + AW + 1);
        vm.prank(MP);
        vm.expectPartialRevert(TrainingTask.AggregationWindowPassed.selector);
        tt.publishGlobalModel(id, 0, C, RAW);
        vm.prank(STRANGER);
        tt.abandon(id);
        assertEq(tt.balances(cp[0]), ETH / 2, "the open round's accepted update is paid");
        assertEq(tt.balances(MP), 9.5 ether, "no data provided: everything else refunded");
    }

    function test_unknownTaskIsWrongPhaseNone() public {
        _wrongPhase(7, TrainingTask.Phase.None);
        tt.abandon(7);
        _wrongPhase(7, TrainingTask.Phase.None);
        tt.finalize(7, new uint256[](0));
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotModelProvider.selector, 7, STRANGER));
        tt.startTraining(7);
    }

    function test_payoutPhaseGuards() public {
        uint256 id = _trained(10 * ETH, 1, 2, ETH, ETH);
        uint256[] memory b = _equal(id, 2);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotModelProvider.selector, id, STRANGER));
        tt.postSplit(id, b, C, RAW);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.LengthMismatch.selector, 2, 1));
        tt.postSplit(id, new uint256[](1), C, RAW);
        vm.prank(MP);
        vm.expectRevert(TrainingTask.EmptyCid.selector);
        tt.postSplit(id, b, bytes32(0), RAW);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.WrongRound.selector, id, 1, 1));
        tt.publishGlobalModel(id, 1, C, RAW); // all rounds closed
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.TooEarly.selector, id, block.timestamp + AW + 1));
        tt.abandon(id);
        vm.warp(block.timestamp + AW + 1);
        vm.prank(MP);
        vm.expectPartialRevert(TrainingTask.AggregationWindowPassed.selector);
        tt.postSplit(id, b, C, RAW);
        vm.prank(STRANGER);
        tt.abandon(id); // no split in time: the bonus goes out equally
        assertEq(tt.balances(dp[0]), ETH + 3 * ETH, "price + equal bonus");
    }

    function test_payoutGuardsAfterSplit() public {
        uint256 id = _trained(10 * ETH, 1, 2, ETH, ETH);
        uint256[] memory b = _equal(id, 2);
        _postSplit(id, b);
        vm.prank(dp[0]);
        _wrongPhase(id, TrainingTask.Phase.SplitPosted);
        tt.provideData(id, 0, C, RAW, C, RAW);
        vm.prank(cp[0]);
        _wrongPhase(id, TrainingTask.Phase.SplitPosted);
        tt.submitUpdate(id, 0, 1, C, RAW);
        vm.prank(MP);
        _wrongPhase(id, TrainingTask.Phase.SplitPosted);
        tt.postSplit(id, b, C, RAW);
        vm.prank(MP);
        _wrongPhase(id, TrainingTask.Phase.SplitPosted);
        tt.abandon(id);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotModelProvider.selector, id, STRANGER));
        tt.revealKey(id, C, RAW);
        vm.prank(dp[0]);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotRevealed.selector, id));
        tt.challenge(id, C, RAW);
        vm.prank(MP);
        tt.revealKey(id, C, RAW);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.AlreadyRevealed.selector, id));
        tt.revealKey(id, C, RAW);
        vm.prank(MP);
        tt.revealTestSet(id, TS_CID, TS_CODEC, SALT);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotMatchedParty.selector, id, STRANGER));
        tt.challenge(id, C, RAW);
        vm.prank(ARB);
        _wrongPhase(id, TrainingTask.Phase.SplitPosted);
        tt.upholdSplit(id, b);
        vm.warp(block.timestamp + CW + 1);
        vm.prank(cp[0]);
        vm.expectPartialRevert(TrainingTask.ChallengeWindowPassed.selector);
        tt.challenge(id, C, RAW);
        uint256[] memory other = new uint256[](2);
        other[1] = _bonus(id);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.SplitMismatch.selector, id));
        tt.finalize(id, other);
        tt.finalize(id, b);
        _wrongPhase(id, TrainingTask.Phase.Final);
        tt.finalize(id, b);
        vm.prank(dp[0]);
        _wrongPhase(id, TrainingTask.Phase.Final);
        tt.challenge(id, C, RAW);
    }

    function test_challengeGuards() public {
        uint256 id = _trained(10 * ETH, 1, 2, ETH, ETH);
        uint256[] memory b = _equal(id, 2);
        _postSplit(id, b);
        _reveal(id);
        vm.prank(cp[1]); // a compute provider is a matched party too
        tt.challenge(id, C, RAW);
        vm.prank(dp[0]);
        _wrongPhase(id, TrainingTask.Phase.Challenged);
        tt.challenge(id, C, RAW);
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NotArbiter.selector, id, STRANGER));
        tt.upholdSplit(id, b);
        uint256[] memory bad = new uint256[](2);
        vm.prank(ARB);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.SplitMismatch.selector, id));
        tt.upholdSplit(id, bad);
        uint256 bonus = _bonus(id);
        vm.prank(ARB);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.SplitNotFull.selector, id, 0, bonus));
        tt.replaceSplit(id, bad, C, RAW);
        vm.prank(ARB);
        vm.expectRevert(TrainingTask.EmptyCid.selector);
        tt.replaceSplit(id, b, bytes32(0), RAW);
        vm.expectPartialRevert(TrainingTask.TooEarly.selector);
        tt.finalize(id, b);
        vm.prank(ARB);
        tt.upholdSplit(id, b);
        assertEq(tt.balances(dp[0]) + tt.balances(dp[1]), 2 * ETH + 6 * ETH, "posted split credited");
    }

    function test_silentArbiterFallsBackToEqualSplit() public {
        uint256 id = _trained(10 * ETH, 1, 2, ETH, ETH);
        uint256[] memory b = new uint256[](2);
        b[0] = _bonus(id);
        _postSplit(id, b);
        _reveal(id);
        vm.prank(dp[1]);
        tt.challenge(id, C, RAW);
        vm.warp(block.timestamp + tt.ARBITRATION_PERIOD() + 1);
        tt.finalize(id, b);
        assertEq(tt.balances(dp[1]), ETH + 3 * ETH, "equal split");
    }

    function test_bonusOnlyToProviders() public {
        uint256 id = _open(10 * ETH, 1, 0);
        _match(id, 0, 0, ETH, ETH);
        _match(id, 1, 1, ETH, ETH);
        _provide(id, 0); // dp1 never provides
        _start(id);
        _submit(id, 0, 0);
        _submit(id, 1, 0);
        _publish(id, 0);
        uint256[] memory b = new uint256[](2);
        b[1] = _bonus(id);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.BonusToNonProvider.selector, id, 1));
        tt.postSplit(id, b, C, RAW);
        (b[0], b[1]) = (b[1], 0);
        _postSplit(id, b);
        _reveal(id);
        vm.warp(block.timestamp + CW + 1);
        tt.finalize(id, b);
        assertEq(tt.balances(MP), ETH, "the unprovided data price returns to the model provider");
        assertEq(tt.balances(dp[1]), 0, "no data, no pay");
    }

    function test_withdrawGuards() public {
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NothingToWithdraw.selector, STRANGER));
        tt.withdraw();
        vm.prank(STRANGER);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.InvalidRecipient.selector, address(0)));
        tt.withdrawTo(payable(address(0)));
        uint256 id = _open(3 * ETH, 1, 0);
        _match(id, 0, 0, ETH, ETH);
        _provide(id, 0);
        address payable to = payable(address(0xBEEF));
        vm.prank(dp[0]);
        tt.withdrawTo(to);
        assertEq(to.balance, ETH, "paid to the named address");
        assertEq(tt.balances(dp[0]), 0, "balance cleared");
        vm.prank(dp[0]);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.NothingToWithdraw.selector, dp[0]));
        tt.withdrawTo(to);
    }
}
