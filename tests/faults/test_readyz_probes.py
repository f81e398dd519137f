"""Two readiness probes at once must not fail each other (found under load by
test_load.py: the cache check wrote and read back one shared key)."""

from __future__ import annotations

from unittest import mock

from django.core.cache import cache

from caregate.ops import health


class Interleaved:
    """The cache, with a second probe run between the first probe's write and its read."""

    def __init__(self) -> None:
        self.entered = False

    def set(self, *args, **kwargs):
        return cache.set(*args, **kwargs)

    def delete(self, *args, **kwargs):
        return cache.delete(*args, **kwargs)

    def get(self, *args, **kwargs):
        if not self.entered:
            self.entered = True
            health.check_cache()  # the other probe: its write lands before our read
        return cache.get(*args, **kwargs)


def test_a_probe_between_another_probes_write_and_read_does_not_fail_it():
    interleaved = Interleaved()
    with mock.patch.object(health, "cache", interleaved):
        health.check_cache()  # raises if the other probe's value came back
    assert interleaved.entered
