"""The nemesis: runs a seeded fault schedule against a campaign :class:`World`.

Each fault of the schedule runs at its time; faults that last (a paused worker,
memory pressure, the old version of a rolling deploy) schedule their own end. The
nemesis records what it did, for the checker: the updates it enqueued itself
(each meant to be recorded failed), every ``clear_instance`` with its wall-clock
window and the state just before it (the cleared incarnation's log), and the count
of faults injected per kind.
"""

from __future__ import annotations

import heapq
import itertools
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

import kombu.exceptions
import redis

from motion.errors import MotionError
from motion.floor import celery_app, wakeup
from motion.floor import keys as K
from motion.tools.admin import clear_instance, inspect_state
from tests.campaign.schedule import Fault
from tests.campaign.world import LEASE_SECONDS, NEW, World

#: seconds a Redis restart waits after a worker resumed or Redis came back from a hang
SETTLE = 3.0


class Nemesis:
    """Injects the faults of one schedule (see the module docstring)."""

    def __init__(self, world: World, faults: list[Fault], kinds: tuple[str, ...] = ()) -> None:
        self.world, self.faults = world, faults
        self._overlap = "pause_restart" in kinds  # may Redis restart under a paused worker?
        self.injected: Counter[str] = Counter()
        self.history: list[dict[str, Any]] = []
        self.clears: dict[str, list[tuple[float, float]]] = defaultdict(list)
        self.snapshots: dict[str, list[list[Any]]] = defaultdict(list)
        self.notes: list[str] = []
        self._timeline: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._paused: dict[int, float] = {}  # paused worker -> when it resumes
        self._settled = 0.0  # when a worker last resumed or Redis came back from a hang
        self._n = 0

    def run(self) -> None:
        """Run every fault and every fault's end; returns when the last one is done."""
        start = time.monotonic()
        for fault in self.faults:
            self._at(start + fault.at, lambda f=fault: self._inject(f))
        while self._timeline:
            when, _, action = self._timeline[0]
            if time.monotonic() < when:
                self.world.supervise()
                time.sleep(min(0.05, max(when - time.monotonic(), 0)))
                continue
            heapq.heappop(self._timeline)
            action()

    def _at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._timeline, (when, next(self._order), action))

    def _inject(self, fault: Fault) -> None:
        if fault.kind in ("redis_restart", "redis_crash") and not self._overlap:
            # a worker paused, or just resumed, or Redis just back from a hang: its Celery
            # consumer may not survive a restart now (the pause_restart kind's defect)
            calm = max([*self._paused.values(), self._settled + SETTLE])
            if calm > time.monotonic():
                self._at(calm, lambda: self._inject(fault))
                return
        try:
            done = getattr(self, f"_{fault.kind}")(**fault.params)
        except (redis.RedisError, MotionError, kombu.exceptions.OperationalError) as exc:
            # e.g. a duplicate wake-up cannot be sent while Redis is at maxmemory
            done = False
            self.notes.append(f"{fault.line()}: not injected ({type(exc).__name__}: {exc})")
        if done is not False:
            self.injected[fault.kind] += 1

    # -- workers ----------------------------------------------------------------
    def _worker_kill(self, worker: int, child: bool) -> bool:
        live = self.world.live()
        if not live:
            return False
        victim = live[worker % len(live)]
        children = victim.children() if child else []
        if children:
            os.kill(children[worker % len(children)], signal.SIGKILL)
        else:
            victim.kill(signal.SIGKILL)  # the supervisor starts another
        return True

    def _worker_pause(self, worker: int, beyond_lease: float) -> bool:
        live = [w for w in self.world.live() if id(w) not in self._paused]
        if not live:
            return False
        victim = live[worker % len(live)]
        victim.kill(signal.SIGSTOP)
        until = time.monotonic() + LEASE_SECONDS + beyond_lease
        self._paused[id(victim)] = until

        def resume() -> None:
            self._paused.pop(id(victim), None)
            victim.kill(signal.SIGCONT)
            self._settled = time.monotonic()

        self._at(until, resume)
        return True

    def _pause_restart(self, worker: int, beyond_lease: float) -> bool:
        """Every worker paused across a Redis restart (a frozen host, say)."""
        paused = [
            self._worker_pause(worker + k, beyond_lease) for k in range(len(self.world.workers))
        ]
        if not any(paused):
            return False
        self.world.server.restart()
        return True

    # -- Redis ------------------------------------------------------------------
    def _redis_restart(self) -> None:
        self.world.server.restart()

    def _redis_hang(self, seconds: float) -> None:
        proc = self.world.server.proc
        assert proc is not None
        proc.send_signal(signal.SIGSTOP)
        until = time.monotonic() + seconds
        try:
            while time.monotonic() < until:  # nothing else may touch Redis meanwhile
                self.world.supervise()
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGCONT)
            self._settled = time.monotonic()

    def _redis_crash(self) -> None:
        server = self.world.server
        assert server.proc is not None
        server.proc.kill()
        server.proc.wait(10)
        server.proc = None
        server.start()

    def _memory(self, seconds: float, headroom_kb: int) -> None:
        client = self.world.client()
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", used + headroom_kb * 1024)
        self._at(time.monotonic() + seconds, lambda: self._unpressure())

    def _unpressure(self) -> None:
        try:
            self.world.client().config_set("maxmemory", 0)
        except redis.RedisError as exc:
            self.notes.append(f"maxmemory not reset: {exc}")

    # -- wake-ups -----------------------------------------------------------------
    def _dup_wakeup(self, instance: int, count: int) -> None:
        client = self.world.client()
        names = self.world.names
        for k in range(count * 3):
            name = names[(instance + k) % len(names)]
            seq = int(client.hget(K.InstanceKeys.of(name).meta, "seq") or 0)
            component, instance_id = K.split_instance_name(name)
            for _ in range(2):
                celery_app.send_wakeup(component, instance_id, "add", max(seq, 1))

    def _lost_wakeup(self) -> None:
        queues = [q for c in ("Journal", "HookedJournal") for q in wakeup.queues_of(c)]
        pipe = self.world.client().pipeline(transaction=True)
        for queue in queues:
            pipe.llen(queue)
        pipe.delete(*queues)
        purged = sum(pipe.execute()[: len(queues)])
        self.notes.append(f"purged {purged} wake-ups")

    # -- updates the nemesis enqueues itself ----------------------------------------
    def _enqueue(self, name: str, flow: str, props: dict[str, Any]) -> None:
        from campaign_journal import Hooked, Journal

        component, instance_id = K.split_instance_name(name)
        handle = {"Journal": Journal, "HookedJournal": Hooked}[component](instance_id)
        record: dict[str, Any] = {"name": name, "item": props["item"], "flow": flow}
        record.update(expect="fail", t0=time.time())
        try:
            handle.run(flow, props)
            record["outcome"] = "ok"
        except Exception as exc:
            record.update(outcome=type(exc).__name__, motion_error=isinstance(exc, MotionError))
            record["message"] = str(exc)[:300]
        record["t1"] = time.time()
        self.history.append(record)

    def _item(self) -> str:
        self._n += 1
        return f"n:{self._n}"

    def _failing_op(self, instance: int, count: int) -> None:
        name = self.world.names[instance % len(self.world.names)]
        for _ in range(count):
            self._enqueue(name, "add", {"item": self._item(), "fail": True})

    def _raising_hook(self, instance: int, count: int) -> None:
        hooked = [n for n in self.world.names if n.startswith("HookedJournal__")]
        name = hooked[instance % len(hooked)]
        for _ in range(count):
            self._enqueue(name, "poison", {"item": self._item()})

    # -- flow control: debounce, pause, timers ------------------------------------------
    def _journal(self, instance: int) -> str:
        journals = [n for n in self.world.names if n.startswith("Journal__")]
        return journals[instance % len(journals)]

    def _applying(self, name: str, flow: str, prefix: str, send: Callable[[Any], None]) -> None:
        """Enqueue one update meant to apply, recording it as the producers do."""
        from campaign_journal import Journal

        self._n += 1
        item = f"{prefix}:{self._n}"
        record: dict[str, Any] = {"name": name, "item": item, "flow": flow}
        record.update(expect="apply", t0=time.time())
        try:
            send((Journal(K.split_instance_name(name)[1]), item))
            record["outcome"] = "ok"
        except Exception as exc:
            record.update(outcome=type(exc).__name__, motion_error=isinstance(exc, MotionError))
            record["message"] = str(exc)[:300]
        record["t1"] = time.time()
        self.history.append(record)

    def _debounce(self, instance: int, count: int) -> None:
        name = self._journal(instance)
        for _ in range(count):
            self._applying(name, "burst", "deb", lambda hi: hi[0].run("burst", {"item": hi[1]}))

    def _pause(self, instance: int, count: int, seconds: float) -> None:
        from campaign_journal import Journal

        name = self._journal(instance)
        Journal(K.split_instance_name(name)[1]).pause("held")
        for _ in range(count):
            self._applying(name, "held", "held", lambda hi: hi[0].run("held", {"item": hi[1]}))
        self._at(time.monotonic() + seconds, lambda: self._resume(name))

    def _resume(self, name: str) -> None:
        from campaign_journal import Journal

        try:
            Journal(K.split_instance_name(name)[1]).resume("held")
        except MotionError:  # Redis away (restart, hang, memory): try again soon
            self._at(time.monotonic() + 0.5, lambda: self._resume(name))

    def _timers(self, instance: int, count: int, delay_ms: int) -> None:
        name = self._journal(instance)
        for _ in range(count):
            self._applying(name, "later", "due", lambda hi: _enqueue_due(hi[0], hi[1], delay_ms))

    # -- instances and versions -------------------------------------------------------
    def _recreate(self, instance: int, count: int) -> None:
        name = self.world.names[instance % len(self.world.names)]
        try:
            log = list(inspect_state(name).get("log", []))
        except (KeyError, MotionError):  # cleared and not yet re-created
            log = []
        began = time.time()
        clear_instance(name)
        self.clears[name].append((began, time.time()))
        self.snapshots[name].append(log)

    def _deploy(self, old_for: float) -> None:
        (self.world.control / "v2").write_text("v2")  # callers run the new flow from now on
        import campaign_journal_v2  # noqa: F401  (this process's handles know it too)

        self._at(time.monotonic() + old_for, self._roll)

    def _roll(self) -> None:
        """The new version's workers: one started, then each old one stopped and replaced."""
        world = self.world
        world.modules = NEW
        old = [w for w in world.workers if w.proc is not None]
        world.add_worker(wait=False)
        for k, worker in enumerate(old):
            self._at(time.monotonic() + 1.0 + k, lambda w=worker: _retire(w))


def _retire(worker: Any) -> None:
    """Warm shutdown (SIGTERM); the supervisor starts a new-version worker in its place."""
    if worker.proc is not None and worker.proc.poll() is None:
        worker.proc.send_signal(signal.SIGCONT)
        worker.proc.terminate()


def _enqueue_due(handle: Any, item: str, delay_ms: int) -> None:
    """Enqueue ``later`` with a due time ``delay_ms`` ahead (Redis' clock), written as
    the submit path writes it (``flow ETX due ...``: the enqueue script then stamps no
    enqueue time)."""
    from motion.caller.enqueue import send_wakeup_sync, wakeup_to_push
    from motion.floor import scripts
    from motion.floor.connection import get_redis
    from motion.floor.errors import InstanceNotFoundError
    from motion.floor.inbox import Update, encode, enqueue_call, new_token

    name = handle.instance_name
    component, instance_id = K.split_instance_name(name)
    client = get_redis(name)
    seconds, micros = client.time()
    due = int(seconds) * 1000 + int(micros) // 1000 + delay_ms
    entry = encode(handle.component, name, Update("later", {"item": item}))
    timed = b"later\x03%d" % due + entry[len(b"later") :]
    push = wakeup_to_push(component, instance_id, "later")
    keys, args = enqueue_call(K.InstanceKeys.of(name), timed, "later", push, token=new_token())
    reply = scripts.run(client, "enqueue", keys, args)
    if int(reply[0]) <= 0:
        raise InstanceNotFoundError(f"{name} was cleared meanwhile")
    if reply[1] == 1:
        send_wakeup_sync(component, instance_id, "later", int(reply[0]))
