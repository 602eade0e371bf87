"""Unit tests (no network) of the HTTP token rules and the dashboard's access rules."""

from __future__ import annotations

import time

import pytest

from motion.errors import ConfigurationError
from motion.tools.board_access import Access, Session, is_loopback, request_is_local
from motion.tools.tokens import TokenSigner, check_expiry, check_secret, same_secret

SECRET = "unit-secret-0123456789abcdef0123456789abcdef"
KEY = "unit-dashboard-key-0123456789abcdef0123456789"


def test_secret_and_expiry_rules() -> None:
    assert check_secret("x" * 32, "k") == "x" * 32
    with pytest.raises(ConfigurationError, match="31 bytes"):
        check_secret("x" * 31, "k")
    with pytest.raises(ConfigurationError, match="is 30 bytes"):
        check_secret("é" * 15, "k")  # 30 bytes in UTF-8, 15 characters
    assert check_expiry(1) == 1.0 and check_expiry(30) == 30.0 and check_expiry(0.5) == 0.5
    for bad in (0, -1, 30.01, float("inf"), float("nan"), True, "1", None):
        with pytest.raises(ConfigurationError):
            check_expiry(bad)
    assert same_secret(SECRET, SECRET) and not same_secret(SECRET[:-1], SECRET)
    assert not same_secret("", SECRET)


def test_a_token_names_its_instance_and_components() -> None:
    signer = TokenSigner(SECRET)
    grant = signer.check(signer.make("u1", ["Notes"]))
    assert grant is not None and grant.allows("Notes", "u1")
    assert not grant.allows("Drafts", "u1") and not grant.allows("Notes", "u2")
    assert TokenSigner("other-" + SECRET).check(signer.make("u1", ["Notes"])) is None
    assert signer.check("not.a.token") is None


def test_loopback_rule() -> None:
    for host in ("127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost", "app.localhost"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "10.0.0.1", "example.com", "localhost.example.com"):
        assert not is_loopback(host), host
    local = {"server": ("127.0.0.1", 8080), "client": ("127.0.0.1", 5000)}
    assert request_is_local(local, "localhost:8080")
    assert request_is_local(local, "127.0.0.1:8080")
    assert not request_is_local(local, "evil.example:8080")  # DNS rebinding
    assert request_is_local({"server": ("::1", 8080)}, "[::1]:8080")
    assert not request_is_local({"server": ("10.0.0.2", 8080)}, "localhost")
    assert not request_is_local({"server": None}, "localhost")
    assert not request_is_local({"server": ("testserver", 80), "client": ("1.2.3.4", 1)}, "x")


def test_sessions_are_signed_expire_and_end_with_the_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    access = Access(KEY)
    session = Session("n" * 32, operator=True)
    cookie = access.cookie(session)
    back = access.session(cookie)
    assert back is not None and back.operator and back.nonce == session.nonce
    assert access.csrf_ok(back, access.csrf(session))
    assert not access.csrf_ok(back, access.csrf(Session("m" * 32, operator=True)))
    nonce, kind, issued, mac = cookie.split(".")
    assert access.session(f"{nonce}.{kind}.{int(issued) + 1}.{mac}") is None  # tampered
    assert access.session(access.cookie(Session("o" * 32, operator=False))) is None  # not signed in
    assert Access("another-" + KEY).session(cookie) is None  # another key
    later = time.time() + 13 * 3600
    monkeypatch.setattr(time, "time", lambda: later)
    assert access.session(cookie) is None  # expired
