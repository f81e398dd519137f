"""Write and verify audit events.

Each event's hash is an HMAC-SHA256 (keyed by the secret key, via Django's salted_hmac)
over its content and the previous event's hash. A changed, inserted or deleted row breaks
the chain; the key means that someone with only database access cannot re-forge it.

The head row (last id, last hash, count) carries its own HMAC, so deleting the newest events
and pointing the head at the event left last is caught too. A checkpoint
(``verify_audit_log --checkpoint``) is a signed copy of the head that the operator keeps
elsewhere; ``verify_audit_log --against`` checks that the log still holds that event with
that hash, which catches a cut-back log even when whoever cut it also had the key.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core import signing
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from caregate.audit.models import AuditEvent, AuditHead
from caregate.ops.metrics import observe
from caregate.security.client import client_ip

GENESIS = "0" * 64
_SALT = "caregate.audit.chain"
_HEAD_SALT = "caregate.audit.head"  # the formula is frozen in migration audit 0003 too
_CHECKPOINT_SALT = "caregate.audit.checkpoint"
# Never written to the log, whatever a caller passes in `detail`: these keys in any letter
# case, and any key that contains one of the longer words (new_password, reset_token...).
_FORBIDDEN_DETAIL_KEYS = {"password", "code", "token", "secret"}
_FORBIDDEN_DETAIL_PARTS = ("password", "token", "secret")


def _forbidden(key: str) -> bool:
    lowered = key.lower()
    return lowered in _FORBIDDEN_DETAIL_KEYS or any(p in lowered for p in _FORBIDDEN_DETAIL_PARTS)


def _content(event: AuditEvent) -> str:
    return json.dumps(
        {
            "id": event.pk,
            "created_at": event.created_at.isoformat(),
            "event": event.event,
            "outcome": event.outcome,
            "user_id": event.user_id_snapshot,
            "username": event.username,
            "client_ip": event.client_ip,
            "user_agent": event.user_agent,
            "flow": event.flow,
            "detail": event.detail,
        },
        sort_keys=True,
        separators=(",", ":"),
    )


def chain_hash(prev_hash: str, event: AuditEvent) -> str:
    """Return the HMAC that links ``event`` to its predecessor."""
    return salted_hmac(_SALT, prev_hash + _content(event), algorithm="sha256").hexdigest()


def head_mac(last_id: int, last_hash: str, count: int) -> str:
    """Return the HMAC that signs the head row's values."""
    message = f"{last_id}:{last_hash}:{count}"
    return salted_hmac(_HEAD_SALT, message, algorithm="sha256").hexdigest()


# The statements of an append, written out (the tables are this app's own). EVENT_COLUMNS
# is every column of AuditEvent, in the order of the values (a test checks it).
EVENT_COLUMNS = (
    "id",
    "created_at",
    "event",
    "outcome",
    "user_id_snapshot",
    "username",
    "client_ip",
    "user_agent",
    "flow",
    "detail",
    "prev_hash",
    "hash",
)
_EVENT_FIELDS = [AuditEvent._meta.get_field(column) for column in EVENT_COLUMNS]
_INSERT_EVENT = (
    'INSERT INTO "audit_auditevent" ("id", "created_at", "event", "outcome", '
    '"user_id_snapshot", "username", "client_ip", "user_agent", "flow", "detail", '
    '"prev_hash", "hash") VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)'
)
_SELECT_HEAD = 'SELECT "last_id", "last_hash", "count" FROM "audit_audithead" WHERE "id" = 1'
_CREATE_HEAD = (
    'INSERT INTO "audit_audithead" ("id", "last_id", "last_hash", "count", "mac") '
    'VALUES (1, 0, %s, 0, %s) ON CONFLICT ("id") DO NOTHING'
)
_MOVE_HEAD = (
    'UPDATE "audit_audithead" SET "last_id" = %s, "last_hash" = %s, "count" = %s, '
    '"mac" = %s WHERE "id" = 1'
)


def _lock_head(cursor: CursorWrapper) -> tuple[int, str, int]:
    """Read the head row, locked until the transaction ends: appends take turns here.

    PostgreSQL: FOR UPDATE. SQLite has no row locks; its IMMEDIATE transactions (see
    settings) take the database's write lock at BEGIN, which serializes appends as well.
    """
    select = _SELECT_HEAD + (" FOR UPDATE" if connection.features.has_select_for_update else "")
    cursor.execute(select)
    row = cursor.fetchone()
    if row is None:  # the installation's first event: create the head, then lock it
        cursor.execute(_CREATE_HEAD, [GENESIS, head_mac(0, GENESIS, 0)])
        cursor.execute(select)
        row = cursor.fetchone()
    return int(row[0]), str(row[1]), int(row[2])


def record(
    event: str,
    outcome: str,
    *,
    request: HttpRequest | None = None,
    user: Any = None,
    username: str = "",
    flow: str = "",
    **detail: Any,
) -> AuditEvent:
    """Append one event to the chain and return it."""
    clean_detail = {k: v for k, v in detail.items() if not _forbidden(k)}
    user_id = getattr(user, "pk", None)
    # One cursor, three statements (lock the head, insert the event, move the head): the
    # ORM's model and queryset machinery around them cost more than the statements.
    # Inside a caller's transaction the event joins it (no savepoint): it is written, or
    # rolled back, with the change it records; the caller keeps the head lock to its end,
    # so a caller records last.
    with transaction.atomic(savepoint=False), connection.cursor() as cursor:
        last_id, last_hash, last_count = _lock_head(cursor)
        entry = AuditEvent(
            id=last_id + 1,
            created_at=timezone.now(),
            event=event[:64],
            outcome=outcome[:32],
            user_id_snapshot=user_id,
            username=(getattr(user, "username", "") or username)[:150],
            client_ip=client_ip(request) if request is not None else "",
            user_agent=(request.headers.get("User-Agent", "") if request else "")[:512],
            flow=flow[:64],
            detail=clean_detail,
            prev_hash=last_hash,
        )
        entry.hash = chain_hash(last_hash, entry)
        # Always an INSERT: the id is ours (the chain's sequence), never an update.
        cursor.execute(
            _INSERT_EVENT,
            [f.get_db_prep_save(getattr(entry, f.attname), connection) for f in _EVENT_FIELDS],
        )
        count = last_count + 1
        cursor.execute(
            _MOVE_HEAD, [entry.pk, entry.hash, count, head_mac(entry.pk, entry.hash, count)]
        )
    entry._state.adding = False  # a saved row: save() and delete() refuse it
    entry._state.db = connection.alias
    observe(event, outcome, clean_detail, flow=flow)  # Prometheus counters (caregate/ops)
    return entry


@dataclass(frozen=True)
class ChainBreak:
    """Where the log is broken: an event id, or None when the head record itself is."""

    event_id: int | None
    reason: str


@dataclass(frozen=True)
class Checkpoint:
    """A verified head: the log then held ``count`` events, the last one ``last_id``."""

    last_id: int
    last_hash: str
    count: int
    created_at: datetime


class InvalidCheckpoint(Exception):
    """The token is not a checkpoint signed with this installation's secret key."""


@dataclass(frozen=True)
class _Walk:
    checked: int
    broken: ChainBreak | None
    head: AuditHead | None


def _events() -> Iterator[AuditEvent]:
    return AuditEvent.objects.order_by("id").iterator(chunk_size=2000)


def _walk() -> _Walk:
    # The head is read before the events: an append that commits during the walk then
    # shows up as one more (chain-checked) event, not as a head the walk never reached.
    head = AuditHead.objects.filter(pk=1).first()
    head_id = head.last_id if head is not None else 0
    hash_at_head = GENESIS
    prev_hash = GENESIS
    expected_id = 1
    checked = 0
    for event in _events():
        if event.pk != expected_id:
            return _Walk(
                checked, ChainBreak(expected_id, f"event #{expected_id} is missing"), head
            )
        if not constant_time_compare(event.prev_hash, prev_hash):
            return _Walk(
                checked, ChainBreak(event.pk, "its link to the previous event is wrong"), head
            )
        if not constant_time_compare(event.hash, chain_hash(prev_hash, event)):
            return _Walk(
                checked, ChainBreak(event.pk, "its content does not match its hash"), head
            )
        if event.pk == head_id:
            hash_at_head = event.hash
        prev_hash = event.hash
        expected_id += 1
        checked += 1
    return _Walk(checked, _check_head(head, checked, hash_at_head), head)


def _check_head(head: AuditHead | None, checked: int, hash_at_head: str) -> ChainBreak | None:
    if head is None:
        # No head yet is an empty log; events without a head mean the row was deleted.
        return None if checked == 0 else ChainBreak(None, "the head record is missing")
    expected = head_mac(head.last_id, head.last_hash, head.count)
    if not constant_time_compare(head.mac, expected):
        return ChainBreak(
            None,
            "the head record was changed without the secret key "
            f"(events after #{checked} may have been deleted)",
        )
    if head.last_id > checked:
        return ChainBreak(
            checked + 1, f"events after #{checked} are missing (the log held {head.last_id})"
        )
    if head.count != head.last_id or not constant_time_compare(hash_at_head, head.last_hash):
        return ChainBreak(head.last_id, "it does not match the head record")
    return None


def verify_chain() -> tuple[int, ChainBreak | None]:
    """Check every event and the head; return how many were checked and the first break."""
    walk = _walk()
    return walk.checked, walk.broken


def make_checkpoint() -> tuple[str, Checkpoint]:
    """Verify the log and return a signed checkpoint of its head (token, decoded values).

    Raises ValueError naming the break when the log is not intact: a checkpoint of a
    broken log would vouch for the tampering.
    """
    walk = _walk()
    if walk.broken is not None:
        raise ValueError(f"event #{walk.broken.event_id}: {walk.broken.reason}")
    head = walk.head
    checkpoint = Checkpoint(
        last_id=head.last_id if head else 0,
        last_hash=head.last_hash if head else GENESIS,
        count=head.count if head else 0,
        created_at=timezone.now(),
    )
    payload = {
        "id": checkpoint.last_id,
        "hash": checkpoint.last_hash,
        "count": checkpoint.count,
        "at": checkpoint.created_at.isoformat(),
    }
    return signing.dumps(payload, salt=_CHECKPOINT_SALT), checkpoint


def read_checkpoint(token: str) -> Checkpoint:
    """Decode a checkpoint token; raise InvalidCheckpoint unless our key signed it."""
    try:
        payload = signing.loads(token.strip(), salt=_CHECKPOINT_SALT)
        return Checkpoint(
            last_id=int(payload["id"]),
            last_hash=str(payload["hash"]),
            count=int(payload["count"]),
            created_at=datetime.fromisoformat(payload["at"]),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError) as exc:
        raise InvalidCheckpoint("not a checkpoint signed with this installation's key") from exc


def verify_against(checkpoint: Checkpoint) -> tuple[int, ChainBreak | None]:
    """Verify the log, then that it still holds the checkpoint's event, unchanged.

    The chain makes an event's hash depend on every event before it, so the same hash at
    the same id means the log up to the checkpoint is the one the operator saw.
    """
    checked, broken = verify_chain()
    if broken is not None or checkpoint.last_id == 0:
        return checked, broken
    at = f"{checkpoint.created_at:%Y-%m-%d %H:%M:%S %Z}".strip()
    event = AuditEvent.objects.filter(pk=checkpoint.last_id).first()
    if event is None or checked < checkpoint.count:
        return checked, ChainBreak(
            checkpoint.last_id,
            f"the log ends at #{checked}, before the checkpoint of {at} "
            f"({checkpoint.count} events): it was cut back",
        )
    if not constant_time_compare(event.hash, checkpoint.last_hash):
        return checked, ChainBreak(
            checkpoint.last_id,
            f"its hash differs from the checkpoint of {at}: the log up to it was rewritten",
        )
    return checked, None
