"""``manage.py db_worker``: django-tasks-db's worker, woken by NOTIFY (delivery/wakeup.py).

This command shadows django-tasks-db's own (``caregate.delivery`` comes before
``django_tasks_db`` in INSTALLED_APPS), with the same options and the same claim and run
of each task. One thing differs: between two looks at an empty queue the worker waits for
a notification, at most ``--interval`` seconds, instead of sleeping that long, so a code
is sent as soon as the request that queued it commits. On SQLite, which cannot LISTEN, it
sleeps as before.

The loop below is django-tasks-db 0.13.0's ``Worker.run`` with its sleep replaced: the
library has no hook for the wait. ``tests/test_delivery_wakeup.py`` fails when the
library's loop changes, so an upgrade is compared with this copy.
"""

from __future__ import annotations

import logging
import os
import random
import time
from typing import Any

from django.core.management.base import CommandError
from django.db import close_old_connections
from django.db.utils import OperationalError
from django.utils.autoreload import DJANGO_AUTORELOAD_ENV, run_with_reloader
from django_tasks_db.management.commands import db_worker as upstream
from django_tasks_db.models import DBTaskResult
from django_tasks_db.utils import exclusive_transaction, is_locked_database_exception

from caregate.delivery.wakeup import Listener, listener_for_queue

logger = logging.getLogger("django_tasks_db")


class WakingWorker(upstream.Worker):
    """django-tasks-db's Worker whose idle wait ends early when a task is queued."""

    def __init__(self, *, listener: Listener | None, **options: Any) -> None:
        super().__init__(**options)
        self.listener = listener

    def pause(self) -> None:
        if self.listener is None:
            time.sleep(self.interval)
        else:
            self.listener.wait(self.interval)

    def run(self) -> None:
        logger.info(
            "Starting worker worker_id=%s queues=%s", self.worker_id, ",".join(self.queue_names)
        )
        if self.startup_delay and self.interval:
            # Add a random small delay before starting to avoid a thundering herd
            time.sleep(random.random())  # noqa: S311 - not a secret
        while self.running:
            close_old_connections()
            tasks = DBTaskResult.objects.ready().filter(backend_name=self.backend_name)
            if not self.process_all_queues:
                tasks = tasks.filter(queue_name__in=self.queue_names)
            if self.excluded_queue_names:
                tasks = tasks.exclude(queue_name__in=self.excluded_queue_names)
            with exclusive_transaction(tasks.db):
                try:
                    task_result = tasks.get_locked()
                    retrieved_task_result = True
                    if task_result is not None:
                        task_result.claim(self.worker_id)
                except OperationalError as e:
                    retrieved_task_result = False
                    if is_locked_database_exception(e):
                        task_result = None
                    else:
                        raise
            if task_result is not None:
                self.run_task(task_result)
            if self.batch and retrieved_task_result and task_result is None:
                logger.info(
                    "No more tasks to run for worker_id=%s - exiting gracefully.", self.worker_id
                )
                return None
            if self.max_tasks is not None and self._run_tasks >= self.max_tasks:
                logger.info(
                    "Run maximum tasks (%d) on worker=%s - exiting gracefully.",
                    self._run_tasks,
                    self.worker_id,
                )
                return None
            close_old_connections()
            if self.running and not task_result:
                self.pause()  # upstream: time.sleep(self.interval)
        return None


class Command(upstream.Command):
    help = upstream.Command.help + " Woken at once by PostgreSQL NOTIFY when a task is queued."

    def handle(
        self,
        *,
        verbosity: int,
        queue_name: str,
        interval: float,
        batch: bool,
        backend_name: str,
        startup_delay: bool,
        reload: bool,
        max_tasks: int | None,
        worker_id: str,
        exclude_queues: str,
        **options: Any,
    ) -> None:
        self.configure_logging(verbosity)
        if reload and batch:
            logger.warning(
                "Warning: --reload and --batch cannot be specified together. Disabling autoreload."
            )
            reload = False
        queue_names = queue_name.split(",")
        excluded_queue_names = exclude_queues.split(",") if exclude_queues else []
        if excluded_queue_names and "*" not in queue_names:
            raise CommandError("--exclude-queues can only be used with --queue-name=*")
        # A batch run ends when the queue is empty: it never waits, so it never listens;
        # with --reload only the child process that runs the worker does.
        watcher = reload and os.environ.get(DJANGO_AUTORELOAD_ENV) != "true"
        listener = None if batch or watcher else listener_for_queue()
        worker = WakingWorker(
            listener=listener,
            queue_names=queue_names,
            interval=interval,
            batch=batch,
            backend_name=backend_name,
            startup_delay=startup_delay,
            max_tasks=max_tasks,
            worker_id=worker_id,
            excluded_queue_names=excluded_queue_names,
        )
        try:
            if reload:
                if os.environ.get(DJANGO_AUTORELOAD_ENV) == "true":
                    worker.configure_signals()
                run_with_reloader(worker.run)
            else:
                worker.configure_signals()
                worker.run()
        finally:
            if listener is not None:
                listener.close()
