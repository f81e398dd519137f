"""A step's change and its audit event are written together, or neither is (issue #10).

The code check, the sign-in's writes and their audit events share one transaction, so a
failure in between (the audit log unwritable, the database gone mid-request) never leaves
a code used up without a record, nor a signed-in session nobody audited. The audit event
of a code step names the flow's account from the flow itself (no read of the user).
"""

from __future__ import annotations

from unittest import mock

import pytest
from django.contrib.auth import SESSION_KEY
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext

from caregate.accounts.models import SignedInSession, User
from caregate.audit.log import record as real_record
from caregate.audit.models import AuditEvent
from caregate.verification.models import VerificationCode
from tests.test_email_login import EMAIL_CODE, to_code_stage

pytestmark = pytest.mark.django_db


def _fail_on(event: str):
    """An audit append that breaks for one event and works for the others."""

    def record(name: str, *args: object, **kwargs: object) -> object:
        if name == event:
            raise DatabaseError("the audit log cannot be written")
        return real_record(name, *args, **kwargs)

    return record


def test_a_code_is_not_used_up_when_its_audit_event_cannot_be_written(
    client, email_user, outbox_code
):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    code = outbox_code(email_user.email)
    with (
        mock.patch("caregate.flows.events.record", _fail_on("code.verify")),
        pytest.raises(DatabaseError),
    ):
        client.post(EMAIL_CODE, {"action": "verify", "code": code})
    issued = VerificationCode.objects.get()
    assert issued.used_at is None and issued.attempts == 0
    assert not AuditEvent.objects.filter(event="code.verify").exists()
    # The same code still works once the log can be written again, and is recorded.
    response = client.post(EMAIL_CODE, {"action": "verify", "code": code})
    assert "Continue" in response.content.decode()
    assert AuditEvent.objects.filter(event="code.verify", outcome="ok").count() == 1


def test_a_wrong_code_counts_only_with_its_audit_event(client, email_user, outbox_code):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    typo = f"{(int(outbox_code(email_user.email)) + 1) % 1_000_000:06d}"
    with (
        mock.patch("caregate.flows.events.record", _fail_on("code.verify")),
        pytest.raises(DatabaseError),
    ):
        client.post(EMAIL_CODE, {"action": "verify", "code": typo})
    assert VerificationCode.objects.get().attempts == 0


def test_no_session_is_registered_when_the_sign_in_cannot_be_audited(
    client, email_user, outbox_code
):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    client.post(EMAIL_CODE, {"action": "verify", "code": outbox_code(email_user.email)})
    with (
        mock.patch("caregate.flows.signin.record", _fail_on("signin")),
        pytest.raises(DatabaseError),
    ):
        client.post(EMAIL_CODE, {"action": "continue"})
    assert not SignedInSession.objects.exists()
    email_user.refresh_from_db()
    assert email_user.last_login is None
    assert SESSION_KEY not in client.session
    # The flow was finished before the sign-in (it cannot be replayed): start again.
    response = client.post(EMAIL_CODE, {"action": "continue"})
    assert response.status_code == 302 and response.url != "/home/"


def test_code_steps_name_the_account_without_reading_it(client, email_user, outbox_code):
    to_code_stage(client, email_user)
    with CaptureQueriesContext(connection) as queries:
        client.post(EMAIL_CODE, {"action": "send"})
        client.post(EMAIL_CODE, {"action": "verify", "code": outbox_code(email_user.email)})
    assert not [q for q in queries.captured_queries if '"accounts_user"' in q["sql"]]
    steps = AuditEvent.objects.filter(event__in=["code.send", "code.verify"])
    assert {(e.user_id_snapshot, e.username) for e in steps} == {
        (email_user.pk, email_user.username)
    }


def test_a_flow_without_the_username_still_names_the_account(client, email_user, outbox_code):
    """Flow rows written before the username was kept beside the id (an upgrade with
    sign-ins in progress) are audited as before, from the account."""
    to_code_stage(client, email_user)
    from caregate.flows.models import FlowInstance

    row = FlowInstance.objects.get()
    row.state["data"].pop("username")
    row.save(update_fields=["state"])
    client.post(EMAIL_CODE, {"action": "send"})
    event = AuditEvent.objects.get(event="code.send")
    assert (event.user_id_snapshot, event.username) == (email_user.pk, email_user.username)
    assert User.objects.filter(pk=email_user.pk).exists()
