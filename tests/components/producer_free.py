"""A module defining no Ledger: a worker started with it lacks Ledger's code."""

from motion import Component

Other = Component("Other")


@Other.init_state
def setup() -> dict[str, list[int]]:
    return {"seen": []}


@Other.update("note")
def note(state: dict[str, list[int]], props: dict[str, int]) -> dict[str, list[int]]:
    return {"seen": [*state["seen"], props["n"]]}
