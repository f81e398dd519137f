"""Write and verify audit events.

Each event's hash is an HMAC-SHA256 (keyed by the secret key, via Django's salted_hmac)
over its content and the previous event's hash. A changed, inserted or deleted row breaks
the chain; the key means that someone with only database access cannot re-forge it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from caregate.audit.models import AuditEvent, AuditHead
from caregate.security.client import client_ip

GENESIS = "0" * 64
_SALT = "caregate.audit.chain"
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


def _head() -> AuditHead:
    head = AuditHead.objects.select_for_update().filter(pk=1).first()
    if head is None:
        AuditHead.objects.get_or_create(pk=1, defaults={"last_hash": GENESIS})
        head = AuditHead.objects.select_for_update().get(pk=1)
    return head


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
    with transaction.atomic():
        head = _head()
        entry = AuditEvent(
            id=head.last_id + 1,
            created_at=timezone.now(),
            event=event[:64],
            outcome=outcome[:32],
            user_id_snapshot=user_id,
            username=(getattr(user, "username", "") or username)[:150],
            client_ip=client_ip(request) if request is not None else "",
            user_agent=(request.headers.get("User-Agent", "") if request else "")[:512],
            flow=flow[:64],
            detail=clean_detail,
            prev_hash=head.last_hash,
        )
        entry.hash = chain_hash(head.last_hash, entry)
        # force_insert: the id is ours (the chain's sequence), so never an UPDATE.
        AuditEvent.objects.bulk_create([entry])
        AuditHead.objects.filter(pk=1).update(
            last_id=entry.pk, last_hash=entry.hash, count=head.count + 1
        )
    return entry


@dataclass(frozen=True)
class ChainBreak:
    event_id: int | None
    reason: str


def _events() -> Iterator[AuditEvent]:
    return AuditEvent.objects.order_by("id").iterator(chunk_size=2000)


def verify_chain() -> tuple[int, ChainBreak | None]:
    """Check every event; return how many were checked and the first break, if any."""
    prev_hash = GENESIS
    expected_id = 1
    checked = 0
    for event in _events():
        if event.pk != expected_id:
            return checked, ChainBreak(expected_id, f"event #{expected_id} is missing")
        if not constant_time_compare(event.prev_hash, prev_hash):
            return checked, ChainBreak(event.pk, "its link to the previous event is wrong")
        if not constant_time_compare(event.hash, chain_hash(prev_hash, event)):
            return checked, ChainBreak(event.pk, "its content does not match its hash")
        prev_hash = event.hash
        expected_id += 1
        checked += 1
    head = AuditHead.objects.filter(pk=1).first()
    if head is not None and (head.last_id != checked or head.last_hash != prev_hash):
        return checked, ChainBreak(
            checked + 1, f"events after #{checked} are missing (the log held {head.last_id})"
        )
    return checked, None
