"""What other apps ask of passkeys: whether a user has one, and Reset Registration."""

from __future__ import annotations

from typing import Any

from caregate import rowsql
from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.passkeys.models import Passkey, PasskeyChallenge, PasskeyUser


def has_passkey(user: User) -> bool:
    # Asked at every password step (for "Try another way"): SQL written once, see rowsql.
    return rowsql.exists(Passkey, {"user": user.pk})


def remove_all(sender: Any, *, user: User, **kwargs: Any) -> None:
    """Reset Registration clears every factor: the user's passkeys, their user handle (a
    new enrolment gets a new one, so an old discoverable credential left on a device names
    no account) and any ceremony in progress. Runs inside the reset's transaction."""
    removed, _ = Passkey.objects.filter(user=user).delete()
    if removed:
        record("passkey.remove", "reset", user=user, count=removed)
    PasskeyUser.objects.filter(user=user).delete()
    PasskeyChallenge.objects.filter(user=user).delete()
