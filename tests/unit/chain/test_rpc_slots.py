"""chain_verify_state's slots parameter: malformed slots are invalid params (-32602), never an internal error."""

from __future__ import annotations

import pytest

from dainode.chain.service import rpc_slots
from dainode.errors import RpcError


def test_valid_slots():
    assert rpc_slots(None) == [] and rpc_slots([]) == []
    assert rpc_slots([0, "0x1f", "0X10", "7", 2**256 - 1]) == [0, 31, 16, 7, 2**256 - 1]


@pytest.mark.parametrize("slots", [["0xzz"], ["zz"], [True], [1.5], [None], [[1]], [-1], [2**256], ["0x" + "f" * 65], "0x1", {"a": 1}])
def test_malformed_slots_are_invalid_params(slots):
    with pytest.raises(RpcError) as exc:
        rpc_slots(slots)
    assert exc.value.code == RpcError.INVALID_PARAMS and "slot" in exc.value.message
