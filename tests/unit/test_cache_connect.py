"""Redis URL parsing: standalone, Cluster and Sentinel, and clear errors for bad URLs."""

import pytest

from sidecar.cache.connect import RedisTarget, connect, parse_redis_url
from sidecar.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://10.0.0.5:6379/2", RedisTarget("standalone", "redis://10.0.0.5:6379/2")),
        ("unix:///run/redis.sock", RedisTarget("standalone", "unix:///run/redis.sock")),
        (
            "redis+cluster://a:7000,b:7001",
            RedisTarget("cluster", "redis+cluster://a:7000,b:7001", (("a", 7000), ("b", 7001))),
        ),
        (
            "rediss+cluster://u:p%40ss@a",
            RedisTarget(
                "cluster", "rediss+cluster://u:p%40ss@a", (("a", 6379),), None, 0, "u", "p@ss", True
            ),
        ),
        (
            "redis+sentinel://:pw@s1:26379,s2,[::1]:26380/mymaster/3",
            RedisTarget(
                "sentinel",
                "redis+sentinel://:pw@s1:26379,s2,[::1]:26380/mymaster/3",
                (("s1", 26379), ("s2", 26379), ("::1", 26380)),
                "mymaster",
                3,
                None,
                "pw",
            ),
        ),
    ],
)
def test_parses(url: str, expected: RedisTarget) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("localhost:6379", "expected scheme://"),
        ("http://x", "unknown scheme 'http'"),
        ("redis+sentinel://s1:26379", "name the master"),
        ("redis+sentinel://s1/m/zero", "database must be a number"),
        ("redis+cluster://a:7000/0", "no database number"),
        ("redis+cluster://a:7000,,b", "empty host"),
        ("redis+cluster://a:notaport", "bad node"),
        ("unix+cluster:///x", "need host:port"),
    ],
)
def test_bad_urls_say_why(url: str, words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        parse_redis_url(url)


async def test_clients_match_the_mode() -> None:
    from redis.asyncio import Redis
    from redis.asyncio.cluster import RedisCluster

    standalone, helpers = connect(parse_redis_url("redis://127.0.0.1:1/0"), 0.1)
    assert isinstance(standalone, Redis) and helpers == []
    await standalone.aclose()
    cluster, _ = connect(parse_redis_url("redis+cluster://127.0.0.1:1"), 0.1)
    assert isinstance(cluster, RedisCluster)
    await cluster.aclose()
    master, sentinels = connect(
        parse_redis_url("redis+sentinel://127.0.0.1:1,127.0.0.1:2/m/1"), 0.1
    )
    assert len(sentinels) == 2
    assert master.connection_pool.service_name == "m"
    assert master.connection_pool.connection_kwargs["db"] == 1
    await master.aclose()
    for sentinel in sentinels:
        await sentinel.aclose()
