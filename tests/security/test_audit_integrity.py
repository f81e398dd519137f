"""Attacks on the audit log's integrity: truncation, a forged head, forged checkpoints.

The attacker has database-owner rights (switches the append-only trigger off, edits any
row). Without the secret key every attack fails `verify_audit_log`; with the key (stolen
later), cutting back or rewriting the log still fails `verify_audit_log --against` a
checkpoint the operator kept elsewhere.
"""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core import signing
from django.core.management import CommandError, call_command
from django.test import override_settings

from caregate.audit.log import chain_hash, head_mac, record, verify_chain
from caregate.audit.models import AuditEvent, AuditHead
from tests.test_audit import five_events, raw, trigger_disabled

pytestmark = pytest.mark.django_db

OTHER_KEY = "attacker-guess-" + "k" * 40


def verify(*args: str) -> str:
    out = StringIO()
    call_command("verify_audit_log", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def checkpoint() -> str:
    return verify("--checkpoint").strip()


def cut_tail_after(last_kept: int) -> None:
    with trigger_disabled():
        raw("DELETE FROM audit_auditevent WHERE id > %s", [last_kept])


def move_head(last_id: int, last_hash: str, count: int, mac: str) -> None:
    raw(
        "UPDATE audit_audithead SET last_id = %s, last_hash = %s, count = %s, mac = %s",
        [last_id, last_hash, count, mac],
    )


def rechain_from(first: int) -> None:
    """Recompute every hash from event `first` on with the real key, and re-sign the head:
    what an attacker who holds the secret key can do after editing or deleting events."""
    prev = AuditEvent.objects.get(pk=first - 1).hash
    with trigger_disabled():
        for event in AuditEvent.objects.filter(pk__gte=first).order_by("id"):
            event.prev_hash = prev
            event.hash = chain_hash(prev, event)
            raw(
                "UPDATE audit_auditevent SET prev_hash = %s, hash = %s WHERE id = %s",
                [event.prev_hash, event.hash, event.pk],
            )
            prev = event.hash
    last = AuditEvent.objects.order_by("-id").first()
    move_head(last.pk, last.hash, last.pk, head_mac(last.pk, last.hash, last.pk))


# --- without the key: verify_audit_log alone catches it ---------------------------------


def test_deleting_the_tail_and_moving_the_head_back_is_detected():
    events = five_events()
    cut_tail_after(3)
    # The old head's MAC is kept: the attacker cannot compute a new one.
    head = AuditHead.objects.get(pk=1)
    move_head(3, events[2].hash, 3, head.mac)
    checked, broken = verify_chain()
    assert checked == 3
    assert broken is not None and broken.event_id is None
    assert "head record was changed without the secret key" in broken.reason
    with pytest.raises(CommandError, match="broken at its head"):
        verify()


def test_head_resigned_with_a_guessed_key_is_detected():
    events = five_events()
    cut_tail_after(3)
    with override_settings(SECRET_KEY=OTHER_KEY):
        forged_mac = head_mac(3, events[2].hash, 3)
    move_head(3, events[2].hash, 3, forged_mac)
    assert verify_chain()[1].event_id is None
    with pytest.raises(CommandError, match="without the secret key"):
        verify()


def test_head_row_deleted_with_the_tail_is_detected():
    five_events()
    cut_tail_after(2)
    raw("DELETE FROM audit_audithead")
    broken = verify_chain()[1]
    assert broken is not None and broken.reason == "the head record is missing"


def test_head_count_edited_alone_is_detected():
    five_events()
    raw("UPDATE audit_audithead SET count = 9")
    assert verify_chain()[1].event_id is None


def test_edited_event_without_the_key_is_detected_despite_a_checkpoint():
    five_events()
    token = checkpoint()
    with trigger_disabled():
        raw("UPDATE audit_auditevent SET outcome = 'success' WHERE id = 2")
    with pytest.raises(CommandError, match=r"broken at event #2: its content does not match"):
        verify("--against", token)


# --- forged checkpoints -----------------------------------------------------------------


def test_checkpoint_signed_with_another_key_is_refused():
    events = five_events()
    cut_tail_after(3)
    rechain_from(3)
    with override_settings(SECRET_KEY=OTHER_KEY):
        forged = signing.dumps(
            {"id": 3, "hash": events[2].hash, "count": 3, "at": "2026-01-01T00:00:00+00:00"},
            salt="caregate.audit.checkpoint",
        )
    with pytest.raises(CommandError, match="Checkpoint refused"):
        verify("--against", forged)


def test_checkpoint_with_an_edited_payload_is_refused():
    """Keep the signature, swap the payload for one that vouches for an earlier event."""
    events = five_events()
    token = checkpoint()
    claim = {"id": 3, "hash": events[2].hash, "count": 3, "at": "2026-01-01T00:00:00+00:00"}
    forged_payload = signing.b64_encode(json.dumps(claim, separators=(",", ":")).encode())
    forged = ":".join([forged_payload.decode(), *token.split(":")[1:]])
    assert forged != token
    with pytest.raises(CommandError, match="Checkpoint refused"):
        verify("--against", forged)


@pytest.mark.parametrize("token", ["garbage", "a:b:c", " "])
def test_malformed_checkpoint_is_refused(token: str):
    five_events()
    with pytest.raises(CommandError, match="Checkpoint refused"):
        verify("--against", token)


def test_token_signed_for_another_purpose_is_refused():
    five_events()
    other = signing.dumps({"id": 1, "hash": "0" * 64, "count": 1, "at": "2026-01-01T00:00"})
    with pytest.raises(CommandError, match="Checkpoint refused"):
        verify("--against", other)


# --- with the key: the operator's checkpoint catches it --------------------------------


def test_truncation_below_a_checkpoint_is_detected_even_with_the_key():
    events = five_events()
    token = checkpoint()
    record("later", "ok")
    cut_tail_after(3)
    move_head(3, events[2].hash, 3, head_mac(3, events[2].hash, 3))
    assert verify_chain() == (3, None), "with the key the head is re-signed: chain alone passes"
    with pytest.raises(CommandError, match=r"broken at event #5: the log ends at #3"):
        verify("--against", token)


def test_truncated_and_refilled_log_is_detected_against_the_checkpoint():
    """Cut back to #3, then append two new events through the real code (the key):
    the count is back, but event #5 is not the one the checkpoint saw."""
    five_events()
    token = checkpoint()
    cut_tail_after(3)
    rechain_from(3)
    record("replacement", "ok")
    record("replacement", "ok")
    assert verify_chain() == (5, None)
    with pytest.raises(CommandError, match=r"event #5: its hash differs from the checkpoint"):
        verify("--against", token)


def test_edited_and_rechained_event_is_detected_against_the_checkpoint():
    five_events()
    token = checkpoint()
    with trigger_disabled():
        raw("UPDATE audit_auditevent SET outcome = 'success' WHERE id = 2")
    rechain_from(2)
    assert verify_chain() == (5, None)
    with pytest.raises(CommandError, match=r"event #5: its hash differs"):
        verify("--against", token)


def test_a_checkpoint_is_not_made_of_a_broken_log():
    five_events()
    cut_tail_after(4)
    with pytest.raises(CommandError, match="no checkpoint made"):
        verify("--checkpoint")
