"""`operations.embed.embed_catalog` (the work of `index --embed`) against a real Redis: every
embedding it encodes is written and counted, and a store that dies during the run fails it,
naming the store, instead of reporting products shared that were not."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import redis

from sidecar.config import Settings
from sidecar.demo import CATALOG_PATH
from sidecar.operations.embed import embed_catalog
from sidecar.operations.shared_store import StoreUnwritable
from tests.redis_server import RedisServer

pytestmark = pytest.mark.redis


def _catalog(tmp_path: Path, products: int) -> Path:
    catalog = tmp_path / "catalog.jsonl"
    with CATALOG_PATH.open(encoding="utf-8") as lines:
        catalog.write_text("".join(itertools.islice(lines, products)), encoding="utf-8")
    return catalog


def _settings(server: RedisServer) -> Settings:
    return Settings(cache={"kind": "redis", "redis_url": server.url, "prefix": "emb-test:"})


async def test_every_encoded_embedding_is_written(own_redis: RedisServer, tmp_path: Path) -> None:
    report = await embed_catalog(_settings(own_redis), _catalog(tmp_path, 30))
    assert (report.total, report.encoded, report.found, report.written) == (30, 30, 0, 30)
    assert report.store == own_redis.url
    stored = redis.Redis.from_url(own_redis.url).keys("emb-test:emb:*")
    assert len(stored) == 30
    again = await embed_catalog(_settings(own_redis), _catalog(tmp_path, 30))
    assert (again.found, again.written) == (30, 0)


async def test_a_store_that_dies_during_the_run_fails_it(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """The probe passes; Redis stops after the first chunk of 256: the run ends in
    StoreUnwritable naming the store and how many were not stored."""

    def stop_after_first_chunk(done: int, total: int) -> None:
        if done < total:
            own_redis.stop()

    with pytest.raises(StoreUnwritable) as failed:
        await embed_catalog(
            _settings(own_redis), _catalog(tmp_path, 300), progress=stop_after_first_chunk
        )
    message = str(failed.value)
    assert message.startswith(f"{own_redis.url}: cannot write shared embeddings: ")
    assert " of 300 were not stored (redis: ConnectionError" in message


async def test_writes_refused_while_reads_answer_fail_the_run_with_the_reason(
    own_redis: RedisServer, tmp_path: Path
) -> None:
    """Redis answers (the probe passes) but refuses writes from the first chunk on (memory
    full): the run fails with Redis's own refusal, not a report of products shared."""
    direct = redis.Redis.from_url(own_redis.url)

    def fill_memory(done: int, total: int) -> None:
        direct.config_set("maxmemory-policy", "noeviction")
        direct.config_set("maxmemory", "1")

    with pytest.raises(StoreUnwritable) as failed:
        await embed_catalog(_settings(own_redis), _catalog(tmp_path, 20), progress=fill_memory)
    assert "cannot write shared embeddings: 20 of 20 were not stored" in str(failed.value)
    assert "OutOfMemoryError" in str(failed.value)
