"""The node's identity: an Ethereum account and a libp2p key, both in password-encrypted keystore files."""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keyfile import create_keyfile_json, decode_keyfile_json
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from dainode.errors import IdentityError, WrongPasswordError
from dainode.fsutil import check_private_file, create_exclusive, ensure_private_dir, fsync_dir, pid_alive

ETH_KEYSTORE = "keys/eth.keystore.json"
LIBP2P_KEYSTORE = "keys/libp2p.keystore.json"
# Present while `init` writes the two keystores: a crash in between leaves it behind, so a
# lone key file with the marker is an interrupted init, and without it a lost file.
INIT_MARKER = "keys/INIT-INCOMPLETE"
LIBP2P_KIND = "libp2p-ed25519-seed"

log = logging.getLogger("dainode.identity")

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


def _keystore_bytes(secret: bytes, password: str, kdf_n: int, meta: dict) -> bytes:
    doc = create_keyfile_json(secret, password.encode("utf-8"), kdf="scrypt", iterations=kdf_n)
    doc.update(meta)
    return json.dumps(doc, indent=2, sort_keys=True).encode("utf-8")


def _create_key_file(path: Path, data: bytes) -> None:
    try:
        create_exclusive(path, data, mode=0o600)
    except FileExistsError:
        raise IdentityError(
            f"{path} appeared while this process was creating it (another `dainode init`/`start` on the same "
            "data dir?); nothing was overwritten"
        ) from None


def backup_keys(data_dir: Path, reason: str = "replaced") -> Path | None:
    """Move the identity's key files (and an init marker) to keys/backup-<UTC time>-<reason>/; never deletes.

    Returns the backup directory, or None when there was nothing to move.
    """
    data_dir = Path(data_dir).expanduser()
    present = [rel for rel in (ETH_KEYSTORE, LIBP2P_KEYSTORE, INIT_MARKER) if (data_dir / rel).exists()]
    if not present:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    backup = data_dir / "keys" / f"backup-{stamp}-{reason}"
    n = 1
    while backup.exists():
        n += 1
        backup = data_dir / "keys" / f"backup-{stamp}-{reason}-{n}"
    backup.mkdir(mode=0o700)
    for rel in present:
        os.rename(data_dir / rel, backup / Path(rel).name)
    fsync_dir(backup)
    fsync_dir(data_dir / "keys")
    return backup


def init_identity(data_dir: Path, password: str, *, light_kdf: bool = False) -> Identity:
    """Create the data dir and both keystores; refuses to overwrite an existing identity.

    Call it holding the data-dir lock (dainode.datadir.DataDirLock). Key files are created
    exclusively (O_EXCL + link): an existing file is never replaced, even in a race.
    """
    data_dir = Path(data_dir).expanduser()
    for rel in (ETH_KEYSTORE, LIBP2P_KEYSTORE):
        if (data_dir / rel).exists():
            raise IdentityError(
                f"{data_dir} already holds an identity ({data_dir / rel} exists); refusing to overwrite keys "
                f"(`dainode init --force --data-dir {data_dir}` moves the old key files to keys/backup-*/ first)"
            )
    ensure_private_dir(data_dir)
    ensure_private_dir(data_dir / "keys")
    kdf_n = KDF_N_LIGHT if light_kdf else KDF_N_STANDARD
    try:
        create_exclusive(data_dir / INIT_MARKER, f"{os.getpid()}\n".encode(), mode=0o600)
    except FileExistsError:
        raise IdentityError(
            f"{data_dir / INIT_MARKER} exists: another process is initialising {data_dir}, or an init was "
            "interrupted (`dainode start` recovers from that)"
        ) from None

    eth_secret = _random_secret()
    account = Account.from_key(eth_secret)
    libp2p_seed = _random_secret()
    key_pair = create_new_key_pair(libp2p_seed)
    peer_id = ID.from_pubkey(key_pair.public_key)
    meta = {"kind": LIBP2P_KIND, "peer_id": peer_id.to_base58(), "account": account.address}
    _create_key_file(data_dir / LIBP2P_KEYSTORE, _keystore_bytes(libp2p_seed, password, kdf_n, {"address": None, "dainode": meta}))
    _create_key_file(data_dir / ETH_KEYSTORE, _keystore_bytes(eth_secret, password, kdf_n, {"address": account.address[2:].lower()}))
    (data_dir / INIT_MARKER).unlink()
    fsync_dir(data_dir / "keys")
    return Identity(data_dir=data_dir, account=account, libp2p_key=key_pair, password=password)


def _read_keystore(path: Path, password: str) -> tuple[dict, bytes]:
    check_private_file(path)
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


def _missing_half(data_dir: Path, missing: str, present: str) -> IdentityError:
    return IdentityError(
        f"{data_dir / missing} is missing but {data_dir / present} exists: half of this node's identity is gone. "
        f"Restore {missing} from your backup (it must be the file made together with {present}), or run "
        f"`dainode init --force --data-dir {data_dir}` to create a new identity (new peer id and account; "
        "the remaining key file is moved to keys/backup-*/, not deleted)"
    )


def load_identity(data_dir: Path, password: str) -> Identity:
    """Unlock both keystores; WrongPasswordError on a bad password.

    Each file must hold the kind of key it is named for and match what it records (the
    libp2p file its peer id and account, the Ethereum file its address), so a keystore
    swapped for another one is refused instead of silently changing the node's identity.
    """
    data_dir = Path(data_dir).expanduser()
    eth_path, p2p_path = data_dir / ETH_KEYSTORE, data_dir / LIBP2P_KEYSTORE
    if not eth_path.exists() and p2p_path.exists():
        raise _missing_half(data_dir, ETH_KEYSTORE, LIBP2P_KEYSTORE)
    if not p2p_path.exists() and eth_path.exists():
        raise _missing_half(data_dir, LIBP2P_KEYSTORE, ETH_KEYSTORE)
    if not eth_path.exists():
        raise IdentityError(f"{data_dir} holds no identity (no {ETH_KEYSTORE}); run `dainode init --data-dir {data_dir}`")
    eth_doc, eth_secret = _read_keystore(eth_path, password)
    if isinstance(eth_doc.get("dainode"), dict):
        raise IdentityError(f"{eth_path} holds a {eth_doc['dainode'].get('kind')} key, not an Ethereum key; restore the right file from a backup")
    try:
        account = Account.from_key(eth_secret)
    except Exception as exc:  # not a valid secp256k1 secret
        raise IdentityError(f"{eth_path} does not hold a valid Ethereum key: {exc}") from None
    recorded = eth_doc.get("address")
    if not isinstance(recorded, str) or recorded.lower().removeprefix("0x") != account.address[2:].lower():
        raise IdentityError(
            f"{eth_path} records address {recorded!r} but its key is {account.address}: the file was altered or "
            "replaced; restore it from a backup"
        )

    p2p_doc, libp2p_seed = _read_keystore(p2p_path, password)
    meta = p2p_doc.get("dainode")
    if not isinstance(meta, dict) or meta.get("kind") != LIBP2P_KIND or not meta.get("peer_id"):
        raise IdentityError(
            f"{p2p_path} is not a dainode libp2p keystore (no recorded kind {LIBP2P_KIND!r} and peer id; "
            "was it replaced by another keystore?); restore it from a backup"
        )
    key_pair = create_new_key_pair(libp2p_seed)
    actual = ID.from_pubkey(key_pair.public_key).to_base58()
    if meta["peer_id"] != actual:
        raise IdentityError(
            f"libp2p key file {p2p_path} records peer id {meta['peer_id']} but its key is {actual}: the file was "
            "altered or replaced; restore it from a backup"
        )
    paired = meta.get("account")  # absent in files written before it was recorded
    if paired is not None and str(paired).lower() != account.address.lower():
        raise IdentityError(
            f"{p2p_path} belongs to account {paired} but {eth_path} holds {account.address}: the two key files "
            "come from different nodes; restore the matching pair from a backup"
        )
    return Identity(data_dir=data_dir, account=account, libp2p_key=key_pair, password=password)


def load_or_init_identity(data_dir: Path, password: str, *, light_kdf: bool = False) -> tuple[Identity, bool]:
    """Load the identity, creating it first if the data dir has none. Returns (identity, created).

    Call it holding the data-dir lock. Never deletes a key file: an init that was
    interrupted (its marker is still there) is moved to keys/backup-*-interrupted-init/
    and redone; a lone key file without the marker is a lost half, an IdentityError.
    """
    data_dir = Path(data_dir).expanduser()
    marker = data_dir / INIT_MARKER
    if marker.exists():
        try:
            owner = int(marker.read_text().strip() or 0)
        except (OSError, ValueError):
            owner = 0
        if owner != os.getpid() and pid_alive(owner):
            raise IdentityError(f"process {owner} is initialising {data_dir} right now ({marker}); wait for it")
        backup = backup_keys(data_dir, "interrupted-init")
        log.warning("an earlier init of %s was interrupted; its files are in %s; creating the identity again", data_dir, backup)
    eth, p2p = (data_dir / ETH_KEYSTORE).exists(), (data_dir / LIBP2P_KEYSTORE).exists()
    if eth or p2p:
        return load_identity(data_dir, password), False
    return init_identity(data_dir, password, light_kdf=light_kdf), True
