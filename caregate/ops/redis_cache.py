"""Django's Redis cache, with one redis-py client per connection pool instead of one a call.

Django's ``RedisCacheClient.get_client()`` builds a new ``redis.Redis`` around the shared
pool for every cache call. Building one is not free in redis-py 6 (a table of some 170
response callbacks, an event dispatcher): profiled at about a third of a millisecond a
call, some 13 calls a sign-in (sessions, rate limits, flow tickets). A ``redis.Redis`` is
safe to share between threads (each command borrows a connection from the pool), and the
pool itself notices a fork, so one client per pool is kept and reused. Everything else,
keys, serializer, timeouts, errors, is Django's.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends import redis as django_redis


class ReusedClientRedisCacheClient(django_redis.RedisCacheClient):
    """``get_client()`` answers the same ``redis.Redis`` for the same pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            # Two threads may both build one at first; either is as good (same pool).
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client


class RedisCache(django_redis.RedisCache):
    """Settings' cache BACKEND: Django's RedisCache over the reusing client."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = ReusedClientRedisCacheClient
