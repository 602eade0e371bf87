"""Components for the history and replay tests.

``Journal`` (history=3, retain_updates=4): flow ``note`` appends ``props['text']`` to
``notes`` and sets ``last``; flow ``tag`` sets ``tag``; flow ``summarize`` makes
``summary`` from the notes with the production prompt; serve ``ask`` shows the prompt.
``Plain`` keeps the default history and ``Off`` none.
"""

from __future__ import annotations

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
def summarize(state, props):
    return {"summary": "PROD: " + " / ".join(state["notes"])}


@Journal.serve("ask")
def ask(state, props):
    return f"summary={state['summary']} q={props['q']}"


Plain = Component("Plain")


@Plain.init_state
def plain_setup() -> dict:
    return {"n": 0}


@Plain.update("add")
def plain_add(state, props):
    return {"n": state["n"] + props["n"]}


Off = Component("Off", history=0)


@Off.init_state
def off_setup() -> dict:
    return {"n": 0}


@Off.update("add")
def off_add(state, props):
    return {"n": state["n"] + props["n"]}


Saved = Component("Saved")  # save_state/load_state hooks: the whole state is one field


@Saved.init_state
def saved_setup() -> dict:
    return {"words": []}


@Saved.save_state
def save(state):
    return "|".join(state["words"])


@Saved.load_state
def load(saved):
    return {"words": saved.split("|") if saved else []}


@Saved.update("word")
def word(state, props):
    return {"words": [*state["words"], props["w"]]}
