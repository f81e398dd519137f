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


def describe_seconds(seconds: int) -> str:
    """Return '30 seconds', '1 minute', '20 minutes' for a lifetime in seconds."""
    if seconds < 60 or seconds % 60:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = seconds // 60
    return f"{minutes} minute{'s' if minutes != 1 else ''}"
