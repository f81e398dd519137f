"""The append-only, hash-chained audit log and `manage.py verify_audit_log`."""

from __future__ import annotations

import importlib
from contextlib import contextmanager
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory, override_settings
from django.test.utils import CaptureQueriesContext

from caregate.audit import log
from caregate.audit.log import (
    GENESIS,
    ChainBreak,
    chain_hash,
    head_mac,
    make_checkpoint,
    read_checkpoint,
    record,
    verify_chain,
)
from caregate.audit.models import AppendOnlyError, AuditEvent, AuditHead

pytestmark = pytest.mark.django_db

TRIGGER = "audit_event_append_only"


@contextmanager
def trigger_disabled():
    """Tamper as someone with database-owner rights would: switch the trigger off first."""
    assert connection.vendor == "postgresql", "the tests run on PostgreSQL"
    with connection.cursor() as cursor:
        cursor.execute(f"ALTER TABLE audit_auditevent DISABLE TRIGGER {TRIGGER}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE audit_auditevent ENABLE TRIGGER {TRIGGER}")


def raw(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params or [])


def five_events() -> list[AuditEvent]:
    return [record("test.event", f"outcome-{n}", username=f"user{n}", n=n) for n in range(5)]


def verify_command() -> str:
    out = StringIO()
    call_command("verify_audit_log", stdout=out)
    return out.getvalue()


# --- writing ----------------------------------------------------------------------------


def test_record_writes_a_linked_event(email_user):
    request = RequestFactory().get("/", HTTP_USER_AGENT="TestBrowser/1.0")
    first = record("signin", "success", request=request, user=email_user, flow="email-login")
    second = record("signout", "success", username="someone")
    assert (first.pk, second.pk) == (1, 2)
    assert first.prev_hash == GENESIS
    assert second.prev_hash == first.hash
    assert first.hash == chain_hash(GENESIS, first)
    stored = AuditEvent.objects.get(pk=1)
    assert stored.user_id_snapshot == email_user.pk
    assert stored.username == email_user.username
    assert stored.client_ip == "127.0.0.1"
    assert stored.user_agent == "TestBrowser/1.0"
    assert stored.flow == "email-login"
    head = AuditHead.objects.get(pk=1)
    assert (head.last_id, head.last_hash, head.count) == (2, second.hash, 2)
    assert head.mac == head_mac(2, second.hash, 2)


def test_head_mac_is_keyed_and_covers_every_field():
    event = record("test.event", "ok")
    mac = head_mac(1, event.hash, 1)
    assert mac != head_mac(0, event.hash, 1)
    assert mac != head_mac(1, GENESIS, 1)
    assert mac != head_mac(1, event.hash, 2)
    with override_settings(SECRET_KEY="a-different-key-" + "y" * 40):
        assert head_mac(1, event.hash, 1) != mac


def test_one_head_update_per_event():
    record("first", "ok")
    with CaptureQueriesContext(connection) as queries:
        record("second", "ok")
    sql = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    # Lock the head, insert the event, update the head: signing it adds no query.
    assert [s.split()[0] for s in sql] == ["SELECT", "INSERT", "UPDATE"]
    assert "audit_audithead" in sql[2]


def test_detail_never_keeps_secrets():
    event = record(
        "test.event",
        "ok",
        password="Hunter2-password",
        code="123456",
        token="tok-abc",
        secret="s3cret",
        channel="email",
    )
    assert event.detail == {"channel": "email"}
    stored = AuditEvent.objects.values().get(pk=event.pk)
    assert stored["detail"] == {"channel": "email"}
    for value in ["Hunter2-password", "123456", "tok-abc", "s3cret"]:
        assert value not in repr(stored)


def test_detail_secret_keys_are_dropped_whatever_their_case():
    event = record("test.event", "ok", Password="Hunter2-password", CODE="123456", Token="t")
    assert event.detail == {}
    assert "Hunter2-password" not in repr(AuditEvent.objects.values().get(pk=event.pk))


def test_detail_keys_that_name_a_secret_are_dropped():
    event = record(
        "test.event", "ok", new_password="x1", reset_token="x2", api_secret="x3", flow_step=1
    )
    assert event.detail == {"flow_step": 1}


def test_the_hash_is_keyed():
    event = record("test.event", "ok")
    with override_settings(SECRET_KEY="a-different-key-" + "y" * 40):
        assert chain_hash(GENESIS, event) != event.hash


# --- verifying --------------------------------------------------------------------------


def test_empty_log_is_intact():
    assert verify_chain() == (0, None)
    assert "Audit log intact: 0 events verified." in verify_command()


def test_intact_chain_passes():
    five_events()
    assert verify_chain() == (5, None)
    assert "Audit log intact: 5 events verified." in verify_command()


def test_changed_row_is_detected():
    five_events()
    with trigger_disabled():
        raw("UPDATE audit_auditevent SET outcome = 'success' WHERE id = 3")
    checked, broken = verify_chain()
    assert checked == 2
    assert broken == ChainBreak(3, "its content does not match its hash")
    with pytest.raises(CommandError, match=r"event #3\b"):
        verify_command()


def test_changed_detail_is_detected():
    five_events()
    with trigger_disabled():
        raw("""UPDATE audit_auditevent SET detail = '{"n": 99}' WHERE id = 2""")
    assert verify_chain()[1].event_id == 2


def test_rehashed_row_without_the_key_is_detected():
    """Someone who edits a row and recomputes its hash without the secret key is caught."""
    events = five_events()
    forged = AuditEvent.objects.get(pk=3)
    forged.outcome = "success"
    with override_settings(SECRET_KEY="attacker-guess-" + "z" * 40):
        fake = chain_hash(events[1].hash, forged)
    with trigger_disabled():
        raw(
            "UPDATE audit_auditevent SET outcome = 'success', hash = %s WHERE id = 3",
            [fake],
        )
    assert verify_chain() == (2, ChainBreak(3, "its content does not match its hash"))


def test_broken_link_is_detected():
    five_events()
    with trigger_disabled():
        raw("UPDATE audit_auditevent SET prev_hash = %s WHERE id = 4", [GENESIS])
    assert verify_chain() == (3, ChainBreak(4, "its link to the previous event is wrong"))


def test_deleted_middle_row_is_detected():
    five_events()
    with trigger_disabled():
        raw("DELETE FROM audit_auditevent WHERE id = 3")
    assert verify_chain() == (2, ChainBreak(3, "event #3 is missing"))
    with pytest.raises(CommandError, match=r"broken at event #3: event #3 is missing"):
        verify_command()


def test_deleted_first_row_is_detected():
    five_events()
    with trigger_disabled():
        raw("DELETE FROM audit_auditevent WHERE id = 1")
    assert verify_chain() == (0, ChainBreak(1, "event #1 is missing"))


def test_deleted_last_row_is_detected():
    five_events()
    with trigger_disabled():
        raw("DELETE FROM audit_auditevent WHERE id = 5")
    checked, broken = verify_chain()
    assert checked == 4
    assert broken is not None and broken.event_id == 5
    assert "missing" in broken.reason
    with pytest.raises(CommandError, match=r"event #5\b"):
        verify_command()


def test_deleted_last_rows_are_detected():
    five_events()
    with trigger_disabled():
        raw("DELETE FROM audit_auditevent WHERE id >= 4")
    assert verify_chain()[1].event_id == 4


def test_appended_forgery_is_detected():
    events = five_events()
    with trigger_disabled():
        raw(
            "INSERT INTO audit_auditevent (id, created_at, event, outcome, username, client_ip,"
            " user_agent, flow, detail, prev_hash, hash)"
            " VALUES (6, now(), 'signin', 'success', 'mallory', '', '', '', '{}', %s, %s)",
            [events[-1].hash, "f" * 64],
        )
    assert verify_chain()[1].event_id == 6


def test_event_appended_during_verification_is_not_a_break(monkeypatch):
    """The head is read first: an append committed while the events are read is one more
    chain-checked event, not a head the walk never reached."""
    five_events()
    original = log._events

    def events_with_a_concurrent_append():
        record("concurrent", "ok")
        return original()

    monkeypatch.setattr(log, "_events", events_with_a_concurrent_append)
    assert verify_chain() == (6, None)


def test_chain_goes_on_after_verification():
    five_events()
    verify_chain()
    record("later", "ok")
    assert verify_chain() == (6, None)


# --- append-only ------------------------------------------------------------------------


def test_model_refuses_to_change_an_event():
    event = record("test.event", "failure")
    event.outcome = "success"
    with pytest.raises(AppendOnlyError):
        event.save()
    stored = AuditEvent.objects.get(pk=event.pk)
    stored.outcome = "success"
    with pytest.raises(AppendOnlyError):
        stored.save()
    assert AuditEvent.objects.get(pk=event.pk).outcome == "failure"


def test_model_refuses_to_delete_an_event():
    event = record("test.event", "ok")
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.get(pk=event.pk).delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_database_trigger_refuses_raw_update_and_delete():
    assert connection.vendor == "postgresql"
    five_events()
    statements = [
        "UPDATE audit_auditevent SET outcome = 'success' WHERE id = 2",
        "DELETE FROM audit_auditevent WHERE id = 2",
        "DELETE FROM audit_auditevent",
    ]
    for sql in statements:
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            raw(sql)
    # Bulk ORM paths that bypass the model's save() and delete() are refused too.
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=2).update(outcome="success")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=2).delete()
    assert AuditEvent.objects.count() == 5
    assert verify_chain() == (5, None)


def test_trigger_is_back_after_tampering_helper():
    five_events()
    with trigger_disabled():
        raw("UPDATE audit_auditevent SET outcome = 'x' WHERE id = 1")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw("UPDATE audit_auditevent SET outcome = 'y' WHERE id = 1")


# --- checkpoints ------------------------------------------------------------------------


def checkpoint_command() -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("verify_audit_log", "--checkpoint", stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_checkpoint_prints_a_signed_head_alone_on_stdout():
    events = five_events()
    token, note = checkpoint_command()
    assert "\n" not in token
    checkpoint = read_checkpoint(token)
    assert (checkpoint.last_id, checkpoint.last_hash, checkpoint.count) == (5, events[-1].hash, 5)
    assert "checkpoint of event #5 (5 events" in note and events[-1].hash in note


def test_log_that_grew_after_a_checkpoint_passes_it():
    five_events()
    token, _ = checkpoint_command()
    record("later", "ok")
    out = StringIO()
    call_command("verify_audit_log", "--against", token, stdout=out)
    assert "Audit log intact: 6 events verified; it still holds checkpoint event #5" in (
        out.getvalue()
    )


def test_checkpoint_of_an_empty_log():
    token, checkpoint = make_checkpoint()
    assert (checkpoint.last_id, checkpoint.count) == (0, 0)
    five_events()
    out = StringIO()
    call_command("verify_audit_log", "--against", token, stdout=out)
    assert "5 events verified" in out.getvalue()


def test_checkpoint_and_against_are_exclusive():
    with pytest.raises(CommandError):
        call_command("verify_audit_log", "--checkpoint", "--against", "x")


def test_migration_signs_an_existing_head():
    """Installations upgraded from an unsigned head: migration 0003 signs the head row."""
    from django.apps import apps

    events = five_events()
    raw("UPDATE audit_audithead SET mac = ''")
    assert verify_chain()[1] is not None
    migration = importlib.import_module("caregate.audit.migrations.0003_head_mac")
    migration.sign_head(apps, None)
    assert AuditHead.objects.get(pk=1).mac == head_mac(5, events[-1].hash, 5)
    assert verify_chain() == (5, None)


def test_the_append_writes_every_column_of_an_event():
    """record() writes its INSERT by hand: a column added to AuditEvent must be added there
    (and to the chain's content) too, or this fails."""
    from caregate.audit.log import EVENT_COLUMNS

    assert list(EVENT_COLUMNS) == [f.column for f in AuditEvent._meta.concrete_fields]
