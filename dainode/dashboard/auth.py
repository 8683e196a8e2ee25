"""Dashboard access: the token file, the Host-header check (DNS rebinding) and token checks of a request."""

from __future__ import annotations

import hmac
import ipaddress
import os
import secrets
from http.cookies import CookieError, SimpleCookie
from pathlib import Path

from dainode.errors import ConfigError, DainodeError

TOKEN_FILE = "http.token"
TOKEN_BYTES = 32  # 256 bits, url-safe base64: 43 characters


def token_path(data_dir: Path | str) -> Path:
    return Path(data_dir).expanduser() / TOKEN_FILE


def load_or_create_token(data_dir: Path | str) -> str:
    """The token in <data_dir>/http.token, created (0600, O_EXCL: never replacing a file, even in a race) if missing."""
    path = token_path(data_dir)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return read_token(path)
    token = secrets.token_urlsafe(TOKEN_BYTES)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        path.unlink(missing_ok=True)  # a half-written token file would lock the user out
        raise
    return token


def read_token(path: Path) -> str:
    """Read an existing token file; refuse one that others may read or that holds no token."""
    try:
        st = path.stat()
        text = path.read_text().strip()
    except OSError as exc:
        raise DainodeError(f"cannot read the dashboard token {path}: {exc.strerror or exc}") from None
    if st.st_mode & 0o077:
        raise DainodeError(f"the dashboard token {path} is readable by others (mode {st.st_mode & 0o777:o}); "
                           f"run `chmod 600 {path}` or delete it for a new one")
    if len(text) < 16:
        raise DainodeError(f"the dashboard token {path} is empty or too short; delete it and restart for a new one")
    return text


def parse_listen(value: str) -> tuple[str, int]:
    """`127.0.0.1:5050` / `[::1]:0` -> (host, port)."""
    host, _, port = value.rpartition(":")
    return host.strip("[]"), int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(value: str, allow_remote: bool) -> tuple[str, int]:
    """The (host, port) to bind; a non-loopback host without http.allow_remote is a ConfigError."""
    host, port = parse_listen(value)
    if not is_loopback(host) and not allow_remote:
        raise ConfigError(f"http.listen {value!r} is not a loopback address: the dashboard would be reachable from other "
                          "machines; use 127.0.0.1:PORT, or pass --http-allow-remote (http.allow_remote = true) if you mean it",
                          key="http.listen")
    return host, port


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """Host header values accepted for a server bound to host:port (the bound port, after port 0 is resolved)."""
    names = {"localhost", "127.0.0.1", "[::1]"}
    if host not in ("0.0.0.0", "::", ""):
        names.add(f"[{host}]" if ":" in host else host)
    with_port = {f"{n}:{port}" for n in names}
    return frozenset(with_port | (names if port == 80 else set()))  # on port 80 browsers send the bare name


def host_allowed(header: str | None, allowed: frozenset[str]) -> bool:
    """True when the request's Host header names this server (not a rebinding attacker's domain)."""
    return header is not None and header.strip().lower() in allowed


def cookie_name(port: int) -> str:
    """Cookies are not scoped by port: one per port, so two nodes on localhost do not overwrite each other's."""
    return f"dainode_token_{port}"


def request_token(headers: dict[str, str], query_token: str | None, port: int) -> tuple[str | None, str]:
    """The token a request carries and where: ("…", "bearer" | "query" | "cookie") or (None, "")."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip(), "bearer"
    if query_token is not None:
        return query_token, "query"
    raw = headers.get("cookie")
    if raw:
        jar = SimpleCookie()
        try:
            jar.load(raw)
        except CookieError:
            return None, ""
        morsel = jar.get(cookie_name(port))
        if morsel is not None:
            return morsel.value, "cookie"
    return None, ""


def token_ok(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
