// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TestBase} from "./Vm.sol";
import {TrainingTask} from "../src/TrainingTask.sol";
import {Registry} from "../src/Registry.sol";

/// Drives random tasks through random (often invalid) steps by every party; reverts are swallowed
/// so the fuzzer explores sequences, and the invariants below are checked after every call.
contract TrainingTaskHandler is TestBase {
    TrainingTask public tt;
    Registry public reg;
    address public constant MP = address(0x111);
    address public constant ARB = address(0xA4B);
    bytes32 internal constant TS_CID = bytes32(uint256(0x7e57));
    bytes32 internal constant SALT = bytes32(uint256(0x5a17));
    uint64 internal constant RAW = 0x55;

    uint256[] public ids;
    address[] public parties;
    uint256[4] internal dpKey = [uint256(0xD1), 0xD2, 0xD3, 0xD4];
    uint256[4] internal cpKey = [uint256(0xC1), 0xC2, 0xC3, 0xC4];
    uint256[4] internal dOffer;
    uint256[4] internal cOffer;
    mapping(uint256 taskId => uint256[]) internal posted;
    /// Tasks endAll found or brought to Final (the campaign must reach that path).
    uint256 public finals;

    constructor() {
        reg = new Registry();
        tt = new TrainingTask(reg, ARB);
        parties.push(MP);
        parties.push(ARB);
        for (uint256 i; i < 4; ++i) {
            address d = vm.addr(dpKey[i]);
            address c = vm.addr(cpKey[i]);
            parties.push(d);
            parties.push(c);
            vm.prank(d);
            dOffer[i] = reg.registerOffer(Registry.Kind.Data, bytes32(uint256(100 + i)), RAW, 1);
            vm.prank(c);
            cOffer[i] = reg.registerOffer(Registry.Kind.Compute, bytes32(uint256(200 + i)), RAW, 1);
        }
    }

    function taskCount() external view returns (uint256) {
        return ids.length;
    }

    function partyCount() external view returns (uint256) {
        return parties.length;
    }

    function _id(uint256 s) internal view returns (uint256) {
        return ids.length == 0 ? 0 : ids[s % ids.length];
    }

    function open(uint256 pool, uint256 rounds, uint256 quorum) external {
        if (ids.length >= 6) return;
        pool = bound(pool, 1, 1e24);
        TrainingTask.TaskParams memory p;
        p.manifestCid = bytes32(uint256(1));
        p.testSetCommitment = keccak256(abi.encodePacked(TS_CID, SALT));
        p.rounds = uint16(bound(rounds, 1, 3));
        p.quorum = uint16(bound(quorum, 0, 4));
        p.roundDuration = 1 hours;
        p.aggregationWindow = 1 hours;
        p.challengeWindow = 1 hours;
        p.deadline = uint40(block.timestamp + uint256(p.rounds) * 2 hours + 1 hours + 1 days);
        vm.deal(MP, MP.balance + pool);
        vm.prank(MP);
        ids.push(tt.openTask{value: pool}(p));
    }

    function recordMatch(uint256 s, uint256 i, uint256 j, uint256 dataPrice, uint256 computePrice) external {
        uint256 id = _id(s);
        if (id == 0) return;
        (i, j) = (i % 4, j % 4);
        uint256 avail = tt.task(id).bonus;
        dataPrice = bound(dataPrice, 0, avail / 2);
        computePrice = bound(computePrice, 0, avail / 2);
        uint256 until = block.timestamp + 1 hours;
        bytes32 d = tt.consentDigest(TrainingTask.MatchConsent(id, dOffer[i], cOffer[j], dataPrice, computePrice, until));
        (uint8 v1, bytes32 r1, bytes32 s1) = vm.sign(dpKey[i], d);
        (uint8 v2, bytes32 r2, bytes32 s2) = vm.sign(cpKey[j], d);
        vm.prank(MP);
        try tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[i], cOffer[j], dataPrice, computePrice, until), abi.encodePacked(r1, s1, v1), abi.encodePacked(r2, s2, v2)) {} catch {}
    }

    function start(uint256 s) external {
        vm.prank(MP);
        try tt.startTraining(_id(s)) {} catch {}
    }

    function _m(uint256 id, uint256 s) internal view returns (uint256 m, TrainingTask.Match memory x) {
        uint256 n = tt.task(id).matchCount;
        if (n == 0) return (type(uint256).max, x);
        m = s % n;
        x = tt.getMatch(id, m);
    }

    function provide(uint256 s, uint256 k) external {
        uint256 id = _id(s);
        (uint256 m, TrainingTask.Match memory x) = _m(id, k);
        if (m == type(uint256).max) return;
        vm.prank(x.dataProvider);
        try tt.provideData(id, m, bytes32(uint256(7)), RAW, bytes32(uint256(8)), RAW) {} catch {}
    }

    function submit(uint256 s, uint256 k) external {
        uint256 id = _id(s);
        (uint256 m, TrainingTask.Match memory x) = _m(id, k);
        if (m == type(uint256).max) return;
        uint16 round = tt.task(id).round;
        vm.prank(x.computeProvider);
        try tt.submitUpdate(id, m, round, bytes32(uint256(9)), RAW) {} catch {}
    }

    function reject(uint256 s, uint256 k) external {
        uint256 id = _id(s);
        (uint256 m,) = _m(id, k);
        if (m == type(uint256).max) return;
        uint16 round = tt.task(id).round;
        vm.prank(MP);
        try tt.rejectUpdate(id, m, round, bytes32(uint256(10)), RAW) {} catch {}
    }

    function publish(uint256 s) external {
        uint256 id = _id(s);
        uint16 round = tt.task(id).round;
        vm.prank(MP);
        try tt.publishGlobalModel(id, round, bytes32(uint256(11)), RAW) {} catch {}
    }

    function warp(uint256 dt) external {
        vm.warp(block.timestamp + bound(dt, 1, 2 days));
    }

    /// Post a valid split: the bonus to the data providers that provided, in random proportions.
    function postSplit(uint256 s, uint256 seed) external {
        uint256 id = _id(s);
        if (id == 0) return;
        TrainingTask.Task memory t = tt.task(id);
        uint256[] memory b = new uint256[](t.matchCount);
        uint256 left = t.bonus;
        uint256 last = type(uint256).max;
        for (uint256 i; i < t.matchCount; ++i) {
            if (!tt.getMatch(id, i).provided) continue;
            b[i] = bound(uint256(keccak256(abi.encode(seed, i))), 0, left);
            left -= b[i];
            last = i;
        }
        if (last != type(uint256).max) b[last] += left;
        vm.prank(MP);
        try tt.postSplit(id, b, bytes32(uint256(12)), RAW) {
            posted[id] = b;
        } catch {}
    }

    function reveal(uint256 s, bool key, bool testSet) external {
        uint256 id = _id(s);
        if (key) {
            vm.prank(MP);
            try tt.revealKey(id, bytes32(uint256(13)), RAW) {} catch {}
        }
        if (testSet) {
            vm.prank(MP);
            try tt.revealTestSet(id, TS_CID, RAW, SALT) {} catch {}
        }
    }

    function challenge(uint256 s, uint256 who) external {
        vm.prank(parties[who % parties.length]);
        try tt.challenge(_id(s), bytes32(uint256(14)), RAW) {} catch {}
    }

    function arbitrate(uint256 s, bool uphold) external {
        uint256 id = _id(s);
        vm.prank(ARB);
        if (uphold) {
            try tt.upholdSplit(id, posted[id]) {} catch {}
        } else {
            uint256[] memory b = posted[id];
            // move everything to the last nonzero entry's provider: still a valid split
            uint256 sum;
            uint256 last = type(uint256).max;
            for (uint256 i; i < b.length; ++i) {
                sum += b[i];
                if (b[i] != 0) last = i;
                b[i] = 0;
            }
            if (last != type(uint256).max) b[last] = sum;
            try tt.replaceSplit(id, b, bytes32(uint256(15)), RAW) {} catch {}
        }
    }

    function finalize(uint256 s) external {
        uint256 id = _id(s);
        try tt.finalize(id, posted[id]) {} catch {}
    }

    function abandon(uint256 s, uint256 who) external {
        vm.prank(parties[who % parties.length]);
        try tt.abandon(_id(s)) {} catch {}
    }

    function withdraw(uint256 who, bool to) external {
        address a = parties[who % parties.length];
        if (tt.balances(a) == 0) return;
        vm.prank(a);
        if (to) tt.withdrawTo(payable(address(0xBEEF)));
        else tt.withdraw();
    }

    /// Move task s one phase on along the honest path (so random runs reach SplitPosted and Final):
    /// Matching: start (matching first if needed); Training: close the open round (or post a split
    /// after the last); SplitPosted: reveal or wait and finalize; Challenged: the arbiter upholds.
    function advance(uint256 s, uint256 seed) public {
        uint256 id = _id(s);
        if (id == 0) return;
        TrainingTask.Task memory t = tt.task(id);
        if (t.phase == TrainingTask.Phase.Matching) {
            if (t.matchCount == 0) this.recordMatch(s, seed, seed >> 8, seed >> 16, seed >> 32);
            this.start(s);
        } else if (t.phase == TrainingTask.Phase.Training) {
            if (t.round < t.rounds) {
                if (seed & 1 == 1) for (uint256 m; m < t.matchCount; ++m) this.submit(s, m);
                if (seed & 2 == 2) vm.warp(uint256(t.roundStart) + t.roundDuration);
                this.publish(s);
            } else {
                this.postSplit(s, seed);
            }
        } else if (t.phase == TrainingTask.Phase.SplitPosted) {
            if (seed & 1 == 1 && t.revealed != 3) this.reveal(s, true, true);
            else vm.warp(block.timestamp + 2 days);
            this.finalize(s);
        } else if (t.phase == TrainingTask.Phase.Challenged) {
            this.arbitrate(s, seed & 1 == 1);
        }
    }

    /// Drive every task to Final or Abandoned (by the honest path for half of them, else by
    /// abandoning), then withdraw everything.
    function endAll(uint256 seed) external {
        for (uint256 k; k < ids.length; ++k) {
            uint256 id = ids[k];
            bool honest = (seed >> k) & 1 == 1;
            for (uint256 step; step < 20; ++step) {
                TrainingTask.Phase p = tt.task(id).phase;
                if (p == TrainingTask.Phase.Final || p == TrainingTask.Phase.Abandoned) break;
                if (honest && step < 12) {
                    advance(k, seed >> 7);
                    continue;
                }
                vm.warp(block.timestamp + 40 days);
                if (p == TrainingTask.Phase.Matching || p == TrainingTask.Phase.Training) tt.abandon(id);
                else tt.finalize(id, posted[id]);
            }
            if (tt.task(id).phase == TrainingTask.Phase.Final) ++finals;
        }
        for (uint256 i; i < parties.length; ++i) {
            if (tt.balances(parties[i]) == 0) continue;
            vm.prank(parties[i]);
            tt.withdraw();
        }
    }
}

/// No wei is ever stuck: the contract holds exactly the credited balances plus the escrow of
/// unfinished tasks; a Final or Abandoned task holds nothing; ending everything and withdrawing
/// leaves the contract empty.
contract TrainingTaskInvariant is TestBase {
    TrainingTaskHandler internal h;
    TrainingTask internal tt;

    function setUp() public {
        h = new TrainingTaskHandler();
        tt = h.tt();
    }

    function targetContracts() public view returns (address[] memory t) {
        t = new address[](1);
        t[0] = address(h);
    }

    function _escrow() internal view returns (uint256 sum) {
        for (uint256 k; k < h.taskCount(); ++k) sum += tt.task(h.ids(k)).escrow;
    }

    function _credited() internal view returns (uint256 sum) {
        for (uint256 i; i < h.partyCount(); ++i) sum += tt.balances(h.parties(i));
    }

    function invariant_balanceIsCreditsPlusEscrow() public view {
        assertEq(address(tt).balance, _credited() + _escrow(), "balance == credited + escrow");
    }

    function invariant_endedTasksHoldNothing() public view {
        for (uint256 k; k < h.taskCount(); ++k) {
            TrainingTask.Task memory t = tt.task(h.ids(k));
            if (t.phase == TrainingTask.Phase.Final || t.phase == TrainingTask.Phase.Abandoned) {
                assertEq(t.escrow, 0, "ended task has no escrow");
                assertEq(t.bonus, 0, "ended task has no bonus");
            }
        }
    }

    /// The handler's honest path does reach Final (else the invariants would never see that phase).
    function test_handlerReachesFinal() public {
        h.open(10 ether, 2, 0);
        h.recordMatch(0, 0, 0, 1 ether, 1 ether);
        h.provide(0, 0);
        for (uint256 i; i < 8; ++i) h.advance(0, 3);
        h.endAll(0);
        assertTrue(tt.task(1).phase == TrainingTask.Phase.Final, "task 1 is Final");
        assertEq(address(tt).balance, 0, "drained");
    }

    /// Run after each invariant campaign: end every task, withdraw everything, nothing remains.
    function afterInvariant() public {
        h.endAll(uint256(keccak256(abi.encode(block.timestamp, h.taskCount()))));
        assertEq(address(tt).balance, 0, "no wei stuck after Final/Abandoned + withdrawals");
    }
}
