"""The task worker woken by NOTIFY (caregate/delivery/wakeup.py, the db_worker command).

In-process: a queued task on PostgreSQL notifies at its commit only, and never under the
immediate backend. As processes: a real ``manage.py db_worker`` with a 30-second poll
sends a queued email within seconds, still finds a task queued for later by its timed
look, stops at once on SIGTERM while it waits, and ends (for ``make serve`` to start it
again) when its listening connection is cut.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from aiosmtpd.controller import Controller
from django.db import transaction
from django.utils import timezone
from django_tasks_db.management.commands import db_worker as upstream

from caregate.delivery import tasks, wakeup
from caregate.delivery.management.commands import db_worker as ours
from tests.served import Inbox, free_port
from tests.test_two_processes import (
    Deployment,
    drop_database,
    postgres_url,
    recreate_database,
    with_database,
)

ROOT = Path(__file__).resolve().parent.parent
POLL = 30  # seconds: far longer than any wait below, so only a notification explains it


def queue_one(to: str = "someone@example.com") -> None:
    tasks.enqueue("email", "wakeup-test", to, subject="Hello", body="A message 123456")


@pytest.fixture
def database_backend(settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    return settings


@pytest.fixture
def listener(transactional_db) -> Iterator[wakeup.Listener]:
    heard = wakeup.Listener("default")
    yield heard
    heard.close()


def test_a_task_queued_on_postgresql_wakes_a_listener_when_it_commits(database_backend, listener):
    with transaction.atomic():
        queue_one()
        # Not yet: PostgreSQL delivers a NOTIFY when its transaction commits, so the
        # worker never looks before the row is there to be found.
        assert listener.wait(0.3) is False
    assert listener.wait(5) is True
    assert listener.wait(0.3) is False  # one wake-up per queued task, not more


def test_a_rolled_back_task_wakes_nobody(database_backend, listener):
    with pytest.raises(RuntimeError), transaction.atomic():
        queue_one()
        raise RuntimeError("the request failed after queueing")
    assert listener.wait(0.5) is False


def test_several_tasks_at_once_wake_the_worker_once(database_backend, listener):
    for _ in range(3):
        queue_one()  # three transactions: three notifications
    time.sleep(0.5)  # all three have reached the listening connection
    assert listener.wait(5) is True
    # The worker runs every due task before it waits again: the rest were drained.
    assert listener.wait(0.3) is False


def test_a_task_queued_to_run_later_wakes_nobody(database_backend, listener):
    # The stale-delivery sweep every send keeps scheduled, a retry's backoff: a look now
    # would find nothing due, so it would only cost the worker and the database a query.
    tasks.sweep.using(run_after=timezone.now() + timedelta(seconds=60)).enqueue()
    assert listener.wait(0.5) is False
    tasks.sweep.enqueue()  # due now
    assert listener.wait(5) is True


def test_a_quiet_listener_checks_its_connection_and_goes_on(listener, monkeypatch):
    # Quiet for PING_AFTER_SECONDS: it sends a NOTIFY through Django's connection and hears
    # it come back (a dead connection would raise ListenerLost instead: the session-14
    # review's test with a silent relay, tests/security/).
    monkeypatch.setattr(wakeup, "PING_AFTER_SECONDS", 0.0)
    assert listener.wait(0.2) is True
    monkeypatch.setattr(wakeup, "PING_AFTER_SECONDS", 30.0)
    assert listener.wait(0.3) is False  # it just heard: no ping


def test_the_immediate_backend_runs_the_task_in_the_request_and_notifies_nobody(
    settings, listener
):
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    queue_one()
    assert listener.wait(0.5) is False


def test_the_copied_worker_loop_matches_the_installed_library():
    """ours.WakingWorker.run is django-tasks-db 0.13.0's Worker.run with its sleep replaced.
    When an upgrade changes the library's loop, compare it with the copy and record the new
    digest here."""
    source = inspect.getsource(upstream.Worker.run)
    digest = hashlib.sha256(source.encode()).hexdigest()
    assert digest == UPSTREAM_RUN_SHA256, digest
    assert "time.sleep(self.interval)" in source
    assert "self.pause()" in inspect.getsource(ours.WakingWorker.run)


UPSTREAM_RUN_SHA256 = "99b3cb9412f20cf9bb12d4ee0144a6739f033bed62350dab487a616d7cb3c105"


# --- a real worker process --------------------------------------------------------------
@dataclass
class Queue(Deployment):
    """The two-process test's deployment settings (and its ``manage``), with no server."""

    database_url: str = ""

    def queue(self, to: str, *, later_seconds: float = 0) -> None:
        """Queue one email from a process of its own, as a request would."""
        self.manage(
            "shell",
            "-c",
            "import datetime\n"
            "from django.utils import timezone\n"
            "from caregate.delivery import tasks\n"
            f"later = {later_seconds!r}\n"
            "if later:\n"
            "    row = tasks.Delivery.objects.create(channel='email', purpose='wakeup-test',\n"
            f"        destination={to!r}, subject='Hello', body='A message 123456',\n"
            "        token='t-' + str(later))\n"
            "    tasks.deliver.using(run_after=timezone.now() + datetime.timedelta(\n"
            "        seconds=later)).enqueue(row.pk)\n"
            "else:\n"
            f"    tasks.enqueue('email', 'wakeup-test', {to!r}, subject='Hello',\n"
            "        body='A message 123456')\n",
        )

    def worker(self, interval: float = POLL) -> subprocess.Popen:
        process = subprocess.Popen(
            [
                str(ROOT / ".venv/bin/python"),
                "manage.py",
                "db_worker",
                "--interval",
                str(interval),
                "--no-startup-delay",
                "--no-reload",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.wait_listening(process)
        return process

    def listening_backends(self) -> list[int]:
        with psycopg.connect(self.database_url, autocommit=True) as probe:
            rows = probe.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query = %s",
                (f"LISTEN {wakeup.CHANNEL}",),
            ).fetchall()
        return [pid for (pid,) in rows]

    def wait_listening(self, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + 60  # Django's start on a busy machine
        while time.monotonic() < deadline:
            assert process.poll() is None, process.stdout.read().decode()
            if self.listening_backends():
                time.sleep(1)  # and past its first look at the (empty) queue
                return
            time.sleep(0.2)
        raise AssertionError("the worker never listened")

    def wait_mail(self, to: str, seconds: float) -> float:
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            if self.inbox.to(to):
                return time.monotonic() - start
            time.sleep(0.05)
        raise AssertionError(f"no email to {to} within {seconds} s")


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise


@contextmanager
def queue_on(suffix: str, inbox: Inbox) -> Iterator[Queue]:
    """A migrated database of its own (``<test database>_<suffix>``) and an SMTP server
    answered by ``inbox``, for worker processes and manage.py commands."""
    url = postgres_url()
    name = f"{urlsplit(url).path.lstrip('/') or 'caregate'}_{suffix}"
    recreate_database(url, name)
    server = Controller(inbox, hostname="127.0.0.1", port=free_port())
    server.start()
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "DATABASE_URL": with_database(url, name),
            "CAREGATE_TASKS_BACKEND": "database",
            "CAREGATE_EMAIL_BACKEND": "smtp",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(server.port),
            "CAREGATE_CACHE_PREFIX": f"{suffix}-{secrets.token_hex(4)}",
            "CAREGATE_LOG_LEVEL": "WARNING",
        }
    )
    setup = Queue(env=env, database_url=with_database(url, name), inbox=inbox)
    try:
        setup.manage("migrate", "--noinput", "--verbosity", "0")
        yield setup
    finally:
        server.stop()
        drop_database(url, name)


@pytest.fixture(scope="module")
def queue() -> Iterator[Queue]:
    with queue_on("wakeup", Inbox()) as setup:
        yield setup


def test_a_queued_email_is_sent_at_once_though_the_worker_polls_every_30_seconds(queue):
    worker = queue.worker()
    try:
        queue.queue("at-once@example.com")
        # The shell has committed and ended; without the wake-up the worker would
        # sleep out the rest of its 30 seconds.
        took = queue.wait_mail("at-once@example.com", seconds=10)
        assert took < 10
    finally:
        assert stop(worker) == 0


def test_a_task_queued_for_later_is_still_found_by_the_timed_look(queue):
    worker = queue.worker(interval=1)
    try:
        queue.queue("later@example.com", later_seconds=2)
        # Not due when queued, so it notified nobody: the timed look finds it.
        queue.wait_mail("later@example.com", seconds=20)
    finally:
        assert stop(worker) == 0


def test_sigterm_stops_a_waiting_worker_at_once(queue):
    worker = queue.worker()
    started = time.monotonic()
    assert stop(worker) == 0
    assert time.monotonic() - started < 10  # not the rest of a 30-second wait
    assert queue.listening_backends() == []


def test_a_cut_listening_connection_ends_the_worker_so_it_is_started_again(queue):
    worker = queue.worker()
    try:
        (backend,) = queue.listening_backends()
        with psycopg.connect(queue.database_url, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (backend,))
        # deploy/serve.sh starts a worker that ended with a failure again after 2 s.
        assert worker.wait(timeout=20) != 0
    finally:
        if worker.poll() is None:
            stop(worker)
