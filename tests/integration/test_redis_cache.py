"""The Redis score cache against a real redis-server, including losing it mid-run."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
import redis

from sidecar.cache.redis import RedisCache

pytestmark = pytest.mark.redis


def test_second_identical_request_is_served_from_redis(client_factory, redis_url) -> None:
    redis.Redis.from_url(redis_url).flushdb()
    c = client_factory(cache={"kind": "redis", "redis_url": redis_url})
    first = c.post("/search", json={"query": "tent 4 person", "window": 40}).json()
    second = c.post("/search", json={"query": "tent 4 person", "window": 40}).json()
    assert first["cache"] == {"status": "ok", "hits": 0, "misses": 40}
    assert second["cache"] == {"status": "ok", "hits": 40, "misses": 0}
    assert [h["id"] for h in first["hits"]] == [h["id"] for h in second["hits"]]
    keys = redis.Redis.from_url(redis_url).keys("rr:all-MiniLM-L6-v2:*")
    assert len(keys) == 40
    assert 0 < redis.Redis.from_url(redis_url).ttl(keys[0]) <= 7 * 24 * 3600


def test_redis_outage_degrades_and_recovers(client_factory, own_redis) -> None:
    c = client_factory(
        cache={
            "kind": "redis",
            "redis_url": own_redis.url,
            "breaker_cooldown_s": 0.2,
            "timeout_s": 0.2,
        }
    )
    warm = c.post("/search", json={"query": "sleeping bag", "window": 20}).json()
    assert warm["cache"]["status"] == "ok"

    own_redis.stop()
    down = c.post("/search", json={"query": "sleeping bag", "window": 20})
    assert down.status_code == 200
    body = down.json()
    assert body["cache"]["status"] == "unavailable" and body["rerank_status"] == "ok"
    assert [h["id"] for h in body["hits"]] == [h["id"] for h in warm["hits"]]
    ready = c.get("/readyz").json()
    assert ready["cache"]["ready"] is False and ready["ready"] is True  # cache does not gate

    own_redis.start()  # same port: the client reconnects once the breaker lets it try
    time.sleep(0.3)
    again = c.post("/search", json={"query": "sleeping bag", "window": 20}).json()
    assert again["cache"]["status"] == "ok"
    back = c.post("/search", json={"query": "sleeping bag", "window": 20}).json()
    assert back["cache"] == {"status": "ok", "hits": 20, "misses": 0}


async def test_breaker_opens_after_n_failures_and_then_refuses_at_once(own_redis) -> None:
    cache = RedisCache(own_redis.url, timeout_s=0.2, cooldown_s=30, failures=3)
    await cache.set_many({"k": 0.5}, ttl_s=60)
    assert await cache.get_many(["k", "missing"]) == [0.5, None]
    own_redis.stop()
    from sidecar.cache.base import CacheUnavailable

    for _ in range(2):  # fewer than `failures` errors: each call fails, the breaker stays shut
        with pytest.raises(CacheUnavailable, match="ConnectionError"):
            await cache.get_many(["k"])
        assert cache.breaker.state == "closed"
    with pytest.raises(CacheUnavailable, match="ConnectionError"):
        await cache.get_many(["k"])
    assert cache.breaker.state == "open"
    with pytest.raises(CacheUnavailable, match="circuit open"):  # Redis is not asked
        await cache.get_many(["k"])
    assert cache.stats()["errors"] == 3 and cache.stats()["breaker"] == "open"
    await cache.close()


class CountingScorer:
    """The real scorer, counting calls; a short pause makes concurrent requests overlap."""

    def __init__(self, inner, pause_s: float = 0.3) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.reads_images = inner.reads_images
        self.state = inner.state
        self.pause_s = pause_s
        self.calls = 0

    async def load(self) -> None:
        return None

    async def score(self, query, documents, instruction, images=None, *, deadline):
        self.calls += 1
        await asyncio.sleep(self.pause_s)
        return await self.inner.score(query, documents, instruction, images, deadline=deadline)

    async def close(self) -> None:
        return None


async def test_concurrent_identical_misses_are_scored_once(minilm, redis_url) -> None:
    from sidecar.services import operator_deadline, params_for
    from sidecar.wiring import build_services
    from tests.conftest import make_settings

    counting = CountingScorer(minilm)
    settings = make_settings(cache={"kind": "redis", "redis_url": redis_url, "prefix": "sf:"})
    services = build_services(settings, counting)
    await services.cache.delete_prefix("sf:")
    try:
        params = params_for(services, "insulated water bottle", 10, 25)
        outcomes = await asyncio.gather(
            *(services.pipeline.search(params, operator_deadline(services)) for _ in range(6))
        )
        assert counting.calls == 1 and services.scoring.flights.shared == 5
        assert {o.report.status for o in outcomes} == {"ok"}
        orders = {tuple(h.document.id for h in o.hits) for o in outcomes}
        assert len(orders) == 1
        other = params_for(services, "stainless water bottle", 10, 25)
        await asyncio.gather(
            services.pipeline.search(params, operator_deadline(services)),
            services.pipeline.search(other, operator_deadline(services)),
        )
        assert counting.calls == 2  # the first query is cached now; only the new one is scored
    finally:
        await services.scoring.drain()
        await services.cache.close()
        await services.backend.close()


def test_requests_keep_succeeding_while_redis_stops_and_restarts(client_factory, own_redis):
    c = client_factory(
        admin_token="t",
        cache={
            "kind": "redis",
            "redis_url": own_redis.url,
            "breaker_cooldown_s": 0.2,
            "timeout_s": 0.2,
        },
    )
    statuses: list[tuple[int, str]] = []
    stop = threading.Event()

    def traffic() -> None:
        while not stop.is_set():
            r = c.post("/search", json={"query": "trail running shoes", "window": 20})
            statuses.append((r.status_code, r.json()["cache"]["status"]))

    def wait_for(condition, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, statuses
            time.sleep(0.05)

    def stats() -> dict:
        return c.get("/admin/cache/stats", headers={"Authorization": "Bearer t"}).json()

    runner = threading.Thread(target=traffic)
    runner.start()
    try:
        wait_for(lambda: len(statuses) >= 2)
        own_redis.stop()
        wait_for(lambda: statuses[-1][1] == "unavailable")
        wait_for(lambda: stats()["breaker"] != "closed")  # opens after `breaker_failures` errors
        down = stats()
        during = len(statuses)
        wait_for(lambda: len(statuses) >= during + 3)  # requests go on while Redis is away
        own_redis.start()
        wait_for(lambda: statuses[-1][1] == "ok")
        after = len(statuses)
        wait_for(lambda: len(statuses) >= after + 2)
    finally:
        stop.set()
        runner.join()

    assert {code for code, _ in statuses} == {200}
    seen = [cache for _, cache in statuses]
    assert "unavailable" in seen and seen[0] == "ok" and seen[-1] == "ok"
    assert down["errors"] >= 1 and down["breaker"] in {"open", "half_open"}
    up = stats()
    assert up["breaker"] == "closed" and up["mode"] == "standalone"
    back = c.post("/search", json={"query": "trail running shoes", "window": 20}).json()
    assert back["cache"] == {"status": "ok", "hits": 20, "misses": 0}


def test_admin_flush_by_model_and_prefix_on_redis(client_factory, redis_url) -> None:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.set("other-app:key", "1")
    c = client_factory(admin_token="t", cache={"kind": "redis", "redis_url": redis_url})
    auth = {"Authorization": "Bearer t"}
    # a generous budget: this test counts hits and misses, and a cache read cut by a short
    # deadline on a busy machine (cache.status: timeout) counts neither
    search = {"query": "yoga mat", "window": 15, "timeout_ms": 30_000}
    c.post("/search", json=search)
    c.post("/search", json=search)
    stats = c.get("/admin/cache/stats", headers=auth).json()
    assert (stats["hits"], stats["misses"], stats["errors"]) == (15, 15, 0)
    assert stats["breaker"] == "closed" and stats["prefix"] == "rr:"

    client.set("rr:some*odd[key", "0.5")  # glob characters in a prefix are taken literally
    client.set("rr:some-other", "0.5")
    odd = c.post("/admin/cache/flush", headers=auth, json={"prefix": "rr:some*"}).json()
    assert odd == {"deleted": 1, "prefix": "rr:some*"}  # as a glob it would take rr:some-other
    flushed = c.post("/admin/cache/flush", headers=auth, json={"model": "all-MiniLM-L6-v2"})
    assert flushed.json() == {"deleted": 15, "prefix": "rr:all-MiniLM-L6-v2:"}
    assert client.exists("other-app:key") and client.exists("rr:some-other")
    everything = c.post("/admin/cache/flush", headers=auth, json={"prefix": "rr:"}).json()
    assert everything["deleted"] == 1
    cold = c.post("/search", json=search).json()
    assert cold["cache"] == {"status": "ok", "hits": 0, "misses": 15}


@pytest.fixture
def redis_cluster(tmp_path):
    """Three cluster-enabled redis-server masters joined with redis-cli --cluster create."""
    import shutil
    import subprocess

    from tests.redis_server import free_port

    if shutil.which("redis-cli") is None:
        pytest.skip("redis-cli is not installed")
    ports: list[int] = []
    while len(ports) < 3:  # the cluster bus listens on port + 10000
        port = free_port()
        if port < 55_000 and port not in ports:
            ports.append(port)
    procs = []
    try:
        for port in ports:
            work = tmp_path / str(port)
            work.mkdir()
            procs.append(
                subprocess.Popen(
                    ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", "",
                     "--appendonly", "no", "--dir", str(work), "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )  # fmt: skip
        for port in ports:
            _wait_for_ping(port)
        subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while redis.Redis(port=ports[0]).cluster("info").get("cluster_state") != "ok":
            assert time.monotonic() < deadline, "cluster did not become ok"
            time.sleep(0.1)
        yield ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)


def _wait_for_ping(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis(port=port, socket_timeout=0.2).ping():
                return
        except redis.ConnectionError:
            assert time.monotonic() < deadline, f"redis on {port} did not start"
            time.sleep(0.05)


async def test_redis_cluster_reads_across_slots_writes_and_flushes(redis_cluster) -> None:
    cache = RedisCache(f"redis+cluster://127.0.0.1:{redis_cluster[0]}", timeout_s=1.0)
    keys = [f"rr:m:{i}" for i in range(50)]  # spread over many hash slots and all three nodes
    await cache.set_many({k: i / 100 for i, k in enumerate(keys)}, ttl_s=60)
    got = await cache.get_many([*keys, "rr:m:missing"])
    assert got == [i / 100 for i in range(50)] + [None]
    per_node = [redis.Redis(port=p).dbsize() for p in redis_cluster]
    assert sum(per_node) == 50 and all(n > 0 for n in per_node)
    assert cache.stats()["mode"] == "cluster" and cache.stats()["hits"] == 50
    await cache.set_many({"other:x": 0.1}, ttl_s=60)
    assert await cache.delete_prefix("rr:m:") == 50
    assert await cache.get_many(keys[:3]) == [None, None, None]
    assert await cache.get_many(["other:x"]) == [0.1]
    await cache.close()


async def test_redis_sentinel_finds_the_master(own_redis, tmp_path) -> None:
    import subprocess

    from tests.redis_server import free_port

    port = free_port()
    conf = tmp_path / "sentinel.conf"  # sentinel rewrites its config file: it must be writable
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\n"
        f"sentinel monitor mymaster 127.0.0.1 {own_redis.port} 1\n"
    )
    proc = subprocess.Popen(
        ["redis-server", str(conf), "--sentinel"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for_ping(port)
        cache = RedisCache(f"redis+sentinel://127.0.0.1:{port}/mymaster/0", timeout_s=1.0)
        await cache.set_many({"rr:s:1": 0.25}, ttl_s=60)
        assert await cache.get_many(["rr:s:1", "rr:s:2"]) == [0.25, None]
        assert redis.Redis.from_url(own_redis.url).get("rr:s:1") == b"0.25"
        assert cache.stats()["mode"] == "sentinel"
        await cache.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
