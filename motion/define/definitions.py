"""Every component definition of this process, and which one applies an update.

Two ``Component("Counter")`` objects may live in one process (each test file of
a suite defines its own; a re-run notebook cell defines a new one). Each keeps
applying its own ops: an enqueued update records the fingerprint of the
definition whose handle made it (:meth:`motion.component.Component.fingerprint`),
and :func:`resolve` finds that definition here. A process with one definition
of a name (a separate worker) applies every update of the name with it.

Definition layer, under :mod:`motion.define.component`, which registers each object
here; uses the floor's :mod:`motion.floor.errors` only.
"""

from __future__ import annotations

import hashlib
import inspect
import threading
from collections.abc import Callable
from types import CodeType
from typing import Any, Protocol, TypeVar

from motion.floor.errors import DefinitionError, UnknownComponentError


class Definition(Protocol):
    """What the registry needs of a component definition."""

    @property
    def name(self) -> str:
        """The component's name."""
        ...

    @property
    def module(self) -> str:
        """The module that defined it."""
        ...

    def fingerprint(self) -> str:
        """Digest of its flows and ops, and of the modules holding them."""
        ...

    def content(self) -> str:
        """Digest of its flows and ops alone (two modules may hold the same code)."""
        ...

    @property
    def past_fingerprints(self) -> set[str]:
        """Every fingerprint it had (ops added after a handle enqueued change it)."""
        ...


D = TypeVar("D", bound=Definition)

_registry: dict[str, list[Any]] = {}  # name -> definitions, oldest first
_lock = threading.Lock()
_listeners: list[Callable[[str], None]] = []


def code_digest(func: Callable[..., Any]) -> str:
    """A digest of what ``func`` does: its bytecode, names and constants, without the
    file name and line numbers (they change when unrelated lines move)."""
    code = getattr(inspect.unwrap(func), "__code__", None)
    if not isinstance(code, CodeType):
        return f"{type(func).__module__}.{type(func).__qualname__}"
    digest = hashlib.blake2b(digest_size=8)
    _feed(digest, code)
    return digest.hexdigest()


def digests(name: str, module: str, ops: list[Any]) -> tuple[str, str]:
    """``(fingerprint, content)`` of a definition from its ops (:class:`motion.component.Op`,
    flow by flow in order): the content digest covers what the ops do, the
    fingerprint also the modules that hold them."""
    parts = [
        f"{op.flow}|{op.kind}|{op.name}|{code_digest(op.func)}|"
        f"{int(op.discard_policy)}|{op.discard_after}|{op.batch}|{op.retries}"
        for op in ops
    ]
    content = "\n".join(parts)
    modules = sorted({module} | {getattr(op.func, "__module__", "?") for op in ops})
    return _hex(f"{name}\n{modules}\n{content}"), _hex(f"{name}\n{content}")


def _hex(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _feed(digest: Any, code: CodeType) -> None:
    digest.update(code.co_code)
    digest.update(repr((code.co_names, code.co_varnames, code.co_freevars)).encode())
    for const in code.co_consts:
        if isinstance(const, CodeType):
            _feed(digest, const)
        elif isinstance(const, frozenset):  # its repr's order changes with the hash seed
            digest.update(repr(sorted(map(repr, const))).encode())
        else:
            digest.update(repr(const).encode())


def register(definition: Definition) -> None:
    """Keep ``definition`` findable (done by ``Component.__init__``).

    Earlier definitions of the same name stay: their handles, and the updates
    those handles enqueued, keep using them.
    """
    with _lock:
        known = definition.name in _registry
        earlier = _distinct(_registry.get(definition.name, []))
        _registry[definition.name] = [*earlier, definition]
        listeners = list(_listeners)
    if not known:
        for listener in listeners:
            listener(definition.name)


def on_register(listener: Callable[[str], None]) -> None:
    """Call ``listener(name)`` whenever a component with a new name is defined here."""
    with _lock:
        if listener not in _listeners:
            _listeners.append(listener)


def newest(name: str) -> Any | None:
    """The last definition of ``name`` in this process (``None`` if there is none)."""
    found = _registry.get(name)
    return found[-1] if found else None


def all_named(name: str) -> list[Any]:
    """Every live definition of ``name`` in this process, oldest first."""
    with _lock:
        return list(_registry.get(name, []))


def registered() -> list[str]:
    """Names of every component defined in this process."""
    return sorted(_registry)


def resolve(component: D, fingerprint: str | None) -> D:
    """The definition that applies an update of ``component``'s name made by the
    definition with ``fingerprint`` (``None``: an update of motion's own, a write or
    a migration, or one enqueued before updates recorded it).

    With one definition of the name here, or none recorded, that is ``component``.
    With several: the newest one with that fingerprint (now, else in the past); if
    none had it but all do the same thing, ``component``.

    Raises:
        UnknownComponentError: several different definitions live here and none
            made the update; it stays pending for a process that has its code.
    """
    found = _registry.get(component.name)
    if fingerprint is None or found is None or len(found) < 2:
        return component
    if component.fingerprint() == fingerprint:
        return component
    for definition in reversed(found):
        if definition.fingerprint() == fingerprint:
            return definition  # type: ignore[no-any-return]  # same name, so same type
    for definition in reversed(found):  # made before its last op was added
        if fingerprint in definition.past_fingerprints:
            return definition  # type: ignore[no-any-return]
    if len({d.content() for d in found}) == 1:
        return component
    modules = sorted({d.module for d in found})
    raise UnknownComponentError(
        f"an update of {component.name!r} was made by a definition this process does not "
        f"have (fingerprint {fingerprint}); the definitions here are in {modules}. It stays "
        f"pending: run a worker with the module that made it (celery -A workers worker -I "
        f"<module>)."
    )


def check_unique() -> None:
    """Refuse to run a worker whose modules define one name twice, differently.

    A separate worker applies every update of a name with the one definition it
    has, so it must not have two that disagree.

    Raises:
        DefinitionError: naming the component and both modules.
    """
    with _lock:
        snapshot = {name: list(found) for name, found in _registry.items()}
    for name, found in sorted(snapshot.items()):
        first = found[0]
        for other in found[1:]:
            if other.content() != first.content():
                raise DefinitionError(
                    f"component {name!r} is defined twice with different flows or ops, in "
                    f"module {first.module!r} and in module {other.module!r}; a worker "
                    f"applies a component's updates with one definition. Give one of them "
                    f"another name, or start a worker per module (-I {first.module} / "
                    f"-I {other.module})."
                )


def _distinct(found: list[Any]) -> list[Any]:
    """``found`` without definitions made obsolete by a newer one with the same
    fingerprint (a notebook cell re-run unchanged), so re-runs do not pile up."""
    seen: set[str] = set()
    kept: list[Any] = []
    for definition in reversed(found):
        fp = definition.fingerprint()
        if fp not in seen:
            seen.add(fp)
            kept.append(definition)
    kept.reverse()
    return kept
