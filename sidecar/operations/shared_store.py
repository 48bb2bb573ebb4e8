"""The shared store an operator command fills ahead of traffic (Redis: the pair scores `warm`
writes, the document embeddings `index --embed` writes), checked before the work starts.

A serving sidecar treats the cache as best effort: Redis down means scoring without it, never a
failed request. A command whose whole point is to fill the store must not: it asks the store for
one key first (a read: nothing written, nothing left behind under the prefix) and fails naming
the store and the reason, instead of working for minutes and reporting work nothing kept. Writes
the store refuses later (a read-only replica, memory full, an outage during the run) are the
work's own to count: `index --embed` fails on any, `warm` counts each query not stored as an
error.
"""

from __future__ import annotations

from sidecar.cache.base import CacheUnavailable, HoldsBytes, ScoreCache
from sidecar.cache.connect import redacted
from sidecar.config import Settings


class StoreUnwritable(Exception):
    """The shared store refused a command's writes: what the command made was not kept."""


def store_name(settings: Settings) -> str:
    """The store as an operator names it: the cache URL without its password."""
    return redacted(settings.cache.redis_url)


async def check_reachable(cache: ScoreCache, settings: Settings, what: str) -> None:
    """Ask the store for one key under the prefix (connection, TLS, authentication, database),
    or raise StoreUnwritable: "<store>: cannot write <what>: <reason>"."""
    key = f"{settings.cache.prefix}probe"
    try:
        if isinstance(cache, HoldsBytes):
            await cache.get_bytes([key])
        else:
            await cache.get_many([key])
    except CacheUnavailable as exc:
        raise StoreUnwritable(f"{store_name(settings)}: cannot write {what}: {exc}") from exc
