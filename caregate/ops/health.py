"""Probes: /healthz (the process answers) and /readyz (it can serve: its services answer).

A load balancer sends traffic only to ready processes and an orchestrator restarts a
process that stops being healthy, so /healthz checks nothing outside the process: a
database outage must not restart every app process at once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache

from caregate.ops import queue

logger = logging.getLogger(__name__)

OK = "ok"
FAILED = "failed"


@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")


def check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


def check_cache() -> None:
    # A write and a read back: a cache that accepts writes but loses them (or a Redis that
    # answers reads only) cannot hold rate limits. A key of its own per check: with one
    # shared key, two probes at once (two workers, two balancers) overwrote each other's
    # value and failed (found by tests/faults/test_load.py).
    value = uuid.uuid4().hex
    key = f"caregate:readyz:{value}"
    cache.set(key, value, 10)
    if cache.get(key) != value:
        raise RuntimeError("the cache did not return the value just written")
    cache.delete(key)


def check_task_queue() -> None:
    # The cheapest read of the queue's table: it exists and the database serves it.
    list(queue.task_results().order_by().values_list("pk", flat=True)[:1])


def checks() -> dict[str, Callable[[], None]]:
    found = {"database": check_database, "cache": check_cache}
    if queue.installed():
        found["task_queue"] = check_task_queue
    return found


def _run(name: str, check: Callable[[], None]) -> str:
    try:
        check()
    except Exception:
        # The reason goes to the log (with the request id), not to whoever asked.
        logger.exception("readiness check %s failed", name)
        return FAILED
    return OK


@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    """200 when every service answers; 503 with the failed check named otherwise."""
    results = {name: _run(name, check) for name, check in checks().items()}
    ready = all(result == OK for result in results.values())
    body = {"status": "ready" if ready else "not ready", "checks": results}
    return JsonResponse(body, status=200 if ready else 503)
