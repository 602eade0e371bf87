"""The campaign's "new version" of its components: a ``note`` flow that the first
workers of a rolling deploy do not have (import after ``campaign_journal``)."""

from __future__ import annotations

from campaign_journal import Hooked, Journal

for _component in (Journal, Hooked):

    @_component.update("note")
    def note(state, props):
        return {"log": [*state["log"], [props.seq, props["item"]]]}
