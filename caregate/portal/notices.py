"""Security notices: an email to the user and a Message Center message.

Sent when something about the account's security changes (password changed, registration
reset, new phone, new remembered browser), so that a change the user did not make is seen.
"""

from __future__ import annotations

from django.conf import settings

from caregate.accounts.models import User
from caregate.delivery import tasks
from caregate.delivery.email import queue_email
from caregate.portal.models import Message

NOT_YOU = (
    "If you did not make this change, call the help desk at {phone} at once: someone else "
    "may know your password."
)
# For a change someone else made to the account (an administrator, the support team):
# "if you did not make this change" would be true of every such notice.
NOT_EXPECTED = "If you did not expect this change, call the help desk at {phone}."


def mask_email(email: str) -> str:
    """Enough of an address for its owner to recognise it: d***@c***.example."""
    local, _, domain = email.partition("@")
    name, dot, suffix = domain.rpartition(".")
    if not dot:
        name, suffix = domain, ""
    masked_domain = f"{name[:1]}***{dot}{suffix}" if domain else "***"
    return f"{local[:1]}***@{masked_domain}"


def notify(
    user: User,
    subject: str,
    text: str,
    *,
    email_to: list[str] | None = None,
    ending: str = NOT_YOU,
) -> bool:
    """Tell ``user`` about a security change by email (to ``email_to``, default the
    account's address, through the delivery worker) and in the Message Center; False if
    the email is already known to have failed. ``ending``: NOT_YOU for the user's own
    changes, NOT_EXPECTED for someone else's."""
    body = f"{text}\n\n{ending.format(phone=settings.CAREGATE_SUPPORT_PHONE)}"
    if user.organization_id is not None:
        Message.objects.create(
            organization_id=user.organization_id, recipient=user, subject=subject, body=body
        )
    recipients = email_to if email_to is not None else [user.email]
    # One email to every recipient, as one delivery (its destination lists them).
    delivery = queue_email(
        ", ".join(r for r in recipients if r),
        f"{settings.CAREGATE_PORTAL_NAME}: {subject}",
        body,
        purpose="notice",
        user_id=user.pk,
    )
    return tasks.page_state(delivery) != tasks.FAILED
