"""Redis URLs: passwords never printed, malformed options named (no network)."""

from __future__ import annotations

import pytest

from motion.errors import ConfigurationError
from motion.floor import settings
from motion.floor.settings import check_url, redact


@pytest.fixture(autouse=True)
def fresh_settings(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    for name in ("MOTION_REDIS_URL", "MOTION_REDIS_SHARDS", "MOTION_BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    settings.reset()
    yield
    settings.reset()


@pytest.mark.parametrize(
    "url",
    [
        "redis://:pa?ss@host:6379/0",
        "redis://user:pa?ss#word@host:6379/0",
        "redis://:pa/ss@host:6379/0",
        "rediss://:p@ss?x@host:6379/0",
        "redis://host:6379/0?password=pa?ss&db=0",
    ],
)
def test_a_password_with_url_characters_is_never_printed(url: str) -> None:
    assert "pa?ss" not in redact(url) and "ss#word" not in redact(url)
    assert "pa/ss" not in redact(url) and "p@ss" not in redact(url)
    assert "host:6379" in redact(url)


def test_a_password_with_a_question_mark_is_named_not_the_port(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MOTION_REDIS_URL", "redis://:pa?ss@host:6379/0")
    with pytest.raises(ConfigurationError) as raised:
        settings.get_settings()
    message = str(raised.value)
    assert "MOTION_REDIS_URL" in message and "pa?ss" not in message
    assert "percent-encode" in message and "port" not in message
    encoded = "redis://:pa%3Fss@host:6379/0"
    assert check_url(encoded, "MOTION_REDIS_URL") == encoded


@pytest.mark.parametrize(
    "query", ["socket_timeout=abc", "socket_connect_timeout=-", "health_check_interval=x"]
)
def test_malformed_url_options_are_configuration_errors(monkeypatch, query: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MOTION_REDIS_URL", f"redis://:s3cret@host:6379/0?{query}")
    with pytest.raises(ConfigurationError) as raised:
        settings.get_settings()
    message = str(raised.value)
    assert "MOTION_REDIS_URL" in message and query.split("=")[0] in message
    assert "s3cret" not in message


def test_unknown_url_options_are_configuration_errors(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MOTION_REDIS_URL", "redis://:s3cret@host:6379/0?sockettimeout=1")
    with pytest.raises(ConfigurationError, match="sockettimeout") as raised:
        settings.get_settings()
    assert "s3cret" not in str(raised.value)


def test_well_formed_url_options_pass(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    url = "redis://:s3cret@host:6379/0?socket_timeout=2.5&health_check_interval=10"
    monkeypatch.setenv("MOTION_REDIS_URL", url)
    assert settings.get_settings().redis_url == url


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MOTION_REDIS_SOCKET_TIMEOUT", "abc"),
        ("MOTION_REDIS_SOCKET_TIMEOUT", "0"),
        ("MOTION_REDIS_CONNECT_TIMEOUT", "-1"),
        ("MOTION_REDIS_RETRY_SECONDS", "x"),
    ],
)
def test_timeout_settings_are_checked(monkeypatch, name: str, value: str) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=name):
        settings.get_settings()


def test_timeout_defaults_keep_a_failing_call_under_30_seconds() -> None:
    current = settings.get_settings()
    assert current.redis_socket_timeout == 5 and current.redis_connect_timeout == 5
    assert current.redis_retry_seconds + current.redis_socket_timeout < 30


def test_configure_checks_the_url_and_the_timeouts() -> None:
    with pytest.raises(ConfigurationError, match="redis_url") as raised:
        settings.configure(redis_url="redis://:s3cret@host:6379/0?socket_timeout=abc")
    assert "s3cret" not in str(raised.value)
    with pytest.raises(ConfigurationError, match="redis_socket_timeout"):
        settings.configure(redis_socket_timeout=0)
    assert settings.configure(redis_retry_seconds=3).redis_retry_seconds == 3


def test_a_broker_url_may_carry_transport_options_but_not_malformed_ones(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MOTION_BROKER_URL", "redis://h:1/0?visibility_timeout=10")
    assert settings.get_settings().broker_url == "redis://h:1/0?visibility_timeout=10"
    settings.reset()
    monkeypatch.setenv("MOTION_BROKER_URL", "redis://:s3cret@h:1/0?socket_timeout=abc")
    with pytest.raises(ConfigurationError, match="MOTION_BROKER_URL") as raised:
        settings.get_settings()
    assert "s3cret" not in str(raised.value)
