"""Attacker review (session 11): Forgot password's Send does different SQL for an address
with an account and one without.

For an address without an account the request also blanks the code's hash (an UPDATE) and
appends a ``code.withheld`` audit event (lock the head, insert, move the head): four more
statements and a commit inside the request: an answer that differs in its work (and so,
with enough samples, in its time) by whether the address has an account. The page is the
same; the work is not (cf. Registration Error's Reset, made today to do the same SQL for
every username, and the module docstring of flows/stages/account_email.py, which promises
"the page and the work are the same")."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from tests.test_forgot_password import begin, send
from tests.test_registration_error_reset import shape

pytestmark = pytest.mark.django_db


@pytest.fixture
def database_backend(settings):
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    return settings


def sent(email: str) -> list[str]:
    client = Client(REMOTE_ADDR="203.0.113.9")
    begin(client)
    with CaptureQueriesContext(connection) as captured:
        page = send(client, email)
    assert page.status_code == 200
    # Savepoint names carry a per-connection serial: not a difference an attacker sees.
    return [
        re.sub(r'"s\d+_x\d+"', '"savepoint"', shape(q["sql"])) for q in captured.captured_queries
    ]


def test_send_does_the_same_sql_for_a_registered_and_an_unknown_address(
    database_backend, make_user
):
    known = make_user(email="known@clinic.example")
    sent("warm@clinic.example")
    registered = sent(known.email)
    unknown = sent("nobody@clinic.example")
    assert registered == unknown, "\n".join(["registered:", *registered, "", "unknown:", *unknown])
