"""Passkeys (WebAuthn credentials), each user's WebAuthn user handle, and the challenges
of ceremonies in progress.

Binary WebAuthn values (credential ids, user handles) are kept base64url-encoded, as the
browser sends them: a lookup is then a plain indexed string comparison.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class PasskeyUser(models.Model):
    """The user handle the authenticator stores with a discoverable credential: random per
    user (never the database id or the email address, which an authenticator would then
    show to whoever holds it), so LOGIN WITH PASSKEY can find the account from it."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="passkey_handle"
    )
    handle = models.CharField(max_length=100, unique=True)  # base64url of 32 random bytes

    def __str__(self) -> str:
        return f"passkey user handle of user {self.user_id}"


class Passkey(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="passkeys"
    )
    name = models.CharField(max_length=60)
    # A credential id is at most 1023 bytes (WebAuthn level 3): 1364 base64url characters.
    credential_id = models.CharField(max_length=1400, unique=True)
    public_key = models.BinaryField()  # COSE_Key, as the authenticator gave it
    sign_count = models.PositiveBigIntegerField(default=0)
    transports = models.JSONField(default=list)
    aaguid = models.CharField(max_length=36, blank=True)
    backed_up = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"passkey {self.name!r} of user {self.user_id}"


class PasskeyChallenge(models.Model):
    """One ceremony's challenge: server-side, bound to whom it was issued (a user, a flow
    instance), used at most once (``used_at`` set by compare-and-set), short-lived."""

    class Purpose(models.TextChoices):
        REGISTER = "register"
        SECOND_FACTOR = "second-factor"
        LOGIN = "login"

    id = models.CharField(primary_key=True, max_length=64)  # random; the session's pointer
    purpose = models.CharField(max_length=20, choices=Purpose)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, null=True, blank=True
    )
    flow_instance = models.CharField(max_length=64, blank=True)
    challenge = models.BinaryField()
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.purpose} challenge {self.id[:8]}"
