"""Send the emails of the sign-in flows through Django's configured email backend."""

from __future__ import annotations

import logging
import smtplib

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string

logger = logging.getLogger(__name__)


def send_code_email(to: str, code: str, lifetime_seconds: int) -> bool:
    """Email a verification code; return False (and log) when the mail server fails."""
    context = {
        "code": code,
        "lifetime": describe_seconds(lifetime_seconds),
        "brand": settings.CAREGATE_BRAND_NAME,
        "portal": settings.CAREGATE_PORTAL_NAME,
    }
    subject = f"{settings.CAREGATE_PORTAL_NAME} verification code"
    body = render_to_string("email/verification_code.txt", context)
    try:
        send_mail(subject, body, None, [to], fail_silently=False)
    except (TimeoutError, smtplib.SMTPException, OSError):
        logger.exception("could not send a verification code email")
        return False
    return True


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
