"""Production refuses to start with a tasks backend that sends inside the request (or
never): background delivery must run in the worker (caregate/security/checks.py,
caregate/delivery/apps.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from caregate.security.checks import tasks_backend_problem
from tests.test_settings import ROOT, clean_env, manage, production_env

IMMEDIATE = "django_tasks.backends.immediate.ImmediateBackend"
REFUSED = "tasks backend cannot be used in production mode"


def start_web_process(**env: str) -> subprocess.CompletedProcess:
    """What gunicorn does first: load caregate.wsgi (settings, then every app's ready())."""
    return subprocess.run(
        [sys.executable, "-c", "import caregate.wsgi"],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("backend", "refused"),
    [
        (IMMEDIATE, True),
        ("django_tasks.backends.dummy.DummyBackend", True),
        ("django.tasks.backends.immediate.ImmediateBackend", True),
        ("django_tasks_db.DatabaseBackend", False),
        ("some_queue.RedisBackend", False),  # any backend with a worker of its own
    ],
)
def test_backends_that_do_not_send_from_a_worker_are_refused(backend, refused):
    problem = tasks_backend_problem({"default": {"BACKEND": backend}})
    assert bool(problem) is refused
    if refused:
        assert REFUSED in problem and "CAREGATE_TASKS_BACKEND=database" in problem


def test_production_with_the_immediate_backend_refuses_to_start():
    result = manage("check", **production_env(CAREGATE_TASKS_BACKEND="immediate"))
    assert result.returncode != 0
    assert f"the ImmediateBackend {REFUSED}" in result.stderr


def test_the_web_process_refuses_it_too_not_only_manage_py():
    refused = start_web_process(**production_env(CAREGATE_TASKS_BACKEND="immediate"))
    assert refused.returncode != 0 and REFUSED in refused.stderr
    started = start_web_process(**production_env())  # the database backend, the default
    assert started.returncode == 0, started.stderr


def test_production_with_the_database_backend_and_development_with_immediate_start():
    assert manage("check", **production_env(CAREGATE_TASKS_BACKEND="database")).returncode == 0
    development = manage("check", CAREGATE_TASKS_BACKEND="immediate")
    assert development.returncode == 0, development.stderr
