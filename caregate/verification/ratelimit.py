"""Fixed-window rate limits kept in the cache, so every app process shares them.

Written by hand because the limits are keyed by things a decorator cannot see (the
account an email names, the destination a code goes to) and must be tested once for
every factor.

On Redis (Django's RedisCache) every counter of one hit goes in one round trip: a
MULTI/EXEC pipeline of INCR and EXPIRE ... NX per scope (NX: the window's expiry is set
by its first hit, never pushed back). Elsewhere (the local-memory cache of tests and of a
single process) Django's atomic cache.add/cache.incr do it, three calls a scope.

Fail closed: when the cache cannot be reached (Redis stopped, restarting, unreachable),
every hit of that moment counts as over its limit and ``is_limited`` says limited, so a
password attempt or a code send is refused rather than let through unthrottled. The
outage is noted for the request (caregate.ops.faults), which then answers with the
"try again in a minute" page instead of a misleading "too many attempts".
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from redis.exceptions import RedisError

from caregate.ops import faults

logger = logging.getLogger(__name__)
# What a cache that cannot be reached raises: redis-py's errors (connection refused, a
# timeout, "loading"), and the socket's own for any other backend.
CACHE_ERRORS = (RedisError, OSError)


@dataclass(frozen=True)
class Limit:
    count: int
    window: int  # seconds


def limit_for(scope: str) -> Limit:
    count, window = settings.CAREGATE_RATE_LIMITS[scope]
    return Limit(count, window)


# NAT64's well-known prefix and the local-use one (RFC 6052, RFC 8215), with the IPv4
# address in the last 32 bits (the /96 form): each such client is its IPv4 address.
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def client_network(identity: str) -> str:
    """A client address as rate limits count it: an IPv6 address by its /64 (one host or
    one site is given a whole /64, so each of its addresses is no one new), an IPv4 one
    (also written IPv6-mapped, or translated by NAT64) as itself. Anything else (no
    address at all) as it is."""
    try:
        address = ipaddress.ip_address(identity.strip())
    except ValueError:
        return identity
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        if any(address in prefix for prefix in _NAT64):
            return str(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _key(scope: str, identity: str, window: int, now: float) -> str:
    if scope.endswith(":client"):
        identity = client_network(identity)
    # Hash the identity: emails and phone numbers do not belong in cache keys.
    digest = hashlib.sha256(identity.strip().lower().encode()).hexdigest()[:32]
    return f"rl:{scope}:{digest}:{int(now // window)}"


def hit(scope: str, identity: str, *, now: float | None = None) -> bool:
    """Count one event; return False when the limit for this identity is exceeded."""
    return _count([(scope, identity)], now)[0]


def _count(checks: list[tuple[str, str]], now: float | None) -> list[bool]:
    """Count one event for every (scope, identity); whether each is within its limit."""
    moment = time.time() if now is None else now
    counters = []
    for scope, identity in checks:
        limit = limit_for(scope)
        counters.append((limit, _key(scope, identity, limit.window, moment)))
    backend = _backend()
    try:
        if isinstance(backend, RedisCache):
            values = _incr_on_redis(backend, counters)
        else:
            values = [_incr_in_cache(key, limit) for limit, key in counters]
    except CACHE_ERRORS as exc:
        _unavailable(exc)
        return [False] * len(counters)  # fail closed: nothing is let through uncounted
    return [value <= limit.count for value, (limit, _) in zip(values, counters, strict=True)]


def _backend() -> BaseCache:
    # ``cache`` is Django's proxy to the default cache (or, in a test, a cache itself).
    return cache if isinstance(cache, BaseCache) else caches[DEFAULT_CACHE_ALIAS]


def _incr_on_redis(redis_cache: RedisCache, counters: list[tuple[Limit, str]]) -> list[int]:
    """INCR + EXPIRE NX for each counter, all in one round trip. The keys are the cache's
    own (prefix, version), and a plain integer is how RedisCache stores an int, so
    is_limited()'s cache.get() reads these counters."""
    client = redis_cache._cache.get_client(write=True)
    with client.pipeline(transaction=True) as pipe:
        for limit, key in counters:
            stored = redis_cache.make_and_validate_key(key)
            pipe.incr(stored)
            pipe.expire(stored, limit.window + 1, nx=True)
        replies = pipe.execute()
    return [int(value) for value in replies[0::2]]


def _incr_in_cache(key: str, limit: Limit) -> int:
    # add() is atomic (SET NX); incr() is atomic too. Together they never lose a hit.
    if cache.add(key, 1, timeout=limit.window + 1):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=limit.window + 1)
        return 1


def moment() -> float:
    """The rate limits' clock (one window for a hit and its refund)."""
    return time.time()


def refund(scope: str, identity: str, *, now: float) -> None:
    """Take back one event counted at ``now`` (hit's), for an attempt a later budget
    refused after all: it sent nothing, so it must not have used up this budget."""
    limit = limit_for(scope)
    key = _key(scope, identity, limit.window, now)
    try:
        cache.decr(key)
    except ValueError:  # gone meanwhile (expired): nothing left to take back
        return
    except CACHE_ERRORS as exc:
        _unavailable(exc)


def is_limited(scope: str, identity: str, *, now: float | None = None) -> bool:
    """Return True if the identity has used up its limit (without counting)."""
    limit = limit_for(scope)
    moment = time.time() if now is None else now
    try:
        value = cache.get(_key(scope, identity, limit.window, moment), 0)
    except CACHE_ERRORS as exc:
        _unavailable(exc)
        return True  # fail closed
    return value >= limit.count


def _unavailable(exc: BaseException) -> None:
    logger.warning("rate limits unavailable (cache error %s): refusing", type(exc).__name__)
    faults.note_outage("cache")


def hit_in_turn(*groups: list[tuple[str, str]]) -> bool:
    """Count each group of budgets (as hit_all does) only if every group before it let
    the event through; False at the first group over its limit.

    For sends: the sender's own budgets (account, client address) come first, and what a
    send shares with others (its destination, a cap on everyone) is counted only for a
    send they allowed. A refused attempt never reaches a message, so it must not use up
    the victim number's or address's budget either: otherwise anyone could keep another
    person's phone or mailbox from getting its sign-in codes without sending them one.
    """
    return all(hit_all(group) for group in groups)


def hit_all(checks: list[tuple[str, str]]) -> bool:
    """Count every (scope, identity) pair; return False if any of them is over its limit."""
    # Every pair is counted, also after one of them is already over (one round trip).
    return all(_count([(scope, identity) for scope, identity in checks if identity], None))
