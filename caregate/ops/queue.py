"""The background task queue (django-tasks' database backend), as seen by the probes."""

from __future__ import annotations

from dataclasses import dataclass

from django.apps import apps
from django.db.models import Min, QuerySet
from django.utils import timezone

TASKS_DB_APP = "django_tasks_db"
TASKS_DB_LABEL = "django_tasks_database"


def installed() -> bool:
    """Whether the queue lives in this database (django-tasks-db is installed)."""
    return apps.is_installed(TASKS_DB_APP)


def task_results() -> QuerySet:
    return apps.get_model(TASKS_DB_LABEL, "DBTaskResult").objects.all()


@dataclass(frozen=True)
class Backlog:
    """Tasks due and not yet taken by a worker, and how long the oldest has waited."""

    waiting: int
    oldest_seconds: float


def backlog() -> Backlog:
    # ready(): due now (run_after passed) and not started; a growing count or an old
    # oldest task means no worker is running, or it cannot keep up.
    due = task_results().ready()
    summary = due.aggregate(oldest=Min("enqueued_at"))
    oldest = summary["oldest"]
    age = (timezone.now() - oldest).total_seconds() if oldest is not None else 0.0
    return Backlog(waiting=due.count(), oldest_seconds=max(age, 0.0))
