"""One-time verification codes (email, SMS, voice), stored only as keyed hashes."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class VerificationCode(models.Model):
    """One code, bound to one flow instance and purpose; single use."""

    flow_id = models.CharField(max_length=64)
    purpose = models.CharField(max_length=100)
    channel = models.CharField(max_length=10)  # email | sms | voice
    destination = models.CharField(max_length=254)
    code_hash = models.CharField(max_length=128)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)
    voided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["flow_id", "purpose", "-id"])]

    def __str__(self) -> str:
        return f"{self.channel} code for {self.purpose} ({self.created_at:%H:%M:%S})"


class PhoneCall(models.Model):
    """A "Call Me" verification call, bound to the one sign-in attempt that placed it."""

    class Status(models.TextChoices):
        CALLING = "calling", "Calling"
        RINGING = "ringing", "Ringing"
        ANSWERED = "answered", "Answered"
        APPROVED = "approved", "Approved"
        USED = "used", "Approved and used"
        REJECTED = "rejected", "Ended without approval"
        NO_ANSWER = "no-answer", "Not answered"
        BUSY = "busy", "Busy"
        FAILED = "failed", "Could not be placed"
        TIMED_OUT = "timed-out", "Timed out"

    # The public handle in TwiML URLs; random, so a URL cannot be guessed from another.
    token = models.CharField(max_length=64, unique=True)
    flow_id = models.CharField(max_length=64)
    purpose = models.CharField(max_length=100)
    to = models.CharField(max_length=20)
    # The one code this call was placed with: the digits keyed into this call are checked
    # against it alone, never against whatever code of the flow happens to be newest.
    code = models.ForeignKey(
        VerificationCode, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Whose sign-in the call verifies (for the audit events of Twilio's webhooks).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    mode = models.CharField(max_length=20)  # code | press-pound
    status = models.CharField(max_length=20, choices=Status, default=Status.CALLING)
    provider_sid = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    approved_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"call {self.token[:8]} ({self.status})"


class RememberedBrowser(models.Model):
    """Section 5, Remember Me: a browser that may skip credentials and MFA for a while.

    Only a hash of the cookie's token is stored. ``fingerprint`` covers the user's
    security state (password hash, MFA registration, active flag), so a password change,
    a new or reset MFA registration or a disabled account voids it with no bookkeeping.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="remembered_browsers"
    )
    method = models.CharField(max_length=10)  # phone | email: the button it was set with
    token_hash = models.CharField(max_length=64, unique=True)
    fingerprint = models.CharField(max_length=64)
    # Where it was set, so that My Account can show the user which browser it is.
    client_ip = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"remembered {self.method} browser of user {self.user_id}"


class EmailLink(models.Model):
    """A one-time link sent by email (complete MFA registration); only its hash is kept."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="email_links"
    )
    purpose = models.CharField(max_length=40)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.purpose} link for user {self.user_id}"
