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


class Delivery(models.Model):
    """One email, SMS or call handed to the background worker, and how it went.

    The rendered message (which may carry a code or a link) is kept in ``body`` only until
    the delivery is finished: it is blanked in the same write that marks it sent, failed
    or expired. The task queue's own rows carry only this row's id, so no code is ever at
    rest in them. ``last_error`` says why a send failed (an error code or an exception
    name), never what was sent.
    """

    class Channel(models.TextChoices):
        EMAIL = "email", "Email"
        SMS = "sms", "SMS"
        CALL = "call", "Voice call"

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENDING = "sending", "Sending"
        SENT = "sent", "Sent"  # the mail server or Twilio took it
        DELIVERED = "delivered", "Delivered"  # Twilio's status callback (SMS)
        RETRYING = "retrying", "Retrying"
        FAILED = "failed", "Failed"  # every attempt failed, or a permanent refusal
        UNDELIVERED = "undelivered", "Undelivered"  # Twilio's status callback (SMS)
        WITHHELD = "withheld", "Withheld"  # the same work as a send, but nothing is sent

    channel = models.CharField(max_length=10, choices=Channel)
    purpose = models.CharField(max_length=40)
    destination = models.CharField(max_length=600, blank=True)  # ", "-separated for a notice
    subject = models.CharField(max_length=255, blank=True)
    body = models.TextField(blank=True)
    # A call's PhoneCall token (the call is driven by its own TwiML and status webhooks).
    call_token = models.CharField(max_length=64, blank=True)
    # Random, in the SMS status callback's URL: binds Twilio's callback to this row.
    token = models.CharField(max_length=64, unique=True)
    status = models.CharField(max_length=12, choices=Status, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=100, blank=True)
    provider_id = models.CharField(max_length=64, blank=True, db_index=True)
    flow_instance_id = models.CharField(max_length=64, blank=True, db_index=True)
    user = models.ForeignKey(
        "accounts.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Past this (a code's expiry) there is no point in sending: the delivery fails instead.
    send_before = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.channel} {self.purpose} #{self.pk}: {self.status}"
