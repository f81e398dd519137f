"""Reset Registration clears the authenticator app and the recovery codes."""

from __future__ import annotations

from typing import Any

from caregate.factors.models import AuthenticatorApp, RecoveryCode


def clear_factors(sender: Any, user: Any, **kwargs: Any) -> None:
    """Sent inside the reset's transaction: the rows go with it, or not at all."""
    AuthenticatorApp.objects.filter(user=user).delete()
    RecoveryCode.objects.filter(user=user).delete()
