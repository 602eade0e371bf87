"""A self-updating shopping-assistant prompt.

The ``Assistant`` component keeps, per user, a running summary of what they have
been looking for. Each question is answered from a prompt built on the last
committed summary (the serve op, inline and fast); the summary is then rewritten
in the background on a worker (the update op: in a real deployment an LLM call
that takes seconds). The next question already sees the new summary.

Run it with no set-up at all: motion starts its own local Redis-protocol server
and an in-process worker. With ``OPENAI_API_KEY`` set (and optionally
``OPENAI_BASE_URL`` / ``MOTION_EXAMPLE_MODEL``), the summary is written by an LLM;
without, by a deterministic local summarizer.

    python examples/shopping_assistant.py
"""

from __future__ import annotations

import json
import os
import re
import time
import urllib.request
from collections import Counter

from motion import Component

Assistant = Component("Assistant", params={"max_topics": 5})

STOPWORDS = set(
    "a an the for to of in on and or with my me i im i'm is are do does any some under "
    "over what which show find need want looking good best new cheap please you have your".split()
)


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
    """In the background, in order, once per question: rewrite the summary."""
    queries = [*state["queries"], props["question"]][-20:]
    if os.environ.get("OPENAI_API_KEY"):
        summary = llm_summary(state["summary"], queries)
    else:
        summary = local_summary(state["summary"], queries, Assistant.params["max_topics"])
    return {"summary": summary, "queries": queries}


def main() -> None:
    shopper = Assistant("shopper-42")
    questions = [
        "Do you have trail running shoes under $120?",
        "Which trail shoes are waterproof?",
        "Show me a running jacket for rain",
        "Any lightweight rain jacket for trail running?",
    ]
    for question in questions:
        started = time.perf_counter()
        prompt = shopper.run("ask", props={"question": question})
        served_ms = (time.perf_counter() - started) * 1000
        print(f"--- prompt (served in {served_ms:.1f} ms) ---\n{prompt}\n")
        shopper.flush_update(timeout=120)  # only so the demo shows each summary in turn
    print("Final summary:", shopper.read_state("summary"))
    print("State version:", shopper.get_version())


if __name__ == "__main__":
    main()
