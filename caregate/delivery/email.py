"""The emails of the sign-in flows: rendered here, sent by the delivery worker
(caregate.delivery.tasks) through Django's configured email backend."""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.template.loader import render_to_string

from caregate.delivery import tasks
from caregate.delivery.models import Delivery


def queue_email(
    to: str,
    subject: str,
    body: str,
    *,
    purpose: str,
    user_id: int | None = None,
    flow_id: str = "",
    send_before: datetime | None = None,
) -> Delivery:
    """Hand one email to the delivery worker; the row says how it went."""
    return tasks.enqueue(
        Delivery.Channel.EMAIL,
        purpose,
        to,
        subject=subject,
        body=body,
        user_id=user_id,
        flow_id=flow_id,
        send_before=send_before,
    )


def send_code_email(
    to: str,
    code: str,
    lifetime_seconds: int,
    *,
    purpose: str = "code",
    user_id: int | None = None,
    flow_id: str = "",
    send_before: datetime | None = None,
) -> Delivery:
    """Email a verification code (never sent after ``send_before``, the code's expiry)."""
    context = {
        "code": code,
        "lifetime": describe_seconds(lifetime_seconds),
        "brand": settings.CAREGATE_BRAND_NAME,
        "portal": settings.CAREGATE_PORTAL_NAME,
    }
    subject = f"{settings.CAREGATE_PORTAL_NAME} verification code"
    body = render_to_string("email/verification_code.txt", context)
    return queue_email(
        to,
        subject,
        body,
        purpose=purpose,
        user_id=user_id,
        flow_id=flow_id,
        send_before=send_before,
    )


_UNITS = (("hour", 3600), ("minute", 60), ("second", 1))


def describe_seconds(seconds: int) -> str:
    """Say a lifetime the way people do: '30 seconds', '10 minutes', '4 hours',
    '1 minute and 30 seconds' (never '600 seconds'). Used by the pages and the emails alike,
    so the two always agree."""
    seconds = max(0, int(seconds))
    parts = []
    for name, size in _UNITS:
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {name}{'s' if count != 1 else ''}")
    if not parts:
        return "0 seconds"
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
