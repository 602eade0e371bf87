"""Backlog, lag and per-flow counters of a motion deployment, for Prometheus and autoscalers.

:func:`collect` reads a :class:`Snapshot` from Redis alone (no component code, no
Celery): how many instances and updates wait, how long the longest has waited,
and the counters the commit script keeps per component and flow. The cost of a
read is bounded: only the ``sample`` oldest pending instances are looked at, and
the pending-update count is scaled up from them when more are pending.

Run the exporter beside Flower (which exports Celery's own task metrics)::

    python -m motion.tools.metrics --port 9808      # GET /metrics  (Prometheus text)
                                              # GET /backlog  (JSON, for KEDA's metrics-api)

Exported series (``outcome`` is ``applied``, ``failed`` or ``discarded``):

=====================================  =====================================================
``motion_up``                          1 when Redis answered this scrape, else 0
``motion_pending_instances``           instances with updates not yet applied
``motion_pending_updates``             updates not yet applied (scaled from the sample)
``motion_pending_sampled_instances``   how many pending instances this scrape read
``motion_oldest_pending_seconds``      how long the longest-pending instance has waited
``motion_update_lag_seconds``          longest time a sampled pending instance went
                                       without a commit while pending
``motion_updates_total``               updates by ``component``, ``flow``, ``outcome``
``motion_op_calls_total``              update-op calls by ``component``, ``flow``
``motion_lease_takeovers_total``       leases taken over from a dead holder, by component
``motion_redis_used_memory_bytes``     Redis ``used_memory`` (``maxmemory`` beside it), on a
                                       cluster summed over the primaries
``motion_redis_node_used_memory_bytes`` the same per primary, by ``node`` (``host:port``;
                                       ``..._node_maxmemory_bytes`` beside it): the
                                       first primary to fill refuses its slots' enqueues
=====================================  =====================================================

Tool; uses the floor (connection, errors, indexes, keys, settings, urls).
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from motion.floor import directory, indexes
from motion.floor import keys as K
from motion.floor.connection import is_cluster, new_client
from motion.floor.errors import ConfigurationError, install_hint
from motion.floor.settings import get_settings, redact
from motion.floor.urls import is_cluster_url
from motion.floor.wakeup import shown_flow

DEFAULT_PORT = 9808
DEFAULT_SAMPLE = 1000
_OUTCOMES = ("applied", "failed", "discarded")


@dataclass
class ComponentStats:
    """Counters of one component: ``flows[flow][kind]`` (kind: applied/failed/discarded/calls)."""

    flows: dict[str, dict[str, int]] = field(default_factory=dict)
    takeovers: int = 0


@dataclass
class Snapshot:
    """What :func:`collect` read; times in seconds."""

    taken_at: float
    pending_instances: int
    pending_updates: int
    sampled_instances: int
    oldest_pending_seconds: float
    update_lag_seconds: float
    used_memory_bytes: int = 0
    maxmemory_bytes: int = 0
    #: per primary (``host:port``): ``[used_memory, maxmemory]`` (one entry on one Redis)
    memory_by_node: dict[str, list[int]] = field(default_factory=dict)
    components: dict[str, ComponentStats] = field(default_factory=dict)

    def backlog(self) -> dict[str, Any]:
        """The backlog figures as a flat JSON-friendly dict (what ``/backlog`` serves)."""
        out = asdict(self)
        out.pop("components")
        return out


def collect(client: redis.Redis, sample: int = DEFAULT_SAMPLE) -> Snapshot:
    """Read a :class:`Snapshot`: O(``sample`` + components) Redis work, never O(instances).

    Stateless: every figure comes from Redis (the pending index is scored by when
    each instance became pending), so exporters can restart or run several at once.
    """
    clock = client.time()  # Redis' clock: the pending index is scored by it
    listed = directory.parts(client, K.SWEEP, K.PENDING)  # a cluster: the non-empty parts
    total = indexes.zcard(client, K.PENDING, listed)
    oldest = indexes.oldest(client, K.PENDING, max(sample, 1), listed)
    names = directory.components(client)  # a cluster: the parts listed
    now = int(clock[0]) + int(clock[1]) / 1e6
    snap = Snapshot(now, int(total), 0, 0, 0.0, 0.0)
    snap.memory_by_node = _memory(client)
    snap.used_memory_bytes = sum(used for used, _ in snap.memory_by_node.values())
    snap.maxmemory_bytes = sum(limit for _, limit in snap.memory_by_node.values())
    if oldest:
        snap.oldest_pending_seconds = max(0.0, now - oldest[0][1] / 1000)
        _backlog(client, snap, [(n.decode(), score / 1000) for n, score in oldest], now)
    components = sorted(n.decode() for n in names)
    for component in components:
        snap.components[component] = _parse_stats(directory.counters(client, component))
    return snap


def _memory(client: redis.Redis) -> dict[str, list[int]]:
    """Per primary (``host:port``; the one server of a plain client): ``used_memory``
    and ``maxmemory``; nothing when an ACL forbids ``INFO``."""
    if is_cluster(client):
        nodes: Any = client.get_primaries()  # type: ignore[attr-defined]
        servers = [(node.name, client.get_redis_connection(node)) for node in nodes]  # type: ignore[attr-defined]
    else:
        kwargs = client.connection_pool.connection_kwargs
        where = kwargs.get("path") or f"{kwargs.get('host', '')}:{kwargs.get('port', '')}"
        servers = [(str(where), client)]
    out: dict[str, list[int]] = {}
    for name, server in sorted(servers, key=lambda pair: pair[0]):
        try:
            memory = server.info("memory")
        except redis.ResponseError:  # NOPERM: INFO is in @dangerous, which ACL users often lack
            continue
        out[name] = [int(memory.get("used_memory", 0)), int(memory.get("maxmemory", 0))]
    return out


def _backlog(
    client: redis.Redis, snap: Snapshot, oldest: list[tuple[str, float]], now: float
) -> None:
    with client.pipeline(transaction=False) as pipe:
        for name, _ in oldest:
            pipe.hmget(K.InstanceKeys.of(name).meta, "seq", "applied", "applied_at")
        metas = pipe.execute()
    backlog = 0
    lag = 0.0
    for (_, since), (seq, applied, applied_at) in zip(oldest, metas, strict=True):
        if seq is None:
            continue  # cleared while pending: the sweeper drops it
        waiting = int(seq) - int(applied or 0)
        if waiting <= 0:
            continue  # drained since the index was read
        backlog += waiting
        progress = int(applied_at) / 1000 if applied_at else 0.0
        lag = max(lag, now - max(since, progress))
    snap.sampled_instances = len(oldest)
    if snap.pending_instances > len(oldest) and oldest:
        backlog = round(backlog * snap.pending_instances / len(oldest))
    snap.pending_updates = backlog
    snap.update_lag_seconds = lag


def _parse_stats(raw: dict[bytes, bytes]) -> ComponentStats:
    stats = ComponentStats()
    for name, value in raw.items():
        kind, sep, flow = name.decode().partition(":")
        if kind == "takeovers":
            stats.takeovers = int(value)
        elif sep and kind in (*_OUTCOMES, "calls"):
            stats.flows.setdefault(flow, {})[kind] = int(value)
    return stats


class Collector:
    """A Prometheus collector that reads a fresh :class:`Snapshot` on every scrape."""

    def __init__(self, client: redis.Redis, sample: int = DEFAULT_SAMPLE) -> None:
        self._client = client
        self._sample = sample

    def collect(self) -> Iterator[Any]:
        """Yield the metric families (prometheus_client's collector protocol)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        started = time.perf_counter()
        try:
            snap = collect(self._client, self._sample)
        except redis.RedisError:
            yield GaugeMetricFamily("motion_up", "1 when Redis answered this scrape", value=0)
            return
        yield GaugeMetricFamily("motion_up", "1 when Redis answered this scrape", value=1)
        gauges = [
            ("pending_instances", "Instances with updates not yet applied"),
            ("pending_updates", "Updates not yet applied (scaled up from the sample)"),
            ("sampled_instances", "Pending instances read by this scrape"),
            ("oldest_pending_seconds", "How long the longest-pending instance has waited"),
            ("update_lag_seconds", "Longest time a pending instance went without a commit"),
            ("used_memory_bytes", "Redis used_memory"),
            ("maxmemory_bytes", "Redis maxmemory (0: no limit)"),
        ]
        for attr, doc in gauges:
            name = attr.replace("sampled_", "pending_sampled_")
            if attr.endswith("memory_bytes"):
                name = f"redis_{attr}"
            yield GaugeMetricFamily(f"motion_{name}", doc, value=getattr(snap, attr))
        updates = CounterMetricFamily(
            "motion_updates", "Updates by outcome", labels=["component", "flow", "outcome"]
        )
        calls = CounterMetricFamily(
            "motion_op_calls",
            "Update-op calls (a batch op counts once)",
            labels=["component", "flow"],
        )
        takeovers = CounterMetricFamily(
            "motion_lease_takeovers", "Leases taken over from a dead holder", labels=["component"]
        )
        for component, stats in snap.components.items():
            takeovers.add_metric([component], stats.takeovers)
            for flow, counts in stats.flows.items():
                label = shown_flow(flow)
                for outcome in _OUTCOMES:
                    updates.add_metric([component, label, outcome], counts.get(outcome, 0))
                calls.add_metric([component, label], counts.get("calls", 0))
        yield updates
        yield calls
        yield takeovers
        yield from _node_memory(snap)
        yield GaugeMetricFamily(
            "motion_scrape_duration_seconds",
            "Time this scrape spent reading Redis",
            value=time.perf_counter() - started,
        )


def _node_memory(snap: Snapshot) -> Iterator[Any]:
    """The per-primary memory gauges (``node`` label)."""
    from prometheus_client.core import GaugeMetricFamily

    for at, attr, doc in ((0, "used_memory", "used_memory"), (1, "maxmemory", "maxmemory")):
        family = GaugeMetricFamily(
            f"motion_redis_node_{attr}_bytes", f"Redis {doc} of each primary", labels=["node"]
        )
        for node, figures in snap.memory_by_node.items():
            family.add_metric([node], figures[at])
        yield family


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would flood stderr."""


def make_app(client: redis.Redis, sample: int = DEFAULT_SAMPLE) -> Any:
    """The WSGI app: ``/metrics`` (Prometheus), ``/backlog`` (JSON), ``/healthz``."""
    try:
        from prometheus_client import CollectorRegistry, make_wsgi_app
    except ImportError as exc:
        raise ConfigurationError(
            f"the metrics endpoint needs prometheus-client: {install_hint('metrics')}"
        ) from exc
    registry = CollectorRegistry(auto_describe=False)
    collector = Collector(client, sample)
    registry.register(collector)
    prometheus = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path in ("/backlog", "/healthz"):
            try:
                snap = collect(client, sample)
            except redis.RedisError as exc:
                body = json.dumps({"up": 0, "error": type(exc).__name__}).encode()
                start_response("503 Service Unavailable", [("Content-Type", "application/json")])
                return [body]
            out = {"up": 1, **snap.backlog()} if path == "/backlog" else {"up": 1}
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(out).encode()]
        result: list[bytes] = prometheus(environ, start_response)
        return result

    return app


def serve(
    port: int = DEFAULT_PORT,
    address: str = "0.0.0.0",
    url: str | None = None,
    sample: int = DEFAULT_SAMPLE,
) -> WSGIServer:
    """Start the exporter on a daemon thread; returns the server (``shutdown()`` stops it)."""
    url = url or get_settings().redis_url
    if not url:
        raise ConfigurationError(
            "the metrics endpoint needs the workers' Redis: set MOTION_REDIS_URL or pass --url."
        )
    # one quick retry: a scrape should answer motion_up 0 fast, not hang on a dead Redis
    retry = Retry(ExponentialBackoff(cap=0.2, base=0.05), 1)
    if is_cluster_url(url):  # a cluster client: the primaries and their slots
        client = new_client(url, 10)
    else:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10, retry=retry)
    server = make_server(address, port, make_app(client, sample), _Server, _QuietHandler)
    threading.Thread(target=server.serve_forever, name="motion-metrics", daemon=True).start()
    return server


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m motion.tools.metrics [--port N] [--address A] [--url URL] [--sample N]``."""
    parser = argparse.ArgumentParser(
        prog="python -m motion.tools.metrics", description="Serve motion's metrics for Prometheus."
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="listen port (9808)")
    parser.add_argument("--address", default="0.0.0.0", help="listen address (0.0.0.0)")
    parser.add_argument("--url", default=None, help="Redis URL (default MOTION_REDIS_URL)")
    parser.add_argument(
        "--sample", type=int, default=DEFAULT_SAMPLE, help="pending instances read per scrape"
    )
    args = parser.parse_args(argv)
    server = serve(args.port, args.address, args.url, args.sample)
    where = redact(args.url or get_settings().redis_url or "")
    print(
        f"motion metrics on http://{args.address}:{args.port}/metrics (Redis {where})", flush=True
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
