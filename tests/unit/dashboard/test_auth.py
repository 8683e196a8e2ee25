"""Dashboard access rules: the token file, loopback-only listen, the Host allow-list and where a token may come from."""

from __future__ import annotations

import os

import pytest

from dainode.dashboard.auth import (allowed_hosts, check_listen, cookie_name, host_allowed, load_or_create_token, read_token,
                                    request_token, token_ok, token_path)
from dainode.errors import ConfigError, DainodeError


def test_token_is_created_once_0600_and_then_reused(tmp_path):
    token = load_or_create_token(tmp_path)
    assert len(token) >= 43
    assert token_path(tmp_path).stat().st_mode & 0o777 == 0o600
    assert load_or_create_token(tmp_path) == token  # an existing file is read, never replaced
    assert load_or_create_token(tmp_path / ".." / tmp_path.name) == token


def test_a_token_file_others_can_read_or_an_empty_one_is_refused(tmp_path):
    p = token_path(tmp_path)
    load_or_create_token(tmp_path)
    os.chmod(p, 0o644)
    with pytest.raises(DainodeError, match="readable by others.*chmod 600"):
        load_or_create_token(tmp_path)
    os.chmod(p, 0o600)
    p.write_text("short\n")
    with pytest.raises(DainodeError, match="empty or too short"):
        read_token(p)


def test_listen_must_be_loopback_unless_allowed():
    assert check_listen("127.0.0.1:5050", False) == ("127.0.0.1", 5050)
    assert check_listen("[::1]:0", False) == ("::1", 0)
    assert check_listen("localhost:1", False) == ("localhost", 1)
    for remote in ("0.0.0.0:5050", "192.168.1.5:80", "[::]:5050", "example.com:5050"):
        with pytest.raises(ConfigError, match="not a loopback address.*--http-allow-remote") as err:
            check_listen(remote, False)
        assert err.value.key == "http.listen"
        assert check_listen(remote, True)[1] in (5050, 80)


@pytest.mark.parametrize("header, ok", [
    ("localhost:5051", True), ("127.0.0.1:5051", True), ("[::1]:5051", True), ("LOCALHOST:5051", True),
    ("localhost", False), ("localhost:5050", False), ("evil.example:5051", False), ("127.0.0.1.nip.io:5051", False),
    ("", False), (None, False), ("localhost:5051.evil", False),
])
def test_host_header_must_name_this_server(header, ok):
    assert host_allowed(header, allowed_hosts("127.0.0.1", 5051)) is ok


def test_a_remote_listen_address_is_an_allowed_host_too():
    allowed = allowed_hosts("192.168.1.5", 8080)
    assert host_allowed("192.168.1.5:8080", allowed) and host_allowed("localhost:8080", allowed)
    assert not host_allowed("192.168.1.6:8080", allowed)


def test_token_from_bearer_query_or_this_port_cookie():
    assert request_token({"authorization": "Bearer abc"}, None, 1) == ("abc", "bearer")
    assert request_token({}, "q", 1) == ("q", "query")
    assert request_token({"cookie": f"other=1; {cookie_name(1)}=c"}, None, 1) == ("c", "cookie")
    assert request_token({"cookie": f"{cookie_name(2)}=c"}, None, 1) == (None, "")  # another node's cookie
    assert request_token({"cookie": "\x00bad"}, None, 1)[0] is None
    assert request_token({"authorization": "Basic abc"}, None, 1) == (None, "")
    assert token_ok("abc", "abc") and not token_ok("abd", "abc") and not token_ok(None, "abc") and not token_ok("", "abc")
