"""One-time links sent by email: random token in the URL, only its SHA-256 stored."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from caregate.accounts.models import User
from caregate.verification.models import EmailLink


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_link(user: User, purpose: str, lifetime_seconds: int) -> str:
    """Create a link token for ``user``; earlier unused links of that purpose stop working."""
    now = timezone.now()
    token = secrets.token_urlsafe(32)
    with transaction.atomic():
        EmailLink.objects.filter(user=user, purpose=purpose, used_at__isnull=True).update(
            used_at=now
        )
        EmailLink.objects.create(
            user=user,
            purpose=purpose,
            token_hash=_hash(token),
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime_seconds),
        )
    return token


def _refusal(link: EmailLink | None, now: datetime) -> str:
    """Why a link cannot be used ("unknown" | "used" | "expired"), or "" if it can."""
    if link is None:
        return "unknown"
    if link.used_at is not None:
        return "used"
    if now >= link.expires_at:
        return "expired"
    return ""


def _find(token: str, purpose: str) -> QuerySet[EmailLink]:
    return EmailLink.objects.select_related("user").filter(
        token_hash=_hash(token[:100]), purpose=purpose
    )


def redeem_link(token: str, purpose: str) -> tuple[User | None, str]:
    """Use a link once: return (user, "ok") or (None, "expired" | "used" | "unknown")."""
    now = timezone.now()
    with transaction.atomic():
        link = _find(token, purpose).select_for_update().first()
        refusal = _refusal(link, now)
        if refusal:
            return None, refusal
        link.used_at = now
        link.save(update_fields=["used_at"])
    if not link.user.is_active:
        return None, "unknown"
    return link.user, "ok"


def peek_link(token: str, purpose: str) -> tuple[User | None, str]:
    """Look a link up without using it: (user, "ok") or (None, "expired" | "used" |
    "unknown"), the outcomes redeem_link would give. For showing whose link it is before
    the user spends it."""
    link = _find(token, purpose).first()
    refusal = _refusal(link, timezone.now())
    if refusal:
        return None, refusal
    if not link.user.is_active:
        return None, "unknown"
    return link.user, "ok"
