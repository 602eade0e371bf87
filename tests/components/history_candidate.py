"""A candidate ``Journal`` for the replay tests: the same name and flows as
:mod:`history_notes`' production one, with another summary prompt (``CAND:``, newest
note first). It imports the production module, so ``motion replay`` finds the
baseline without ``--baseline``."""

from __future__ import annotations

import history_notes  # noqa: F401  (the production definition, the default baseline)

from motion import Component

Journal = Component("Journal", history=3, retain_updates=4)


@Journal.init_state
def setup() -> dict:
    return {"notes": [], "summary": ""}


@Journal.update("note")
def note(state, props):
    return {"notes": [*state["notes"], props["text"]], "last": props["text"]}


@Journal.update("tag")
def tag(state, props):
    return {"tag": props["tag"]}


@Journal.update("summarize")
def summarize_newest_first(state, props):
    return {"summary": "CAND: " + " / ".join(reversed(state["notes"]))}


@Journal.serve("ask")
def ask(state, props):
    return f"summary={state['summary']} q={props['q']}"
