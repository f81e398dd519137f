"""The authenticator app (TOTP) and recovery codes of a user (issue #11)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class AuthenticatorApp(models.Model):
    """One confirmed authenticator app per user.

    ``secret`` is the Fernet token of the TOTP secret (caregate/factors/crypto.py): a copy
    of the database alone does not reveal it. ``last_used_step`` is the 30-second time step
    of the last code accepted; a code of that step or an earlier one is refused, so each
    code works once (the check and the update are one compare-and-set UPDATE).
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="authenticator_app"
    )
    secret = models.TextField()
    last_used_step = models.BigIntegerField(default=-1)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"authenticator app of user {self.user_id}"


class RecoveryCode(models.Model):
    """One single-use recovery code; only a keyed HMAC of it is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="recovery_codes"
    )
    code_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["user", "code_hash"])]

    def __str__(self) -> str:
        return f"recovery code of user {self.user_id}"


# The factor policy's grace periods (caregate/factors/policy.py) live in their own module.
from caregate.factors.policy_models import FactorPolicyGrace  # noqa: E402, F401
