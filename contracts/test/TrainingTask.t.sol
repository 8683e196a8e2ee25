// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {TrainingTask} from "../src/TrainingTask.sol";
import {TrainingTaskBase} from "./TrainingTaskBase.sol";

/// Fuzzed money paths: whatever the prices, splits, rejections and abandonment points, the sum of
/// everything credited equals the pool, and withdrawals drain the contract exactly.
contract TrainingTaskFuzz is TrainingTaskBase {
    struct Run {
        uint256 pool;
        uint16 rounds;
        uint256 n;
        uint256 provided; // bit i: match i provided data
        uint256 submitted; // bit (r * 4 + i): match i submitted in round r
        uint256 rejected; // same layout: the model provider rejected it
    }

    function _setup(Run memory x, uint256[4] memory dataPrice, uint256[4] memory computePrice) internal returns (uint256 id) {
        id = _open(x.pool, x.rounds, uint16(x.n));
        uint256 left = x.pool;
        for (uint256 i; i < x.n; ++i) {
            dataPrice[i] = bound(dataPrice[i], 0, left / 2);
            computePrice[i] = bound(computePrice[i], 0, left / 2);
            left -= dataPrice[i] + computePrice[i];
            _match(id, i, i, dataPrice[i], computePrice[i]);
        }
        for (uint256 i; i < x.n; ++i) {
            if ((x.provided >> i) & 1 == 1) _provide(id, i);
        }
        _start(id);
    }

    /// Run round r: submissions, rejections, then close it (after the window: quorum may not be met).
    function _round(uint256 id, Run memory x, uint16 r) internal {
        for (uint256 i; i < x.n; ++i) {
            uint256 bit = uint256(r) * 4 + i;
            if ((x.submitted >> bit) & 1 == 0) continue;
            _submit(id, i, r);
            if ((x.rejected >> bit) & 1 == 1) {
                vm.prank(MP);
                tt.rejectUpdate(id, i, r, bytes32(uint256(0xE0)), RAW);
            }
        }
        vm.warp(block.timestamp + RD);
        _publish(id, r);
    }

    function _run(uint256 seed) internal pure returns (Run memory x) {
        x.pool = bound(uint256(keccak256(abi.encode(seed, 0))), 1, 2e24); // prices fit in uint80
        x.rounds = uint16(bound(seed >> 8, 1, 4));
        x.n = bound(seed >> 16, 1, 4);
        x.provided = uint256(keccak256(abi.encode(seed, 1)));
        x.submitted = uint256(keccak256(abi.encode(seed, 2)));
        x.rejected = uint256(keccak256(abi.encode(seed, 3)));
    }

    /// Finished task: credits sum to the pool; only providers that provided data get the bonus.
    function testFuzz_finishConservesThePool(uint256 seed, uint256[4] memory dataPrice, uint256[4] memory computePrice, uint256 shares)
        public
    {
        Run memory x = _run(seed);
        uint256 id = _setup(x, dataPrice, computePrice);
        for (uint16 r; r < x.rounds; ++r) _round(id, x, r);
        uint256 bonus = _bonus(id);
        uint256[] memory b = new uint256[](x.n);
        uint256 last = type(uint256).max;
        uint256 left = bonus;
        for (uint256 i; i < x.n; ++i) {
            if ((x.provided >> i) & 1 == 0) continue;
            b[i] = bound(uint256(keccak256(abi.encode(shares, i))), 0, left);
            left -= b[i];
            last = i;
        }
        if (last != type(uint256).max) b[last] += left;
        _postSplit(id, b);
        _reveal(id);
        vm.warp(block.timestamp + CW + 1);
        tt.finalize(id, b);
        assertEq(_credited(), x.pool, "sum credited == pool");
        for (uint256 i; i < x.n; ++i) {
            uint256 want = (x.provided >> i) & 1 == 1 ? dataPrice[i] + b[i] : 0;
            assertEq(tt.balances(dp[i]), want, "data provider: price + bonus share if provided");
        }
        TrainingTask.Task memory t = tt.task(id);
        assertEq(t.escrow, 0, "nothing left in escrow");
        _withdrawAll();
        assertEq(address(tt).balance, 0, "contract drained exactly");
    }

    /// A split that does not distribute the bonus exactly is refused.
    function testFuzz_overSplitReverts(uint256 pool, uint256 delta, bool over) public {
        pool = bound(pool, 10, 1e25);
        uint256 id = _trained(pool, 1, 2, pool / 10, pool / 10);
        uint256 bonus = _bonus(id);
        uint256[] memory b = new uint256[](2);
        uint256 sum = over ? bonus + bound(delta, 1, 1e30) : bonus - bound(delta, 1, bonus);
        b[0] = sum;
        vm.prank(MP);
        vm.expectRevert(abi.encodeWithSelector(TrainingTask.SplitNotFull.selector, id, sum, bonus));
        tt.postSplit(id, b, bytes32(uint256(9)), RAW);
    }

    /// Abandoned at a random point (matching, any round, after the last round, by anyone after
    /// the window): credits sum to the pool and nothing is stuck.
    function testFuzz_abandonConservesThePool(uint256 seed, uint256[4] memory dataPrice, uint256[4] memory computePrice, uint8 stopAt, bool late)
        public
    {
        Run memory x = _run(seed);
        uint256 stop = bound(stopAt, 0, x.rounds + 1); // 0: in Matching; k: after k-1 closed rounds
        uint256 id;
        if (stop == 0) {
            id = _open(x.pool, x.rounds, 0);
            for (uint256 i; i < x.n; ++i) {
                dataPrice[i] = bound(dataPrice[i], 0, x.pool / 8);
                _match(id, i, i, dataPrice[i], bound(computePrice[i], 0, x.pool / 8));
                if ((x.provided >> i) & 1 == 1) _provide(id, i);
            }
        } else {
            id = _setup(x, dataPrice, computePrice);
            for (uint16 r; r + 1 < stop; ++r) _round(id, x, r);
            if (stop <= x.rounds) {
                // a partly done open round: some updates in, not closed
                for (uint256 i; i < x.n; ++i) {
                    if ((x.submitted >> (200 + i)) & 1 == 1) _submit(id, i, uint16(stop - 1));
                }
            }
        }
        if (late) {
            vm.warp(block.timestamp + 30 days);
            vm.prank(STRANGER);
        } else {
            vm.prank(MP);
        }
        tt.abandon(id);
        assertEq(_credited(), x.pool, "sum credited == pool");
        if (stop == 0) {
            uint256 paid;
            for (uint256 i; i < x.n; ++i) paid += tt.balances(dp[i]);
            assertEq(tt.balances(MP), x.pool - paid, "matching: everything not earned refunded");
        }
        _withdrawAll();
        assertEq(address(tt).balance, 0, "contract drained exactly");
    }

    /// Never revealed: the bonus goes equally to those that provided (dust to the first), all credited.
    function testFuzz_equalSplitConservesThePool(uint256 seed, uint256[4] memory dataPrice, uint256[4] memory computePrice)
        public
    {
        Run memory x = _run(seed);
        uint256 id = _setup(x, dataPrice, computePrice);
        for (uint16 r; r < x.rounds; ++r) _round(id, x, r);
        uint256[] memory b = new uint256[](x.n);
        uint256 count;
        for (uint256 i; i < x.n; ++i) {
            if ((x.provided >> i) & 1 == 1) ++count;
        }
        uint256 bonus = _bonus(id);
        for (uint256 i; i < x.n; ++i) {
            if ((x.provided >> i) & 1 == 1) b[i] = bonus / count;
        }
        if (count != 0) {
            for (uint256 i; i < x.n; ++i) {
                if ((x.provided >> i) & 1 == 1) {
                    b[i] += bonus % count;
                    break;
                }
            }
        }
        _postSplit(id, b);
        vm.warp(block.timestamp + AW + 1);
        tt.finalize(id, b);
        assertEq(_credited(), x.pool, "sum credited == pool");
        _withdrawAll();
        assertEq(address(tt).balance, 0, "contract drained exactly");
    }
}
