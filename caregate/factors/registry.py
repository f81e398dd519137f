"""The second factors a user can choose at sign-in ("Try another way"), by key.

Each factor module registers itself (from its app's ready()): the authenticator app and
recovery codes here in caregate/factors, passkeys in caregate/passkeys. The sign-in flows
ask ``choices_for(user, default=...)`` which factors to offer after the password; the
button's own factor (LOGIN WITH EMAIL: the emailed code, LOGIN WITH PHONE: the phone) is
the default, and a factor is offered only if the user has enrolled it and the
deployment's policy allows it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from caregate.accounts.models import User
    from caregate.flows.engine import Stage


@dataclass(frozen=True)
class SecondFactor:
    key: str  # "authenticator-app", "recovery-code", "passkey" (URL-safe, stable)
    label: str  # what "Try another way" offers, in the guides' plain words
    stage: Stage  # verifies the factor: Advance on success, as EmailCode does
    enrolled: Callable[[User], bool]
    phishing_resistant: bool = False
    strength: int = 0  # higher is stronger (a password reset asks for the strongest)


_FACTORS: dict[str, SecondFactor] = {}


def register(factor: SecondFactor) -> None:
    _FACTORS[factor.key] = factor


def get(key: str) -> SecondFactor | None:
    return _FACTORS.get(key)


def registered() -> list[SecondFactor]:
    return list(_FACTORS.values())


# --- what a user may be offered (added for the factor choice and Forgot password) -----


def allowed(key: str) -> bool:
    """Whether the deployment allows this factor (CAREGATE_SECOND_FACTORS)."""
    from_settings = getattr(settings, "CAREGATE_SECOND_FACTORS", None)
    return from_settings is None or key in from_settings


def usable(key: str) -> SecondFactor | None:
    """The registered factor of that key if the deployment allows it, else None."""
    factor = _FACTORS.get(key)
    return factor if factor is not None and allowed(key) else None


def enrolled_factors(user: User) -> list[SecondFactor]:
    """The registered, allowed factors ``user`` has enrolled, strongest first."""
    found = [f for f in _FACTORS.values() if allowed(f.key) and f.enrolled(user)]
    return sorted(found, key=lambda f: -f.strength)


def choices_for(user: User, *, default: SecondFactor) -> list[SecondFactor]:
    """What "Try another way" offers: the button's own factor first, then the user's
    other enrolled, allowed factors, strongest first."""
    return [default, *(f for f in enrolled_factors(user) if f.key != default.key)]


def strongest(user: User, *, floor: int) -> SecondFactor | None:
    """The user's strongest enrolled factor if it is stronger than ``floor`` (the strength
    of the factor asked otherwise), else None."""
    found = enrolled_factors(user)
    return found[0] if found and found[0].strength > floor else None
