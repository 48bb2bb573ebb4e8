"""Redis URLs -> a redis-py asyncio client: standalone, Cluster or Sentinel.

    redis://[user:pass@]host:6379/0          standalone (also rediss:// and unix://)
    redis+cluster://[user:pass@]h1:7000,h2:7001    Redis Cluster: any reachable nodes to start from
    redis+sentinel://[user:pass@]h1:26379,h2:26379/mymaster[/db]   the master Sentinel names

`rediss+cluster://` and `rediss+sentinel://` use TLS. Credentials go to the data nodes (for
Sentinel, to the master; sentinels themselves are asked without a password).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from sidecar.errors import ConfigError

Mode = Literal["standalone", "cluster", "sentinel"]


@dataclass(frozen=True)
class RedisTarget:
    mode: Mode
    url: str
    nodes: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None
    tls: bool = False


def parse_redis_url(url: str) -> RedisTarget:
    """Read a cache URL, or raise ConfigError saying what is wrong with it."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ConfigError(
            f"cache.redis_url {url!r}: expected scheme://..., e.g. redis://host:6379/0"
        )
    base, _, mode = scheme.lower().partition("+")
    if base not in ("redis", "rediss", "unix") or mode not in ("", "cluster", "sentinel"):
        raise ConfigError(
            f"cache.redis_url {url!r}: unknown scheme {scheme!r}; use redis://, rediss://, "
            "unix://, redis+cluster:// or redis+sentinel://"
        )
    if not mode:
        return RedisTarget("standalone", url)
    if base == "unix":
        raise ConfigError(f"cache.redis_url {url!r}: cluster and sentinel need host:port nodes")
    netloc, _, path = rest.partition("/")
    path, _, _query = path.partition("?")
    username, password, hosts = _credentials(netloc)
    nodes = tuple(_node(h, url, 26379 if mode == "sentinel" else 6379) for h in hosts.split(","))
    parts = [p for p in path.split("/") if p]
    if mode == "cluster":
        if parts:
            raise ConfigError(f"cache.redis_url {url!r}: Redis Cluster has no database number")
        return RedisTarget("cluster", url, nodes, None, 0, username, password, base == "rediss")
    if not parts or len(parts) > 2:
        raise ConfigError(
            f"cache.redis_url {url!r}: name the master, e.g. redis+sentinel://h1:26379/mymaster/0"
        )
    db = _db(parts[1], url) if len(parts) == 2 else 0
    return RedisTarget(
        "sentinel", url, nodes, unquote(parts[0]), db, username, password, base == "rediss"
    )


def redacted(url: str) -> str:
    """The cache URL for messages: its password, if any, replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return url
    creds, _, hosts = netloc.rpartition("@")
    user, colon, _password = creds.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{hosts}{slash}{path}"


def _credentials(netloc: str) -> tuple[str | None, str | None, str]:
    if "@" not in netloc:
        return None, None, netloc
    creds, _, hosts = netloc.rpartition("@")
    user, _, password = creds.partition(":")
    return (unquote(user) or None), (unquote(password) or None), hosts


def _node(text: str, url: str, default_port: int) -> tuple[str, int]:
    if not text:
        raise ConfigError(f"cache.redis_url {url!r}: empty host in the node list")
    try:
        parsed = urlsplit(f"//{text}")
        host, port = parsed.hostname, parsed.port
    except ValueError as exc:
        raise ConfigError(f"cache.redis_url {url!r}: bad node {text!r}: {exc}") from exc
    if not host:
        raise ConfigError(f"cache.redis_url {url!r}: bad node {text!r}")
    return host, port or default_port


def _db(text: str, url: str) -> int:
    if not text.isdigit():
        raise ConfigError(f"cache.redis_url {url!r}: database must be a number, not {text!r}")
    return int(text)


def connect(target: RedisTarget, timeout_s: float) -> tuple[Any, list[Any]]:
    """An asyncio client for `target` (redis.asyncio.Redis or RedisCluster), and the helper
    clients to close with it (the sentinels' connections)."""
    common: dict[str, Any] = {
        "socket_timeout": timeout_s,
        "socket_connect_timeout": timeout_s,
    }
    if target.mode == "standalone":
        import redis.asyncio as aioredis

        client = aioredis.from_url(
            target.url, retry_on_timeout=False, health_check_interval=30, **common
        )
        return client, []
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.mode == "cluster":
        from redis.asyncio.cluster import ClusterNode, RedisCluster
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        cluster = RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in target.nodes],
            ssl=target.tls,
            # one retry at most: the breaker, not a retry loop, handles an outage
            retry=Retry(NoBackoff(), 1),
            **auth,
            **common,
        )
        return cluster, []
    from redis.asyncio.sentinel import Sentinel

    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=dict(common), ssl=target.tls, **common)
    assert target.master is not None
    return sentinel.master_for(target.master, db=target.db, **auth), list(sentinel.sentinels)


async def drop_idle_connections(client: Any) -> None:
    """Close the pooled connections `client` is not using right now, so the next commands open
    fresh ones: after an outage the old sockets are dead, and each would fail once.

    Standalone and Sentinel clients share one pool (for Sentinel, reconnecting also asks the
    sentinels for the master again). Connections in use are left alone: a command on a dead one
    fails and redis-py closes it, a command on a live one finishes. A cluster keeps a pool per
    node and closes only all of a node's connections at once, which is what is wanted here: the
    breaker lets no command through while it calls this. Errors closing dead sockets are ignored.
    """
    from redis.exceptions import RedisError

    try:
        pool = getattr(client, "connection_pool", None)
        if pool is not None:
            await pool.disconnect(inuse_connections=False)
        else:  # RedisCluster
            await asyncio.gather(*(node.disconnect() for node in client.get_nodes()))
    except (RedisError, OSError):
        pass
