"""Redis URLs: checking them, redacting their passwords, and Redis Cluster URLs.

A state URL is ``redis://``, ``rediss://`` or ``unix://``, or, for a Redis Cluster,
``redis+cluster://host:port[,host:port...][/0][?options]`` (``rediss+cluster://`` with
TLS): the nodes are where a client starts; it learns the rest from the cluster.

Floor; uses the floor (errors).
"""

from __future__ import annotations

from functools import cache
from urllib.parse import urlsplit

from motion.floor.errors import ConfigurationError

#: schemes of a Redis Cluster URL (``redis+cluster://host:port[,host:port...]``)
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")


def is_cluster_url(url: str | None) -> bool:
    """Whether ``url`` names a Redis Cluster."""
    return bool(url) and str(url).startswith(CLUSTER_SCHEMES)


def cluster_nodes(url: str, name: str = "MOTION_REDIS_URL") -> list[tuple[str, int]]:
    """The ``(host, port)`` start-up nodes of a cluster URL (the port defaults to 6379)."""
    rest = url.partition("://")[2]
    hosts = rest.rpartition("@")[2].partition("/")[0].partition("?")[0]
    nodes = []
    for item in hosts.split(","):
        host, _, port = item.strip().rpartition(":") if ":" in item else (item.strip(), "", "")
        if not host or (port and not port.isdigit()):
            raise ConfigurationError(
                f"{name}={redact(url)!r}: list the cluster's nodes as host:port separated by "
                f"commas, as in redis+cluster://10.0.0.1:6379,10.0.0.2:6379."
            )
        nodes.append((host.strip("[]"), int(port or 6379)))
    return nodes


def single_node_url(url: str) -> str:
    """The ``redis://`` URL of a cluster URL's first node, with its credentials and
    options (what redis-py's option parser and the messages read)."""
    scheme, _, rest = url.partition("://")
    creds, at, hosts = rest.rpartition("@")
    first, _, tail = hosts.partition(",")
    tail = tail[len(tail.partition("/")[0].partition("?")[0]) :] if tail else ""
    plain = "rediss" if scheme.startswith("rediss") else "redis"
    return f"{plain}://{creds}{at}{first}{tail}"


def check_url(url: str, name: str, broker: bool = False) -> str:
    """``url`` if it is a usable Redis URL; else :class:`ConfigurationError` naming ``name``.

    Messages show the URL with its password redacted. A ``broker`` URL may carry
    options of Celery's transport too, so only the values redis-py reads are checked.
    """
    if is_cluster_url(url) and not broker:
        cluster_nodes(url, name)
        check_url(single_node_url(url), name)
        return url
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            f"{name} must start with redis://, rediss://, unix:// or, for a Redis Cluster, "
            f"redis+cluster:// (got {redact(url)!r})."
        )
    creds = url.partition("://")[2].rpartition("@")[0]
    if any(c in creds for c in "?#/@"):
        raise ConfigurationError(
            f"{name}={redact(url)!r}: the user or password holds a character that a URL "
            f"reserves (?, #, / or @); percent-encode it (? as %3F, # as %23, / as %2F, "
            f"@ as %40), as in redis://:pa%3Fss@host:6379/0."
        )
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigurationError(
            f"{name}={redact(url)!r}: the port must be a number, as in redis://host:6379/0."
        ) from None
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigurationError(
            f"{name}={redact(url)!r}: the database after the host must be a number, as in "
            f"redis://host:6379/0."
        )
    _check_options(url, name, broker)
    return url


def _check_options(url: str, name: str, broker: bool) -> None:
    """Check the URL's ``?option=value`` pairs as redis-py will read them."""
    from redis.connection import parse_url  # the floor stays light to import

    try:
        options = parse_url(url)  # type: ignore[no-untyped-call]  # untyped in redis-py
    except ValueError as exc:  # "Invalid value for 'socket_timeout' in connection URL."
        raise ConfigurationError(
            f"{name}={redact(url)!r}: {exc} Give it a number of seconds (or a count), as "
            f"in ?socket_timeout=5."
        ) from None
    unknown = sorted(set(options) - _url_options())
    if unknown and not broker:
        raise ConfigurationError(
            f"{name}={redact(url)!r}: unknown URL option(s) {', '.join(unknown)}; redis-py "
            f"knows e.g. socket_timeout, socket_connect_timeout, health_check_interval, "
            f"protocol, ssl_cert_reqs."
        )


@cache
def _url_options() -> frozenset[str]:
    import inspect

    import redis.connection as rc

    names = set(rc.URL_QUERY_ARGUMENT_PARSERS) | {"host", "port", "path", "connection_class"}
    for cls in (rc.AbstractConnection, rc.Connection, rc.SSLConnection):
        names.update(inspect.signature(cls.__init__).parameters)
    names.update(inspect.signature(rc.UnixDomainSocketConnection.__init__).parameters)
    names.update(inspect.signature(rc.ConnectionPool.__init__).parameters)
    return frozenset(names - {"self", "kwargs", "connection_kwargs"})


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs).

    The credentials end at the *last* ``@``, so a password holding ``?``, ``#`` or
    ``/`` (not percent-encoded) is hidden whole.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    creds, at, rest = rest.rpartition("@")
    rest, qsep, query = rest.partition("?")
    if qsep:  # redis-py also takes ?password=...
        query = "&".join(
            f"{k}=***" if k.lower() == "password" else f"{k}={v}" if e else k
            for k, e, v in (pair.partition("=") for pair in query.split("&"))
        )
    if at:
        user = creds.split(":", 1)[0] if ":" in creds else ""
        rest = f"{user}:***@{rest}" if ":" in creds else f"***@{rest}"
    return f"{scheme}://{rest}" + (f"?{query}" if qsep else "")
