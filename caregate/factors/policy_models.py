"""The factor policy's one table (caregate/factors/policy.py): when each user's grace
period began. Imported from caregate/factors/models.py so that Django sees the model."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class FactorPolicyGrace(models.Model):
    """The first sign-in at which the administrators' factor requirement applied to this
    user: the grace period (CAREGATE_FACTOR_GRACE_DAYS) counts from here, once per user.
    Kept when the user later enrols (and through Reset Registration): losing the factor
    again does not start a new grace period."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="factor_policy_grace"
    )
    started_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"factor policy grace of user {self.user_id} from {self.started_at:%Y-%m-%d}"
