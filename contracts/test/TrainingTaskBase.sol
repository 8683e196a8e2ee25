// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TestBase} from "./Vm.sol";
import {TrainingTask} from "../src/TrainingTask.sol";
import {Registry} from "../src/Registry.sol";

/// Shared set-up for the TrainingTask suites: a Registry with 4 data and 4 compute offers whose
/// owners have private keys (so consents are real EIP-712 signatures), and step helpers.
abstract contract TrainingTaskBase is TestBase {
    TrainingTask internal tt;
    Registry internal reg;
    address internal constant MP = address(0x111);
    address internal constant ARB = address(0xA4B);
    address internal constant STRANGER = address(0x999);
    uint32 internal constant RD = 1 hours;
    uint32 internal constant AW = 30 minutes;
    uint32 internal constant CW = 1 days;
    bytes32 internal constant TS_CID = bytes32(uint256(0x7e57));
    uint64 internal constant TS_CODEC = 0x55;
    bytes32 internal constant SALT = bytes32(uint256(0x5a17));
    uint64 internal constant RAW = 0x55;

    uint256[4] internal dpKey = [uint256(0xD1), 0xD2, 0xD3, 0xD4];
    uint256[4] internal cpKey = [uint256(0xC1), 0xC2, 0xC3, 0xC4];
    address[4] internal dp;
    address[4] internal cp;
    uint256[4] internal dOffer;
    uint256[4] internal cOffer;

    function setUp() public virtual {
        reg = new Registry();
        tt = new TrainingTask(reg, ARB);
        for (uint256 i; i < 4; ++i) {
            dp[i] = vm.addr(dpKey[i]);
            cp[i] = vm.addr(cpKey[i]);
            vm.prank(dp[i]);
            dOffer[i] = reg.registerOffer(Registry.Kind.Data, bytes32(uint256(100 + i)), RAW, 1e15);
            vm.prank(cp[i]);
            cOffer[i] = reg.registerOffer(Registry.Kind.Compute, bytes32(uint256(200 + i)), RAW, 1e15);
        }
    }

    function _params(uint16 rounds, uint16 quorum) internal view returns (TrainingTask.TaskParams memory p) {
        p.manifestCid = bytes32(uint256(1));
        p.manifestCodec = RAW;
        p.hePublicKeyCid = bytes32(uint256(2));
        p.hePublicKeyCodec = RAW;
        p.encPublicKeyCid = bytes32(uint256(3));
        p.encPublicKeyCodec = RAW;
        p.testSetCommitment = keccak256(abi.encodePacked(TS_CID, SALT));
        p.rounds = rounds;
        p.quorum = quorum;
        p.roundDuration = RD;
        p.aggregationWindow = AW;
        p.challengeWindow = CW;
        p.deadline = uint40(block.timestamp + uint256(rounds) * (RD + AW) + AW + 1 days);
        p.arbiter = address(0);
    }

    function _open(uint256 pool, uint16 rounds, uint16 quorum) internal returns (uint256 id) {
        TrainingTask.TaskParams memory p = _params(rounds, quorum);
        vm.deal(MP, MP.balance + pool);
        vm.prank(MP);
        id = tt.openTask{value: pool}(p);
    }

    function _sig(uint256 key, bytes32 digest) internal pure returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    /// Match data offer i with compute offer j (both owners sign first; the prank is the last step).
    function _match(uint256 id, uint256 i, uint256 j, uint256 dataPrice, uint256 computePrice)
        internal
        returns (uint256 matchId)
    {
        uint256 until = block.timestamp + 1 hours;
        bytes32 d = tt.consentDigest(TrainingTask.MatchConsent(id, dOffer[i], cOffer[j], dataPrice, computePrice, until));
        bytes memory ds = _sig(dpKey[i], d);
        bytes memory cs = _sig(cpKey[j], d);
        vm.prank(MP);
        matchId = tt.recordMatch(TrainingTask.MatchConsent(id, dOffer[i], cOffer[j], dataPrice, computePrice, until), ds, cs);
    }

    function _start(uint256 id) internal {
        vm.prank(MP);
        tt.startTraining(id);
    }

    function _provide(uint256 id, uint256 m) internal {
        TrainingTask.Match memory x = tt.getMatch(id, m);
        vm.prank(x.dataProvider);
        tt.provideData(id, m, bytes32(uint256(0xDA7A + m)), RAW, bytes32(uint256(0x4E1 + m)), RAW);
    }

    function _submit(uint256 id, uint256 m, uint16 round) internal {
        TrainingTask.Match memory x = tt.getMatch(id, m);
        vm.prank(x.computeProvider);
        tt.submitUpdate(id, m, round, keccak256(abi.encode(id, m, round)), RAW);
    }

    function _publish(uint256 id, uint16 round) internal {
        vm.prank(MP);
        tt.publishGlobalModel(id, round, bytes32(uint256(0x6106A1 + round)), RAW);
    }

    function _reveal(uint256 id) internal {
        vm.startPrank(MP);
        tt.revealKey(id, bytes32(uint256(0x4E7)), RAW);
        tt.revealTestSet(id, TS_CID, TS_CODEC, SALT);
        vm.stopPrank();
    }

    function _postSplit(uint256 id, uint256[] memory bonuses) internal {
        vm.prank(MP);
        tt.postSplit(id, bonuses, bytes32(uint256(0x4E9)), RAW);
    }

    /// Open a task with n matches (data i <-> compute i), provide all data, run every round with
    /// every update; returns the id (the task is then ready for postSplit).
    function _trained(uint256 pool, uint16 rounds, uint256 n, uint256 dataPrice, uint256 computePrice)
        internal
        returns (uint256 id)
    {
        id = _open(pool, rounds, 0);
        for (uint256 i; i < n; ++i) _match(id, i, i, dataPrice, computePrice);
        for (uint256 i; i < n; ++i) _provide(id, i);
        _start(id);
        for (uint16 r; r < rounds; ++r) {
            for (uint256 i; i < n; ++i) _submit(id, i, r);
            _publish(id, r);
        }
    }

    function _bonus(uint256 id) internal view returns (uint256) {
        return tt.task(id).bonus;
    }

    function _equal(uint256 id, uint256 n) internal view returns (uint256[] memory b) {
        b = new uint256[](n);
        uint256 bonus = _bonus(id);
        for (uint256 i; i < n; ++i) b[i] = bonus / n;
        b[0] += bonus % n;
    }

    function _credited() internal view returns (uint256 sum) {
        sum = tt.balances(MP) + tt.balances(STRANGER) + tt.balances(ARB);
        for (uint256 i; i < 4; ++i) sum += tt.balances(dp[i]) + tt.balances(cp[i]);
    }

    function _withdrawAll() internal {
        address[11] memory who = [MP, STRANGER, ARB, dp[0], dp[1], dp[2], dp[3], cp[0], cp[1], cp[2], cp[3]];
        for (uint256 i; i < who.length; ++i) {
            if (tt.balances(who[i]) == 0) continue;
            vm.prank(who[i]);
            tt.withdraw();
        }
    }
}
