"""The dev outbox: every email, SMS and call made in development mode."""

from __future__ import annotations

from django.db import models


class OutboxMessage(models.Model):
    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"
        VOICE = "voice", "Voice call"

    channel = models.CharField(max_length=10, choices=Channel)
    to = models.CharField(max_length=254)
    subject = models.CharField(max_length=255, blank=True)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    # For a voice call: the PhoneCall token, so the outbox can answer it.
    call_token = models.CharField(max_length=64, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.channel} to {self.to}: {self.subject or self.body[:40]}"

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.pk,
            "channel": self.channel,
            "to": self.to,
            "subject": self.subject,
            "body": self.body,
            "created_at": self.created_at.isoformat(),
            "call_token": self.call_token,
        }
