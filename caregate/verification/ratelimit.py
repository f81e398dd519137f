"""Fixed-window rate limits kept in the cache, so every app process shares them.

Written by hand because the limits are keyed by things a decorator cannot see (the
account an email names, the destination a code goes to) and must be tested once for
every factor; it is thirty lines over Django's atomic cache.add/cache.incr.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True)
class Limit:
    count: int
    window: int  # seconds


def limit_for(scope: str) -> Limit:
    count, window = settings.CAREGATE_RATE_LIMITS[scope]
    return Limit(count, window)


def _key(scope: str, identity: str, window: int, now: float) -> str:
    # Hash the identity: emails and phone numbers do not belong in cache keys.
    digest = hashlib.sha256(identity.strip().lower().encode()).hexdigest()[:32]
    return f"rl:{scope}:{digest}:{int(now // window)}"


def hit(scope: str, identity: str, *, now: float | None = None) -> bool:
    """Count one event; return False when the limit for this identity is exceeded."""
    limit = limit_for(scope)
    moment = time.time() if now is None else now
    key = _key(scope, identity, limit.window, moment)
    # add() is atomic (SET NX in Redis); incr() is atomic too. Together they never lose a hit.
    if cache.add(key, 1, timeout=limit.window + 1):
        return limit.count >= 1
    try:
        value = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=limit.window + 1)
        value = 1
    return value <= limit.count


def is_limited(scope: str, identity: str, *, now: float | None = None) -> bool:
    """Return True if the identity has used up its limit (without counting)."""
    limit = limit_for(scope)
    moment = time.time() if now is None else now
    value = cache.get(_key(scope, identity, limit.window, moment), 0)
    return value >= limit.count


def hit_all(checks: list[tuple[str, str]]) -> bool:
    """Count every (scope, identity) pair; return False if any of them is over its limit."""
    results = [hit(scope, identity) for scope, identity in checks if identity]
    return all(results)
