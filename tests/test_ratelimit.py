"""Fixed-window rate limits kept in the cache (Redis in these tests), shared by processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import redis
from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

from caregate.verification import ratelimit

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_800_000_000.0  # a fixed moment, 1_800_000_000 // 60 windows since the epoch
EMAIL = "Someone.Private@Example.com"


@pytest.fixture
def limits(settings):
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        "test:three": (3, 60),
        "test:one": (1, 60),
    }
    return settings.CAREGATE_RATE_LIMITS


@pytest.fixture
def frozen():
    """hit_all() takes no ``now``: freeze the clock so no window boundary splits a test."""
    with mock.patch.object(ratelimit, "time", mock.Mock(time=lambda: NOW)):
        yield


def redis_client() -> redis.Redis:
    url = os.environ.get("REDIS_URL", "")
    if not url:
        pytest.fail("the tests run with REDIS_URL set (see the brief)")
    return redis.Redis.from_url(url)


def test_hit_counts_up_to_the_limit_then_refuses(limits):
    results = [ratelimit.hit("test:three", "a", now=NOW) for _ in range(5)]
    assert results == [True, True, True, False, False]
    assert ratelimit.is_limited("test:three", "a", now=NOW)


def test_is_limited_does_not_count(limits):
    for _ in range(10):
        assert not ratelimit.is_limited("test:three", "a", now=NOW)
    assert ratelimit.hit("test:three", "a", now=NOW)
    assert ratelimit.hit("test:three", "a", now=NOW)
    assert not ratelimit.is_limited("test:three", "a", now=NOW)
    assert ratelimit.hit("test:three", "a", now=NOW)
    assert ratelimit.is_limited("test:three", "a", now=NOW)


def test_window_resets(limits):
    start = (NOW // 60) * 60  # the first second of a window
    for _ in range(3):
        assert ratelimit.hit("test:three", "a", now=start)
    assert not ratelimit.hit("test:three", "a", now=start + 59)  # same window
    assert ratelimit.hit("test:three", "a", now=start + 60)  # the next one
    assert ratelimit.hit("test:three", "a", now=start + 61)
    assert ratelimit.hit("test:three", "a", now=start + 62)
    assert not ratelimit.hit("test:three", "a", now=start + 63)


def test_identities_are_independent(limits):
    for _ in range(3):
        assert ratelimit.hit("test:three", "alice@example.com", now=NOW)
    assert not ratelimit.hit("test:three", "alice@example.com", now=NOW)
    assert ratelimit.hit("test:three", "bob@example.com", now=NOW)
    assert ratelimit.hit("test:three", "10.0.0.1", now=NOW)


def test_scopes_are_independent(limits):
    assert ratelimit.hit("test:one", "a", now=NOW)
    assert not ratelimit.hit("test:one", "a", now=NOW)
    assert ratelimit.hit("test:three", "a", now=NOW)


def test_identity_case_and_spaces_do_not_escape_the_limit(limits):
    assert ratelimit.hit("test:one", "Alice@Example.com", now=NOW)
    assert not ratelimit.hit("test:one", "alice@example.com", now=NOW)
    assert not ratelimit.hit("test:one", "  ALICE@EXAMPLE.COM ", now=NOW)


def test_limits_come_from_settings(settings):
    settings.CAREGATE_RATE_LIMITS = {**settings.CAREGATE_RATE_LIMITS, "signin:account": (2, 900)}
    assert ratelimit.limit_for("signin:account") == ratelimit.Limit(2, 900)
    assert [ratelimit.hit("signin:account", "x", now=NOW) for _ in range(3)] == [
        True,
        True,
        False,
    ]


def test_hit_all_refuses_when_any_scope_is_over(limits, frozen):
    assert ratelimit.hit("test:one", "a")
    assert not ratelimit.hit_all([("test:three", "b"), ("test:one", "a")])


def test_hit_all_counts_every_pair(limits, frozen):
    # Every check counts, even after one of them already refused.
    assert ratelimit.hit_all([("test:one", "a"), ("test:three", "b")])
    assert not ratelimit.hit_all([("test:one", "a"), ("test:three", "b")])
    assert ratelimit.hit("test:three", "b")  # the third
    assert not ratelimit.hit("test:three", "b")


def test_hit_all_skips_empty_identities(limits, frozen):
    for _ in range(5):
        assert ratelimit.hit_all([("test:one", ""), ("test:three", "")])
    assert ratelimit.hit_all([("test:one", "x")])


def test_keys_hash_the_identity(limits):
    key = ratelimit._key("test:three", EMAIL, 60, NOW)
    assert EMAIL.lower() not in key.lower()
    assert "someone" not in key.lower() and "example" not in key.lower()
    assert key.startswith("rl:test:three:")
    assert key == ratelimit._key("test:three", EMAIL.lower(), 60, NOW)
    assert key != ratelimit._key("test:three", "other@example.com", 60, NOW)


def test_no_raw_email_or_ip_in_the_stored_cache_keys(limits, frozen):
    ratelimit.hit("test:three", EMAIL)
    ratelimit.hit("test:three", "203.0.113.77")
    stored = [k.decode() for k in redis_client().keys("*")]
    rate_keys = [k for k in stored if ":rl:" in k]
    assert len(rate_keys) == 2
    for key in rate_keys:
        assert "someone" not in key.lower() and "example.com" not in key.lower()
        assert "203.0.113.77" not in key


# --- shared through Redis ---------------------------------------------------------------


def test_counters_live_in_redis(settings, limits):
    assert settings.CACHES["default"]["BACKEND"] == "caregate.ops.redis_cache.RedisCache"
    assert isinstance(caches["default"], RedisCache)
    ratelimit.hit("test:three", "shared", now=NOW)
    ratelimit.hit("test:three", "shared", now=NOW)
    # A plain Redis connection, not Django's, sees the counter.
    raw = redis_client()
    key = caches["default"].make_key(ratelimit._key("test:three", "shared", 60, NOW))
    assert int(raw.get(key)) == 2
    ttl = raw.ttl(key)
    assert 0 < ttl <= 61


def test_two_cache_connections_share_counters(settings, limits):
    """Two app processes each build their own cache client from the same settings."""
    assert settings.CACHES["default"]["BACKEND"] == "caregate.ops.redis_cache.RedisCache"
    config = settings.CACHES["default"]
    params = {k: v for k, v in config.items() if k not in {"BACKEND", "LOCATION"}}
    first = RedisCache(config["LOCATION"], params)
    second = RedisCache(config["LOCATION"], params)
    assert first is not second and first._cache is not second._cache
    with mock.patch.object(ratelimit, "cache", first):
        assert ratelimit.hit("test:three", "a", now=NOW)
        assert ratelimit.hit("test:three", "a", now=NOW)
    with mock.patch.object(ratelimit, "cache", second):
        assert ratelimit.hit("test:three", "a", now=NOW)
        assert not ratelimit.hit("test:three", "a", now=NOW)
    with mock.patch.object(ratelimit, "cache", first):
        assert ratelimit.is_limited("test:three", "a", now=NOW)


SUBPROCESS_HITS = """
import django
django.setup()
from caregate.verification import ratelimit
print(",".join(str(ratelimit.hit("signin:account", "victim@example.com", now={now}))
               for _ in range(2)))
"""


def test_a_separate_process_shares_counters(settings):
    """A real second Python process, configured like an app server, sees our hits."""
    assert settings.CACHES["default"]["BACKEND"] == "caregate.ops.redis_cache.RedisCache"
    settings.CAREGATE_RATE_LIMITS = {**settings.CAREGATE_RATE_LIMITS, "signin:account": (3, 900)}
    assert ratelimit.hit("signin:account", "victim@example.com", now=NOW)
    assert ratelimit.hit("signin:account", "victim@example.com", now=NOW)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "caregate.settings",
        "CAREGATE_SIGNIN_LIMIT_PER_ACCOUNT": "3",
    }
    result = subprocess.run(
        [sys.executable, "-c", SUBPROCESS_HITS.format(now=NOW)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # Its first hit is the third overall (allowed); its second is over the limit.
    assert result.stdout.strip() == "True,False"
    assert not ratelimit.hit("signin:account", "victim@example.com", now=NOW)


def test_a_later_hit_does_not_push_the_windows_expiry_back(limits):
    """EXPIRE NX: the first hit of a window sets its expiry, later hits leave it."""
    ratelimit.hit("test:three", "ttl", now=NOW)
    raw = redis_client()
    key = caches["default"].make_key(ratelimit._key("test:three", "ttl", 60, NOW))
    raw.expire(key, 5)
    ratelimit.hit("test:three", "ttl", now=NOW)
    assert 0 < raw.ttl(key) <= 5
    assert int(raw.get(key)) == 2


def test_one_round_trip_to_redis_for_every_scope_of_a_hit(limits, frozen):
    from redis.connection import AbstractConnection

    ratelimit.hit("test:three", "warm")  # a connection in the pool already
    send = AbstractConnection.send_packed_command
    with mock.patch.object(
        AbstractConnection, "send_packed_command", autospec=True, side_effect=send
    ) as trips:
        assert ratelimit.hit_all([("test:three", "a"), ("test:one", "b"), ("test:three", "c")])
    assert trips.call_count == 1


def test_the_local_memory_fallback_counts_the_same(limits, frozen):
    """Without Redis (one process, and settings without REDIS_URL): Django's cache calls."""
    from django.core.cache.backends.locmem import LocMemCache

    with mock.patch.object(ratelimit, "cache", LocMemCache("ratelimit-test", {})):
        assert [ratelimit.hit("test:three", "a") for _ in range(5)] == [True] * 3 + [False] * 2
        assert ratelimit.hit_all([("test:one", "x"), ("test:three", "y")])
        assert not ratelimit.hit_all([("test:one", "x"), ("test:three", "y")])
        assert ratelimit.hit("test:three", "y")
        assert not ratelimit.hit("test:three", "y")
        assert ratelimit.is_limited("test:three", "a")


def test_client_addresses_are_counted_by_their_ipv6_64(settings):
    """One host or site is given a whole IPv6 /64: each of its addresses is no one new."""
    settings.CAREGATE_RATE_LIMITS = {**settings.CAREGATE_RATE_LIMITS, "t:client": (2, 60)}
    now = 1_800_000_000.0
    assert ratelimit.hit("t:client", "2001:db8:1:2::10", now=now)
    assert ratelimit.hit("t:client", "2001:db8:1:2:ffff::1", now=now)
    assert not ratelimit.hit("t:client", "2001:db8:1:2::abcd", now=now)  # the same /64
    assert ratelimit.hit("t:client", "2001:db8:1:3::10", now=now)  # the next /64
    # IPv4, also written as IPv6-mapped, is one address; other scopes are left alone.
    assert ratelimit.hit("t:client", "192.0.2.1", now=now)
    assert ratelimit.hit("t:client", "::ffff:192.0.2.1", now=now)
    assert not ratelimit.hit("t:client", "192.0.2.1", now=now)
    assert ratelimit.client_network("not an address") == "not an address"


def test_hit_in_turn_counts_a_later_group_only_for_what_the_earlier_let_through(settings):
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        "t:sender": (1, 60),
        "t:shared": (5, 60),
    }
    # One window throughout (hit_all reads the clock itself).
    with mock.patch.object(ratelimit, "time", mock.Mock(time=lambda: 1_800_000_000.0)):
        assert ratelimit.hit_in_turn([("t:sender", "me")], [("t:shared", "victim")])
        for _ in range(10):  # refused by the sender's own budget
            assert not ratelimit.hit_in_turn([("t:sender", "me")], [("t:shared", "victim")])
        # The shared budget saw one event, not eleven.
        for _ in range(4):
            assert ratelimit.hit("t:shared", "victim")
        assert not ratelimit.hit("t:shared", "victim")
