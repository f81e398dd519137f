"""Registration Error's Reset, as an attacker who measures it: the request's SQL (count and
shape) and its page are the same for an unknown username, an account that finished its
registration and one with a registration in progress. The link is issued by the worker."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django_tasks_db.models import DBTaskResult

from caregate.audit.models import AuditEvent
from caregate.delivery.models import Delivery, OutboxMessage
from caregate.verification.models import EmailLink
from tests.test_delivery_tasks import run_worker

pytestmark = pytest.mark.django_db

RESET = "/registration-error/reset/"
TASK = "caregate.flows.registration_error.send_reset_link"
LITERALS = [
    (re.compile(r"'(?:[^']|'')*'(?:::\w+)?"), "?"),  # strings (and their ::casts)
    (re.compile(r"\b\d+(?:\.\d+)?\b"), "?"),  # numbers, savepoint serials
    (re.compile(r'"s\w+_x\?"'), '"savepoint"'),  # SAVEPOINT "s1403…_x51"
    (re.compile(r"\bNULL\b"), "?"),  # no account: a NULL where an id would be
]


def shape(sql: str) -> str:
    for pattern, replacement in LITERALS:
        sql = pattern.sub(replacement, sql)
    return sql


@pytest.fixture
def database_backend(settings):
    """Production's set-up (it refuses the immediate backend): the worker sends."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    return settings


@pytest.fixture
def usernames(make_user) -> dict[str, str]:
    in_progress = make_user(mfa="none")
    registered = make_user(mfa="email")
    return {
        "unknown": "no-such-user",
        "registered": registered.username,
        "in progress": in_progress.username,
    }


def reset(username: str) -> tuple[list[str], str]:
    client = Client()
    client.get(RESET)
    with CaptureQueriesContext(connection) as captured:
        page = client.post(RESET, {"username": username})
    assert page.status_code == 200
    return [shape(query["sql"]) for query in captured.captured_queries], page.content.decode()


def test_the_request_does_the_same_sql_and_answers_the_same_for_any_username(
    database_backend, usernames
):
    reset("warm-up")  # first-request work (e.g. caches) out of the comparison
    seen = {kind: reset(username) for kind, username in usernames.items()}
    statements = {kind: queries for kind, (queries, _) in seen.items()}
    pages = {kind: page for kind, (_, page) in seen.items()}
    assert statements["unknown"] == statements["registered"] == statements["in progress"], (
        statements
    )
    assert pages["unknown"] == pages["registered"] == pages["in progress"]
    assert "If that username has a registration in progress" in pages["unknown"]
    # No link, no email row inside any of these requests: only the task for the worker.
    assert not EmailLink.objects.exists() and not Delivery.objects.exists()
    assert DBTaskResult.objects.filter(task_path=TASK).count() == 4


def test_the_worker_issues_the_link_only_for_a_registration_in_progress(
    database_backend, usernames, make_user
):
    for username in usernames.values():
        reset(username)
    run_worker()
    [link] = EmailLink.objects.all()
    pending = link.user
    assert pending.username == usernames["in progress"]
    [message] = OutboxMessage.objects.all()
    assert message.to == pending.email and "/registration-link/" in message.body
    assert Delivery.objects.get().status == "sent"
    outcomes = set(AuditEvent.objects.filter(event="registration.reset").values_list("outcome"))
    assert outcomes == {("no-match",), ("sent",)}


def test_a_registration_finished_before_the_worker_runs_gets_no_link(database_backend, make_user):
    pending = make_user(mfa="none")
    reset(pending.username)
    pending.mfa_method = "email"
    pending.save(update_fields=["mfa_method"])
    run_worker()
    assert not EmailLink.objects.exists() and not OutboxMessage.objects.exists()


def test_the_task_carries_an_account_id_never_a_link(database_backend, make_user):
    pending = make_user(mfa="none")
    reset(pending.username)
    reset("no-such-user")
    args = [row.args_kwargs for row in DBTaskResult.objects.filter(task_path=TASK)]
    assert sorted(args, key=str) == sorted(
        [{"args": [pending.pk], "kwargs": {}}, {"args": [None], "kwargs": {}}], key=str
    )


def test_the_immediate_backend_still_emails_the_link_at_once(make_user):
    pending = make_user(mfa="none")
    reset(pending.username)
    assert OutboxMessage.objects.filter(to=pending.email).count() == 1
    assert AuditEvent.objects.filter(event="registration.reset", outcome="sent").exists()
