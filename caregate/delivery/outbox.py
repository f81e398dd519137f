"""A Django email backend that records messages in the dev outbox."""

from __future__ import annotations

from collections.abc import Sequence

from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from caregate.delivery.models import OutboxMessage


class OutboxEmailBackend(BaseEmailBackend):
    """Store each message for /dev/outbox/ instead of sending it (development only)."""

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        rows = [
            OutboxMessage(
                channel=OutboxMessage.Channel.EMAIL,
                to=", ".join(message.to),
                subject=str(message.subject),
                body=str(message.body),
            )
            for message in email_messages
        ]
        OutboxMessage.objects.bulk_create(rows)
        return len(rows)
