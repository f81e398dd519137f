"""The Redis cache keeps one redis-py client per pool (caregate.ops.redis_cache)."""

from __future__ import annotations

import threading

import pytest
from django.core.cache import caches

from caregate.ops.redis_cache import RedisCache, ReusedClientRedisCacheClient


@pytest.fixture
def redis_cache(settings) -> RedisCache:
    cache = caches["default"]
    assert isinstance(cache, RedisCache), "the tests run with REDIS_URL set"
    return cache


def test_one_client_serves_every_call(redis_cache):
    inner = redis_cache._cache
    assert isinstance(inner, ReusedClientRedisCacheClient)
    assert inner.get_client() is inner.get_client(write=True) is inner.get_client("any key")


def test_the_reused_client_still_reads_and_writes(redis_cache):
    redis_cache.set("reuse:a", {"n": 1}, 30)
    assert redis_cache.get("reuse:a") == {"n": 1}
    assert redis_cache.add("reuse:a", 2, 30) is False
    assert redis_cache.add("reuse:n", 0, 30) is True
    assert redis_cache.incr("reuse:n") == 1
    redis_cache.delete("reuse:a")
    assert redis_cache.get("reuse:a") is None


def test_a_connection_dropped_by_the_server_is_replaced(redis_cache):
    """The server (or a restart) closes our connection: the next call opens another."""
    client = redis_cache._cache.get_client()
    redis_cache.set("reuse:b", "before", 30)
    own_id = client.client_id()
    # SKIPME no: a connection may close itself (only this one, the shared Redis has others).
    assert client.execute_command("CLIENT", "KILL", "ID", own_id, "SKIPME", "no") == 1
    assert redis_cache.get("reuse:b") == "before"
    assert client.client_id() != own_id


def test_threads_share_the_client_without_losing_a_count(redis_cache):
    redis_cache.set("reuse:count", 0, 60)
    barrier = threading.Barrier(8)

    def bump() -> None:
        barrier.wait()
        for _ in range(50):
            redis_cache.incr("reuse:count")

    threads = [threading.Thread(target=bump) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert redis_cache.get("reuse:count") == 400
