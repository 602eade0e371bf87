"""Unit tests of definitions, props, keys, serialization and settings (no network)."""

from __future__ import annotations

import pickle
import threading

import pytest

from motion import Component, DiscardPolicy, Properties, RedisParams, State
from motion.errors import (
    ConfigurationError,
    DefinitionError,
    InvalidInstanceIdError,
    PayloadError,
    SerializationError,
    StateTooLargeError,
    UnknownComponentError,
    UnknownFlowError,
)
from motion.floor import keys as K
from motion.floor.cache import canonical
from motion.floor.serde import DEFAULT_SERIALIZER, dump_value, seal, unseal
from motion.floor.settings import Settings, redact, url_from_environment


def make() -> Component:
    C = Component("Unit")

    @C.init_state
    def setup(start=0):
        return {"value": start}

    @C.serve("add")
    def plus(state, props):
        return state["value"] + props["value"]

    @C.update(["add", "other"])
    def add(state, props):
        return {"value": props.serve_result}

    return C


def test_decorators_return_the_function_and_register_flows() -> None:
    C = Component("Reg")

    def f(state, props):
        return 1

    assert C.serve("a")(f) is f
    assert C.update("a")(f) is f
    assert C.flows() == ["a"]
    assert C.serve_op("a").func is f and [op.func for op in C.update_ops("a")] == [f]


def test_several_update_ops_per_flow_keep_definition_order() -> None:
    C = Component("Order")
    first = C.update("f")(lambda state, props: {"a": 1})
    second = C.update("f")(lambda state, props: {"b": 2})
    assert [op.func for op in C.update_ops("f")] == [first, second]


def test_one_serve_op_per_flow() -> None:
    C = make()
    with pytest.raises(ValueError, match="already has a serve op"):
        C.serve("add")(lambda state, props: 0)


@pytest.mark.parametrize("bad", ["a::b", "", ["ok", "x::y"], []])
def test_flow_names_are_validated(bad) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DefinitionError):
        Component("Flows").serve(bad)


def test_ops_take_only_state_and_props() -> None:
    C = Component("Sig")
    with pytest.raises(DefinitionError, match="may only take `state` and `props`"):
        C.serve("x")(lambda state, props, extra: 0)
    op_fn = C.serve("y")(lambda props: props["v"])  # a UDF may declare only what it needs
    assert C.serve_op("y").call({"ignored": 1}, {"v": 3}) == 3 and op_fn


def test_update_op_may_not_be_a_generator() -> None:
    def gen(state, props):
        yield {}

    with pytest.raises(DefinitionError, match="generator"):
        Component("Gen").update("x")(gen)


@pytest.mark.parametrize(
    ("policy", "after", "ok"),
    [
        (DiscardPolicy.NONE, None, True),
        (DiscardPolicy.NONE, 3, False),
        (DiscardPolicy.NUM_NEW_UPDATES, 3, True),
        (DiscardPolicy.NUM_NEW_UPDATES, None, False),
        (DiscardPolicy.NUM_NEW_UPDATES, 0, False),
        (DiscardPolicy.SECONDS, 0.5, True),
        (DiscardPolicy.SECONDS, -1, False),
        (7, None, False),
    ],
)
def test_discard_policy_validation(policy, after, ok) -> None:  # type: ignore[no-untyped-def]
    decorate = lambda: Component("Disc").update("f", discard_policy=policy, discard_after=after)  # noqa: E731
    if ok:
        decorate()
    else:
        with pytest.raises(ValueError, match="discard"):
            decorate()


@pytest.mark.parametrize("ttl", [-1, None, 1.5])
def test_cache_ttl_validation(ttl) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="cache_ttl"):
        Component("Ttl", cache_ttl=ttl)


@pytest.mark.parametrize("name", ["", "a__b", "with space", "x{y}"])
def test_component_names_are_validated(name: str) -> None:
    with pytest.raises(DefinitionError):
        Component(name)


def test_params_are_read_only_with_a_helpful_key_error() -> None:
    C = Component("Par", params={"model": "small"})
    assert C.params["model"] == "small" and dict(C.params) == {"model": "small"}
    with pytest.raises(KeyError, match="has no param 'temperature'"):
        C.params["temperature"]
    with pytest.raises(TypeError):
        C.params["model"] = "big"  # type: ignore[index]


def test_instance_handles_are_cheap_and_validated() -> None:
    C = make()
    threads = threading.active_count()
    handles = [C(f"user-{i}") for i in range(1000)]
    assert threading.active_count() == threads  # no thread per handle
    assert handles[3].instance_name == "Unit__user-3"
    auto = C()
    assert auto.instance_id and "__" not in auto.instance_id
    assert C().instance_id != auto.instance_id
    with pytest.raises(ValueError, match="must not contain '__'"):
        C("a__b")
    with pytest.raises(InvalidInstanceIdError):
        C(42)  # type: ignore[arg-type]


def test_unknown_flow_is_a_key_error_naming_the_flows() -> None:
    C = make()
    with pytest.raises(KeyError, match=r"has no flow 'nope'; its flows are \['add', 'other'\]"):
        C.check_flow("nope")
    assert issubclass(UnknownFlowError, KeyError)


def test_closed_handles_refuse_work_and_close_is_idempotent() -> None:
    handle = make()("h")
    with handle as same:
        assert same is handle
    handle.close()
    handle.shutdown()
    with pytest.raises(RuntimeError, match="was closed"):
        handle.run("add", {"value": 1})


def test_write_state_rejects_non_dicts_before_touching_redis() -> None:
    with pytest.raises(TypeError, match="takes a dict"):
        make()("w").write_state(["not", "a", "dict"])  # type: ignore[arg-type]


def test_lookup_of_an_undefined_component_says_how_to_fix() -> None:
    from motion.define.component import lookup

    with pytest.raises(UnknownComponentError, match="celery -A workers worker -I"):
        lookup("NeverDefined")


def test_props_carry_serve_result_through_pickling() -> None:
    props = Properties({"q": "hi"})
    props.serve_result = [1, 2]
    clone = pickle.loads(pickle.dumps(props))
    assert clone == {"q": "hi"} and clone.serve_result == [1, 2]
    state = State("u1", {"a": 1})
    assert state.copy().instance_id == "u1" and state.copy() == {"a": 1}


def test_instance_keys_share_one_cluster_slot_tag() -> None:
    keys = K.InstanceKeys.of("Comp__u1")
    assert all("{Comp__u1}" in key for key in keys.all())
    assert K.split_instance_name("Comp__u1") == ("Comp", "u1")
    assert K.name_from_meta_key(keys.meta) == "Comp__u1"
    with pytest.raises(InvalidInstanceIdError):
        K.split_instance_name("nounderscores")
    assert K.meta_pattern("C*") == "motion:{C\\*__*}:meta"


def test_payload_sealing_checks_signatures() -> None:
    body = b"payload"
    assert unseal(seal(body, None), None) == body
    signed = seal(body, b"key")
    assert unseal(signed, b"key") == body
    with pytest.raises(PayloadError, match="signature is wrong"):
        unseal(signed, b"other")
    with pytest.raises(PayloadError, match="unsigned"):
        unseal(seal(body, None), b"key")
    with pytest.raises(PayloadError, match="truncated"):
        unseal(signed[:10], b"key")
    with pytest.raises(PayloadError, match="no motion header"):
        unseal(b"garbage", None)


def test_values_that_cannot_be_serialized_or_are_too_large_are_named() -> None:
    with pytest.raises(SerializationError, match="props of flow"):
        dump_value(DEFAULT_SERIALIZER, "props of flow 'x'", threading.Lock(), 10**6)
    with pytest.raises(StateTooLargeError, match="MOTION_MAX_VALUE_BYTES"):
        dump_value(DEFAULT_SERIALIZER, "state key 'big'", "x" * 2000, 1000)


def test_cache_keys_ignore_dict_order() -> None:
    assert canonical({"a": 1, "b": [1, 2]}) == canonical({"b": [1, 2], "a": 1})
    assert canonical({"a": 1}) != canonical({"a": 2})
    assert canonical({"a": object()}) is None or isinstance(canonical({"a": 1j}), bytes)


def test_redis_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "MOTION_REDIS_URL",
        "MOTION_REDIS_HOST",
        "MOTION_REDIS_PORT",
        "MOTION_REDIS_PASSWORD",
        "MOTION_REDIS_SSL",
        "MOTION_REDIS_DB",
    ):
        monkeypatch.delenv(name, raising=False)
    assert url_from_environment() is None  # the embedded default
    monkeypatch.setenv("MOTION_REDIS_HOST", "cache.internal")
    monkeypatch.setenv("MOTION_REDIS_PORT", "6380")
    monkeypatch.setenv("MOTION_REDIS_PASSWORD", "p@ss")
    monkeypatch.setenv("MOTION_REDIS_SSL", "1")
    assert url_from_environment() == "rediss://:p%40ss@cache.internal:6380/0"
    monkeypatch.setenv("MOTION_REDIS_URL", "redis://user:secret@other:6379/2")
    assert url_from_environment() == "redis://user:secret@other:6379/2"  # the URL wins
    monkeypatch.setenv("MOTION_REDIS_URL", "http://nope")
    with pytest.raises(ConfigurationError, match="must start with redis://"):
        url_from_environment()
    assert RedisParams(host="h", port=1, db=2, password=None, ssl=False).url() == "redis://h:1/2"


def test_secrets_are_redacted_and_bad_numbers_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact("redis://user:secret@h:1/0") == "redis://user:***@h:1/0"
    assert redact("rediss://:secret@h:1/0") == "rediss://:***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"
    monkeypatch.setenv("MOTION_LEASE_SECONDS", "soon")
    with pytest.raises(ConfigurationError, match="MOTION_LEASE_SECONDS"):
        Settings.from_environment()
    monkeypatch.setenv("MOTION_LEASE_SECONDS", "5")
    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "maybe")
    with pytest.raises(ConfigurationError, match="use 1 or 0"):
        Settings.from_environment()


def test_wakeups_are_named_by_component_and_internal_flows_in_plain_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import json

    from motion.floor import wakeup

    monkeypatch.setenv("MOTION_REDIS_URL", "redis://127.0.0.1:1/0")  # never connected to
    _, raw = wakeup.message("Comp", "i-1", "::write")
    message = json.loads(wakeup.fill_seq(raw, 3))
    assert message["headers"]["shadow"] == "Comp.updates"  # not after the waking flow
    assert message["headers"]["argsrepr"] == "['Comp', 'i-1', 'write_state', 3]"
    assert json.loads(message["body"])[0] == ["Comp", "i-1", "write_state", 3]


def test_pushed_wakeups_match_the_messages_celery_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    """The enqueue script pushes wake-ups itself: they must be what Celery would send."""
    import json

    from motion.floor import celery_app, wakeup

    monkeypatch.setenv("MOTION_REDIS_URL", "redis://127.0.0.1:1/0")  # never connected to
    queue, raw = wakeup.message("Comp", 'we"ird', "flow")
    message = json.loads(raw.replace(b"\x01SEQ\x01", b"7"))
    app = celery_app.get_app()
    sent = app.amqp.as_task_v2(
        "id",
        wakeup.APPLY_TASK,
        args=["Comp", 'we"ird', "flow", 7],
        shadow="Comp.updates",
        ignore_result=True,
    )
    assert set(message["headers"]) == set(sent.headers)
    for key in ("lang", "task", "shadow", "argsrepr", "kwargsrepr", "ignore_result", "retries"):
        assert message["headers"][key] == sent.headers[key], key
    assert json.loads(message["body"]) == list(sent.body)
    assert message["properties"]["delivery_info"] == {"exchange": "", "routing_key": queue}
    assert queue == wakeup.queue_for("Comp", 'we"ird') == "motion.Comp." + queue[-1]
