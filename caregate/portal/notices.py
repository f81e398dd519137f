"""Security notices: an email to the user and a Message Center message.

Sent when something about the account's security changes (password changed, registration
reset, new phone, new remembered browser), so that a change the user did not make is seen.
"""

from __future__ import annotations

import logging
import smtplib

from django.conf import settings
from django.core.mail import send_mail

from caregate.accounts.models import User
from caregate.portal.models import Message

logger = logging.getLogger(__name__)
NOT_YOU = (
    "If you did not make this change, call the help desk at {phone} at once: someone else "
    "may know your password."
)


def notify(user: User, subject: str, text: str, *, email_to: list[str] | None = None) -> bool:
    """Tell ``user`` about a security change by email (to ``email_to``, default the
    account's address) and in the Message Center; False if the email could not be sent."""
    body = f"{text}\n\n{NOT_YOU.format(phone=settings.CAREGATE_SUPPORT_PHONE)}"
    if user.organization_id is not None:
        Message.objects.create(
            organization_id=user.organization_id, recipient=user, subject=subject, body=body
        )
    recipients = email_to if email_to is not None else [user.email]
    try:
        send_mail(
            f"{settings.CAREGATE_PORTAL_NAME}: {subject}",
            body,
            None,
            [r for r in recipients if r],
            fail_silently=False,
        )
    except (TimeoutError, smtplib.SMTPException, OSError):
        logger.exception("could not send a security notice")
        return False
    return True
