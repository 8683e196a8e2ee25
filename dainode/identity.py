"""The node's identity: an Ethereum account and a libp2p key, both in password-encrypted keystore files."""

from __future__ import annotations

import getpass
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keyfile import create_keyfile_json, decode_keyfile_json
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from dainode.errors import IdentityError, WrongPasswordError
from dainode.fsutil import atomic_write, ensure_private_dir

ETH_KEYSTORE = "keys/eth.keystore.json"
LIBP2P_KEYSTORE = "keys/libp2p.keystore.json"

# Key-derivation work (scrypt N). 2**18 is the geth/eth-account default (~0.5 s per
# unlock). "light" mirrors geth's --lightkdf for tests and throwaway nodes.
KDF_N_STANDARD = 2**18
KDF_N_LIGHT = 2**12
# secp256k1 group order: eth-keyfile only accepts 32-byte secrets below it, and we
# reuse its keystore format for the libp2p Ed25519 seed too.
_SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


@dataclass
class Identity:
    """Unlocked keys of a node. Never serialise this object: it holds secrets."""

    data_dir: Path
    account: LocalAccount = field(repr=False)
    libp2p_key: KeyPair = field(repr=False)
    password: str = field(repr=False)

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def peer_id(self) -> ID:
        return ID.from_pubkey(self.libp2p_key.public_key)


def resolve_password(password_file: str | None, *, confirm: bool = False) -> str:
    """Password from --password-file, else $DAINODE_PASSWORD, else a terminal prompt."""
    if password_file:
        try:
            text = Path(password_file).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise IdentityError(f"cannot read password file {password_file!r}: {exc.strerror or exc}") from None
        password = text.rstrip("\r\n")
    elif "DAINODE_PASSWORD" in os.environ:
        password = os.environ["DAINODE_PASSWORD"]
    elif sys.stdin is not None and sys.stdin.isatty():
        password = getpass.getpass("dainode password: ")
        if confirm and getpass.getpass("repeat password: ") != password:
            raise IdentityError("the two passwords differ; nothing was written")
    else:
        raise IdentityError(
            "no password: set DAINODE_PASSWORD, pass --password-file FILE, or run from a terminal to be prompted"
        )
    if not password:
        raise IdentityError("the password is empty; choose a non-empty password")
    return password


def is_initialised(data_dir: Path) -> bool:
    return (data_dir / ETH_KEYSTORE).exists() and (data_dir / LIBP2P_KEYSTORE).exists()


def _random_secret() -> bytes:
    while True:
        secret = os.urandom(32)
        if 0 < int.from_bytes(secret, "big") < _SECP256K1_N:
            return secret


def _write_keystore(path: Path, secret: bytes, password: str, kdf_n: int, meta: dict) -> None:
    doc = create_keyfile_json(secret, password.encode("utf-8"), kdf="scrypt", iterations=kdf_n)
    doc.update(meta)
    atomic_write(path, json.dumps(doc, indent=2, sort_keys=True).encode("utf-8"), mode=0o600)


def init_identity(data_dir: Path, password: str, *, light_kdf: bool = False) -> Identity:
    """Create the data dir and both keystores; refuses to overwrite an existing identity."""
    data_dir = Path(data_dir).expanduser()
    if (data_dir / ETH_KEYSTORE).exists() or (data_dir / LIBP2P_KEYSTORE).exists():
        raise IdentityError(f"{data_dir} already holds an identity; refusing to overwrite keys")
    ensure_private_dir(data_dir)
    ensure_private_dir(data_dir / "keys")
    kdf_n = KDF_N_LIGHT if light_kdf else KDF_N_STANDARD

    libp2p_seed = _random_secret()
    key_pair = create_new_key_pair(libp2p_seed)
    peer_id = ID.from_pubkey(key_pair.public_key)
    # Write the libp2p key first: an identity is only complete when the Ethereum
    # keystore exists too, so a crash in between leaves a dir `init` can redo.
    _write_keystore(
        data_dir / LIBP2P_KEYSTORE,
        libp2p_seed,
        password,
        kdf_n,
        {"address": None, "dainode": {"kind": "libp2p-ed25519-seed", "peer_id": peer_id.to_base58()}},
    )
    eth_secret = _random_secret()
    account = Account.from_key(eth_secret)
    _write_keystore(data_dir / ETH_KEYSTORE, eth_secret, password, kdf_n, {"address": account.address[2:].lower()})
    return Identity(data_dir=data_dir, account=account, libp2p_key=key_pair, password=password)


def _read_keystore(path: Path, password: str) -> tuple[dict, bytes]:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise IdentityError(f"missing key file {path}; run `dainode init`") from None
    except (OSError, ValueError) as exc:
        raise IdentityError(f"key file {path} is unreadable or not JSON ({exc}); restore it from a backup") from None
    if not isinstance(doc, dict) or "crypto" not in doc:
        raise IdentityError(f"key file {path} is not a keystore v3 file")
    try:
        secret = decode_keyfile_json({k: v for k, v in doc.items() if k != "dainode"}, password.encode("utf-8"))
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise WrongPasswordError(f"wrong password for {path}") from None
        raise IdentityError(f"key file {path} is damaged: {exc}") from None
    except Exception as exc:  # eth-keyfile raises KeyError/TypeError on malformed params
        raise IdentityError(f"key file {path} is damaged: {type(exc).__name__}: {exc}") from None
    return doc, secret


def load_identity(data_dir: Path, password: str) -> Identity:
    """Unlock both keystores; WrongPasswordError on a bad password."""
    data_dir = Path(data_dir).expanduser()
    _, eth_secret = _read_keystore(data_dir / ETH_KEYSTORE, password)
    meta, libp2p_seed = _read_keystore(data_dir / LIBP2P_KEYSTORE, password)
    key_pair = create_new_key_pair(libp2p_seed)
    expected = meta.get("dainode", {}).get("peer_id")
    actual = ID.from_pubkey(key_pair.public_key).to_base58()
    if expected and expected != actual:
        raise IdentityError(f"libp2p key file {data_dir / LIBP2P_KEYSTORE} does not match its recorded peer id")
    return Identity(data_dir=data_dir, account=Account.from_key(eth_secret), libp2p_key=key_pair, password=password)


def load_or_init_identity(data_dir: Path, password: str, *, light_kdf: bool = False) -> tuple[Identity, bool]:
    """Load the identity, creating it first if the data dir has none. Returns (identity, created)."""
    data_dir = Path(data_dir).expanduser()
    if is_initialised(data_dir):
        return load_identity(data_dir, password), False
    if (data_dir / ETH_KEYSTORE).exists():
        raise IdentityError(f"{data_dir} has an Ethereum keystore but no libp2p key; restore {LIBP2P_KEYSTORE}")
    if (data_dir / LIBP2P_KEYSTORE).exists():
        # An interrupted init (see init_identity): the libp2p key alone is not an identity yet.
        (data_dir / LIBP2P_KEYSTORE).unlink()
    return init_identity(data_dir, password, light_kdf=light_kdf), True
