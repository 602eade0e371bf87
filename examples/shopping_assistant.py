"""A self-updating shopping-assistant prompt: the main job (``bash examples/run.sh``).

The ``Assistant`` component keeps, per shopper, a summary of what they have been
looking for. Each question is answered from a prompt built on the last committed
summary: the serve op, inline, in milliseconds. The summary is then rewritten in
the background by the update op, which in a real deployment calls an LLM and takes
seconds. This program shows both at once: while a slow (simulated, ~2 s) summary
is being written, the next questions are still served at once, on the state
committed before it; once the update commits, the next prompt is served on the new
version.

Run it with no set-up at all: motion starts its own local Redis-protocol server
(data under ``./.motion``) and an in-process worker. Against a real Redis with a
worker, Flower and the dashboard, follow the README's "Run it on a real Redis".
Each run starts from a clean shopper (it clears ``Assistant__shopper-42`` first).
With ``OPENAI_API_KEY`` set (and optionally ``OPENAI_BASE_URL`` /
``MOTION_EXAMPLE_MODEL``) an LLM writes the summary; without, a deterministic local
summarizer does, after ``MOTION_EXAMPLE_LLM_SECONDS`` (default 2) seconds of
simulated LLM latency.

    python examples/shopping_assistant.py
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections import Counter

from motion import Component, clear_instance

Assistant = Component("Assistant", params={"max_topics": 5})

SHOPPER = "shopper-42"
STOPWORDS = set(
    "a an the for to of in on and or with my me i im i'm is are do does any some under "
    "over what which show find need want looking good best new cheap please you have your".split()
)


def llm_seconds() -> float:
    """The simulated LLM latency of the local summarizer (``MOTION_EXAMPLE_LLM_SECONDS``)."""
    return float(os.environ.get("MOTION_EXAMPLE_LLM_SECONDS", "2"))


def local_summary(previous: str, queries: list[str], max_topics: int) -> str:
    """A deterministic stand-in for an LLM: the user's most frequent interests."""
    words = [w for q in queries for w in re.findall(r"[a-z0-9\-]+", q.lower())]
    topics = Counter(w for w in words if w not in STOPWORDS and len(w) > 2)
    top = ", ".join(word for word, _ in topics.most_common(max_topics))
    return f"Interested in: {top}." if top else previous


def llm_summary(previous: str, queries: list[str]) -> str:
    """Ask an OpenAI-compatible chat API to rewrite the summary."""
    body = {
        "model": os.environ.get("MOTION_EXAMPLE_MODEL", "gpt-4o-mini"),
        "messages": [
            {"role": "system", "content": "Summarize a shopper's interests in one sentence."},
            {"role": "user", "content": f"Previous summary: {previous}\nQueries: {queries}"},
        ],
    }
    base = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
    request = urllib.request.Request(
        f"{base}/chat/completions",
        data=json.dumps(body).encode(),
        headers={
            "Authorization": f"Bearer {os.environ['OPENAI_API_KEY']}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(json.load(response)["choices"][0]["message"]["content"]).strip()


@Assistant.init_state
def setup() -> dict:
    return {"summary": "No history yet.", "queries": []}


@Assistant.serve("ask")
def build_prompt(state, props) -> str:
    """Inline and fast: the prompt for the answering LLM, from the committed summary."""
    return (
        "You are a shopping assistant.\n"
        f"What we know about this shopper: {state['summary']}\n"
        f"Question: {props['question']}"
    )


@Assistant.update("ask")
def refresh_summary(state, props) -> dict:
    """In the background, in order, once per question: rewrite the summary (slow)."""
    queries = [*state["queries"], props["question"]][-20:]
    if os.environ.get("OPENAI_API_KEY"):
        summary = llm_summary(state["summary"], queries)
    else:
        time.sleep(llm_seconds())  # what an LLM call costs; the serve op never waits for it
        summary = local_summary(state["summary"], queries, Assistant.params["max_topics"])
    return {"summary": summary, "queries": queries}


def ask(shopper, started: float, question: str) -> None:
    """Serve one question and print what it was served on."""
    begin = time.perf_counter()
    prompt = shopper.run("ask", props={"question": question})
    served_ms = (time.perf_counter() - begin) * 1000
    version = shopper.get_version()
    summary = prompt.splitlines()[1].removeprefix("What we know about this shopper: ")
    print(f"[{time.perf_counter() - started:4.1f} s] asked: {question}")
    print(f"         served in {served_ms:.1f} ms on version {version}; summary: {summary}")


def wait_for_version(shopper, version: int, timeout: float = 120) -> None:
    """Poll the committed version until it reaches ``version`` (what a user would do is
    nothing at all: the next request simply sees the newer state)."""
    deadline = time.monotonic() + timeout
    while shopper.get_version() < version:
        if time.monotonic() > deadline:
            raise TimeoutError(f"version {version} not committed within {timeout} s")
        time.sleep(0.05)


def main() -> None:
    clear_instance(f"Assistant__{SHOPPER}")  # start clean: the state persists across runs
    shopper = Assistant(SHOPPER)
    slow = "an LLM" if os.environ.get("OPENAI_API_KEY") else f"a simulated LLM, {llm_seconds():g} s"
    print(
        "Each question is served at once from the last committed state; its update (the\n"
        f"summary rewrite: {slow}) runs in the background. Version 1 is the fresh state;\n"
        "each committed update adds one.\n"
    )
    started = time.perf_counter()
    ask(shopper, started, "Do you have trail running shoes under $120?")
    print("         (the first call also created the instance) its update #1 now runs\n")
    ask(shopper, started, "Which trail shoes are waterproof?")
    ask(shopper, started, "Show me a running jacket for rain")
    print("         ^ served at once, still on version 1: update #1 is not committed yet\n")
    wait_for_version(shopper, 2)
    print(f"[{time.perf_counter() - started:4.1f} s] update #1 committed: version 2\n")
    ask(shopper, started, "Any lightweight rain jacket for trail running?")
    print("         ^ served on the new version; updates #2 to #4 run on, one at a time\n")
    shopper.flush_update(timeout=120)  # only so the demo can show the end state
    print(f"[{time.perf_counter() - started:4.1f} s] all 4 updates applied, in order")
    print("Final summary:", shopper.read_state("summary"))
    print(f"State version: {shopper.get_version()} (1 at creation + 4 updates)")
    print(
        "\nThe state lives in Redis (with no Redis configured: the local server's data in\n"
        f"./.motion) and survives the run; this program clears Assistant__{SHOPPER} when it\n"
        f"starts (by hand: motion clear Assistant__{SHOPPER})."
    )
    shopper.close()


if __name__ == "__main__":
    main()
