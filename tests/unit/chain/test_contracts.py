"""Offline ABI encoding/decoding with the committed artifacts: calls, results, deploy data, events."""

from __future__ import annotations

import eth_abi
import pytest
from eth_utils import keccak

from dainode.chain.contracts import load_artifact, load_contracts
from dainode.errors import ChainError, ConfigError

CONTRACTS = load_contracts().with_addresses({"Registry": "0x" + "11" * 20})


def test_call_encoding_matches_the_abi_selector_and_layout():
    reg = CONTRACTS["Registry"]
    data = reg.encode_call("registerOffer", 1, b"\x07" * 32, 0x55, 10**18)
    assert data[:4] == keccak(text="registerOffer(uint8,bytes32,uint64,uint256)")[:4]
    assert eth_abi.decode(["uint8", "bytes32", "uint64", "uint256"], data[4:]) == (1, b"\x07" * 32, 0x55, 10**18)
    assert reg.decode_result("nextOfferId", 0, eth_abi.encode(["uint256"], [42])) == 42


def test_bad_calls_are_chain_errors_that_say_what_is_wrong():
    reg = CONTRACTS["Registry"]
    with pytest.raises(ChainError, match="no function 'nope'"):
        reg.encode_call("nope")
    with pytest.raises(ChainError, match="signatures: registerOffer"):
        reg.encode_call("registerOffer", 1)
    with pytest.raises(ChainError, match="has 5 bytes; pass exactly 32"):
        reg.encode_call("registerOffer", 1, b"short", 0x55, 1)
    with pytest.raises(ChainError, match="bad arguments"):
        reg.encode_call("registerOffer", 1, bytes(32), 0x55, -1)
    with pytest.raises(ChainError, match="unknown contract"):
        CONTRACTS["Nope"]


def test_deploy_data_appends_constructor_args():
    dt = CONTRACTS["DataTransfer"]
    data = dt.encode_deploy("0x" + "22" * 20, 3600)
    assert data.startswith(dt.bytecode) and len(data) == len(dt.bytecode) + 64
    with pytest.raises(ChainError, match="constructor takes 2"):
        dt.encode_deploy()


def test_logs_decode_into_typed_events_with_indexed_and_plain_args():
    reg = CONTRACTS["Registry"]
    item = next(i for i in reg.abi if i.get("name") == "OfferRegistered")
    topic0 = keccak(text="OfferRegistered(" + ",".join(i["type"] for i in item["inputs"]) + ")")
    values = {"offerId": 5, "owner": "0x" + "ab" * 20, "kind": 1, "price": 99, "cid": b"\x01" * 32, "codec": 0x70}
    indexed = [i for i in item["inputs"] if i["indexed"]]
    plain = [i for i in item["inputs"] if not i["indexed"]]
    log = {
        "address": reg.address.lower(),
        "topics": ["0x" + topic0.hex()] + ["0x" + eth_abi.encode([i["type"]], [values[i["name"]]]).hex() for i in indexed],
        "data": "0x" + eth_abi.encode([i["type"] for i in plain], [values[i["name"]] for i in plain]).hex(),
        "blockNumber": "0x10", "blockHash": "0x" + "cc" * 32, "transactionHash": "0x" + "dd" * 32, "logIndex": "0x2",
    }
    ev = CONTRACTS.decode_log(log)
    assert (ev.contract, ev.name, ev.block_number, ev.log_index, ev.removed) == ("Registry", "OfferRegistered", 16, 2, False)
    assert ev.args["owner"].lower() == values["owner"] and ev.args["price"] == 99 and ev.args["cid"] == b"\x01" * 32
    assert list(ev.args) == [i["name"] for i in item["inputs"]]
    assert ev.to_json()["args"]["cid"] == "0x" + "01" * 32
    # a log from an unknown address or with an unknown topic is not ours
    assert CONTRACTS.decode_log({**log, "address": "0x" + "99" * 20}) is None
    assert CONTRACTS.decode_log({**log, "topics": ["0x" + "00" * 32]}) is None


def test_missing_or_broken_artifact_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="compile-contracts"):
        load_artifact(tmp_path / "Nope.json")
    (tmp_path / "Bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="unreadable"):
        load_artifact(tmp_path / "Bad.json")
