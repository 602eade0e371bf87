"""Instances exist once constructed, as in Motion: ``C()`` / ``C("id")`` creates the instance.

``init_state`` runs once, at construction, however many callers race; its error
is raised there; the creating handle serves version 1 from the live object
``init_state`` returned; a handle on an instance this process knows costs no
round trip; an instance cleared elsewhere is created again, as a new incarnation.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import pytest

from motion import Component, StateMigrator, get_instances, inspect_state
from motion.floor import keys as K
from tests.support import commands_sent

pytestmark = pytest.mark.integration

Account = Component("Account", cache_ttl=0)


class Connection:
    """Stands for a database connection made in init_state (not picklable on purpose)."""

    made: ClassVar[list[Connection]] = []

    def __init__(self) -> None:
        Connection.made.append(self)
        self._lock = threading.Lock()

    def __reduce__(self) -> Any:
        raise TypeError("a live connection cannot be pickled")


@Account.init_state
def setup(owner: str = "nobody", fail: bool = False) -> dict:
    if fail:
        raise RuntimeError("cannot reach the accounts database")
    client = _counter_client()
    if client is not None:
        client.incr(f"test:init-calls:{owner}")
    return {"owner": owner, "balance": 0}


@Account.serve("owner")
def owner(state, props):
    return state["owner"]


_client_holder: list[Any] = []


def _counter_client() -> Any:
    return _client_holder[0] if _client_holder else None


@pytest.fixture
def counted(redis_server):  # type: ignore[no-untyped-def]
    _client_holder[:] = [redis_server.client()]
    yield redis_server.client()
    _client_holder.clear()


def test_a_constructed_instance_exists_for_the_admin_tools(redis_url, counted) -> None:  # type: ignore[no-untyped-def]
    Account("ann", {"owner": "ann"})
    Account("bob", {"owner": "bob"})
    assert inspect_state("Account__ann") == {"owner": "ann", "balance": 0}
    assert get_instances("Account") == ["ann", "bob"]
    assert sorted(
        r.instance_id for r in StateMigrator(Account, lambda s: s).migrate(timeout=0)
    ) == [
        "ann",
        "bob",
    ]
    assert int(counted.get("test:init-calls:ann")) == 1


def test_an_init_state_error_is_raised_at_construction(redis_url) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError, match="accounts database"):
        Account("broken", {"fail": True})
    assert get_instances("Account") == []
    Account("broken", {"owner": "fixed"})  # the failed attempt left no claim behind
    assert inspect_state("Account__broken")["owner"] == "fixed"


def test_racing_callers_run_init_state_once(redis_url, counted) -> None:  # type: ignore[no-untyped-def]
    from tests.conftest import reset_motion

    barrier = threading.Barrier(8)
    errors: list[BaseException] = []

    def construct() -> None:
        try:
            barrier.wait(5)
            Account("race", {"owner": "race"})
        except BaseException as exc:
            errors.append(exc)

    reset_motion()
    threads = [threading.Thread(target=construct) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert int(counted.get("test:init-calls:race")) == 1


LiveDb = Component("LiveDb", cache_ttl=0)


@LiveDb.init_state
def connect() -> dict:
    return {"db": Connection()}


@LiveDb.serve("same")
def same(state, props):
    return state["db"] is Connection.made[-1]


@LiveDb.save_state
def save(state):
    return {"dsn": "sqlite://"}


@LiveDb.load_state
def load(saved):
    return {"db": Connection()}


def test_the_creating_handle_serves_the_live_object_init_state_returned(redis_url) -> None:  # type: ignore[no-untyped-def]
    handle = LiveDb("db-1")
    made = len(Connection.made)
    assert handle.run("same") is True
    assert len(Connection.made) == made  # no load_state copy was made


def test_a_handle_on_a_known_instance_costs_no_round_trip(redis_url, redis_server) -> None:  # type: ignore[no-untyped-def]
    Account("known", {"owner": "k"})
    assert commands_sent(redis_server.client(), lambda: Account("known")) == []


def test_an_instance_cleared_elsewhere_is_created_again_as_a_new_incarnation(  # type: ignore[no-untyped-def]
    redis_url, redis_server
) -> None:
    handle = Account("gone", {"owner": "first"})
    meta = K.InstanceKeys.of("Account__gone").meta
    client = redis_server.client()
    first = client.hget(meta, "inc")
    client.delete(*K.InstanceKeys.of("Account__gone").all())  # another process cleared it
    assert handle.run("owner") == "first"  # init_state ran again, with the handle's params
    second = client.hget(meta, "inc")
    assert first and second and first != second
    assert handle.get_version() == 1
