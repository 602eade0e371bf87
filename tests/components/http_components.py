"""Components for the HTTP and dashboard tests (imported by worker subprocesses too).

``Drafts`` is a second component beside ``Notes`` (so a test can check a token for
one does not open the other); its ``boom`` serve op fails with a message holding
what must never reach an HTTP client.
"""

from __future__ import annotations

from motion import Component

Drafts = Component("Drafts", cache_ttl=0)

SECRET_TEXT = "db-password-hunter2 at 10.9.8.7:5432"


@Drafts.init_state
def setup() -> dict:
    return {"title": "untitled", "words": 0, "ratio": 0.5, "done": False, "tags": [], "meta": {}}


@Drafts.serve("peek")
def peek(state, props):
    return {"title": state["title"], "words": state["words"]}


@Drafts.serve("boom")
def boom(state, props):
    raise RuntimeError(f"cannot reach {SECRET_TEXT}")


@Drafts.update("grow")
def grow(state, props):
    return {"words": state["words"] + int(props.get("by", 1))}
