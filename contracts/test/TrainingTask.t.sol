// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TestBase} from "./Vm.sol";
import {TrainingTask} from "../src/TrainingTask.sol";

contract TrainingTaskFuzz is TestBase {
    TrainingTask internal tt;
    address internal constant MP = address(0x111);
    address internal constant DP1 = address(0x221);
    address internal constant DP2 = address(0x222);
    address internal constant CP1 = address(0x331);
    address internal constant CP2 = address(0x332);

    function setUp() public {
        tt = new TrainingTask();
    }

    function _open(uint256 pool, uint16 rounds) internal returns (uint256 id) {
        vm.deal(MP, pool);
        vm.prank(MP);
        id = tt.openTask{value: pool}(
            bytes32(uint256(1)), 0x55, bytes32(uint256(2)), 0x55, bytes32(uint256(3)), 0x55, bytes32(uint256(4)),
            rounds, uint40(block.timestamp + 1 days)
        );
    }

    function _min(uint256 a, uint256 b) internal pure returns (uint256) {
        return a < b ? a : b;
    }

    /// A match price above uint96 (it shares a slot with the data provider) is refused by name.
    function testFuzz_priceAboveUint96Reverts(uint256 price) public {
        price = bound(price, uint256(type(uint96).max) + 1, 1e30);
        uint256 id = _open(1e30, 1);
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.PriceTooLarge.selector, price));
        tt.recordMatch(id, DP1, CP1, price);
    }

    function _withdrawAll() internal {
        address[5] memory who = [MP, DP1, DP2, CP1, CP2];
        for (uint256 i; i < who.length; ++i) {
            if (tt.balances(who[i]) == 0) continue;
            vm.prank(who[i]);
            tt.withdraw();
        }
    }

    /// Finished task: credits sum to the pool exactly; withdrawals drain the contract exactly.
    function testFuzz_finishConservesThePool(
        uint128 pool,
        uint256 price1,
        uint256 price2,
        uint256 share1,
        uint256 share2,
        uint8 rounds,
        uint8 skip
    ) public {
        uint256 p = bound(pool, 1, 1e30);
        uint16 r = uint16(bound(rounds, 1, 4));
        uint256 id = _open(p, r);
        price1 = bound(price1, 0, _min(p / 2, type(uint96).max));
        price2 = bound(price2, 0, _min(p / 2, type(uint96).max));
        vm.startPrank(MP);
        tt.recordMatch(id, DP1, CP1, price1);
        tt.recordMatch(id, DP2, CP2, price2);
        vm.stopPrank();
        uint256 done2;
        for (uint16 k; k < r; ++k) {
            vm.prank(CP1);
            tt.submitUpdate(id, 0, bytes32(uint256(10 + k)), 0x55);
            if ((skip >> k) & 1 == 0) {
                vm.prank(CP2);
                tt.submitUpdate(id, 1, bytes32(uint256(20 + k)), 0x55);
                ++done2;
            }
            vm.prank(MP);
            tt.publishGlobalModel(id, bytes32(uint256(30 + k)), 0x55);
        }
        uint256 budget = p - price1 - price2;
        share1 = bound(share1, 0, budget);
        share2 = bound(share2, 0, budget - share1);
        uint256[] memory amts = new uint256[](2);
        (amts[0], amts[1]) = (share1, share2);
        vm.prank(MP);
        tt.finishTask(id, amts);
        uint256 cp2Earned = (price2 * done2) / r;
        assertEq(tt.balances(DP1), share1, "dp1 share");
        assertEq(tt.balances(DP2), share2, "dp2 share");
        assertEq(tt.balances(CP1), price1, "cp1 did every round");
        assertEq(tt.balances(CP2), cp2Earned, "cp2 paid per round done");
        assertEq(tt.balances(MP), p - share1 - share2 - price1 - cp2Earned, "refund is the rest");
        _withdrawAll();
        assertEq(address(tt).balance, 0, "contract drained exactly");
        assertEq(DP1.balance + DP2.balance + CP1.balance + CP2.balance + MP.balance, p, "nothing created or lost");
    }

    /// A split larger than the uncommitted pool is refused.
    function testFuzz_overSplitReverts(uint128 pool, uint256 over) public {
        uint256 p = bound(pool, 1, 1e30);
        uint256 id = _open(p, 1);
        vm.prank(MP);
        tt.recordMatch(id, DP1, CP1, 0);
        vm.prank(MP);
        tt.publishGlobalModel(id, bytes32(uint256(9)), 0x55);
        uint256 amt = p + bound(over, 1, 1e30);
        uint256[] memory amts = new uint256[](1);
        amts[0] = amt;
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.InsufficientPool.selector, id, amt, p));
        tt.finishTask(id, amts);
    }

    /// Abandoned task: compute work is paid per round, the model provider gets the rest, nothing is lost.
    function testFuzz_abandonConservesThePool(uint128 pool, uint256 price, uint8 rounds, uint8 done) public {
        uint256 p = bound(pool, 1, 1e30);
        uint16 r = uint16(bound(rounds, 2, 6));
        uint256 d = bound(done, 0, r - 1);
        uint256 id = _open(p, r);
        price = bound(price, 0, _min(p, type(uint96).max));
        vm.prank(MP);
        tt.recordMatch(id, DP1, CP1, price);
        for (uint256 k; k < d; ++k) {
            vm.prank(CP1);
            tt.submitUpdate(id, 0, bytes32(uint256(10 + k)), 0x55);
            vm.prank(MP);
            tt.publishGlobalModel(id, bytes32(uint256(30 + k)), 0x55);
        }
        vm.warp(block.timestamp + 1 days + 1);
        tt.refundAbandoned(id);
        assertEq(tt.balances(CP1), (price * d) / r, "compute paid per round");
        _withdrawAll();
        assertEq(address(tt).balance, 0, "contract drained exactly");
        assertEq(MP.balance + CP1.balance, p, "nothing created or lost");
    }
}
