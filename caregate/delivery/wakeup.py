"""Wake the task worker when a task is queued: PostgreSQL's LISTEN/NOTIFY (issue #10).

django-tasks-db's worker looks for due tasks every ``--interval`` seconds. A code then
waits up to that long before it is sent, and an idle worker's looks cost CPU all day: at
``make serve``'s former 0.1-second poll, 23 ms of worker CPU and 4 ms of PostgreSQL CPU
every second with nothing to do (bench/README.md). Here every task queued on PostgreSQL
due now sends ``NOTIFY`` on the connection that wrote its row, so PostgreSQL delivers it when that
transaction commits (never for one rolled back, and never before the row is visible), and
the worker (``manage.py db_worker``, caregate/delivery/management/commands/db_worker.py)
waits on ``LISTEN`` between looks instead of sleeping. The timed look stays, as the
fallback: for a task queued to run later (which notifies nobody), and for a notification
sent while no worker was listening.

A listener that has heard nothing for ``PING_AFTER_SECONDS`` checks that its connection
still hears (a NOTIFY of its own through the other connection), and ends the worker if
not. A notification says only "look now"; it carries nothing, and a stray one (anyone who can
connect to the database can send it) costs one look at the queue.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import connections, router
from django.utils import timezone

CHANNEL = "caregate_tasks"


def _queue_alias() -> str:
    from django_tasks_db.models import DBTaskResult  # noqa: PLC0415 (a model: after the apps)

    return router.db_for_write(DBTaskResult)


def notify_worker(sender: type, task_result: Any, **kwargs: Any) -> None:
    """``task_enqueued`` receiver for django-tasks-db's backend: tell listening workers."""
    run_after = task_result.task.run_after
    if run_after is not None and run_after > timezone.now():
        # Queued to run later (a retry's backoff, the stale-delivery sweep every send
        # keeps scheduled): a look now would find nothing; the timed look will.
        return
    connection = connections[_queue_alias()]
    if connection.vendor != "postgresql":
        return  # SQLite has no LISTEN: a worker there polls
    with connection.cursor() as cursor:
        cursor.execute(f"NOTIFY {CHANNEL}")


# A quiet connection may be dead without either end knowing (a NAT or firewall that forgot
# it, a failover whose old host vanished): nothing arrives, and nothing fails. After this
# long without a notification the listener sends one itself, through the worker's other
# connection, and expects it back.
PING_AFTER_SECONDS = 30.0
PING_TIMEOUT_SECONDS = 5.0


class ListenerLost(RuntimeError):
    """The listening connection no longer hears: the worker ends, and ``make serve``
    starts it again (a new connection)."""


class Listener:
    """A connection of its own that LISTENs (Django's may be closed and reopened between
    looks, which would drop the subscription)."""

    def __init__(self, alias: str) -> None:
        self._alias = alias
        wrapper = connections[alias]
        self._connection = wrapper.get_new_connection(wrapper.get_connection_params())
        self._connection.autocommit = True
        # Subscribed before the worker's first look: a task queued after that look and
        # before the first wait is already waiting here, so no wake-up is lost.
        self._connection.execute(f"LISTEN {CHANNEL}")
        self._last_heard = time.monotonic()

    def wait(self, timeout: float) -> bool:
        """Block until a notification or ``timeout`` seconds; True if one came. A broken
        connection raises (the worker ends, and ``make serve`` starts it again), and so
        does a silent one (ListenerLost)."""
        if self._heard(timeout):
            return True
        if time.monotonic() - self._last_heard < PING_AFTER_SECONDS:
            return False
        with connections[self._alias].cursor() as cursor:
            cursor.execute(f"NOTIFY {CHANNEL}")  # wakes every worker once: one look each
        if not self._heard(PING_TIMEOUT_SECONDS):
            raise ListenerLost(f"no answer to a NOTIFY in {PING_TIMEOUT_SECONDS:g} s")
        return True

    def _heard(self, timeout: float) -> bool:
        woke = any(True for _ in self._connection.notifies(timeout=timeout, stop_after=1))
        if woke:
            self._last_heard = time.monotonic()
            # Several tasks queued at once: one look takes them all (the worker runs every
            # due task before it waits again), so the rest would only wake it for nothing.
            for _ in self._connection.notifies(timeout=0):
                pass
        return woke

    def close(self) -> None:
        self._connection.close()


def listener_for_queue() -> Listener | None:
    """A Listener on the queue's database, or None where it cannot listen (SQLite)."""
    alias = _queue_alias()
    if connections[alias].vendor != "postgresql":
        return None
    return Listener(alias)
