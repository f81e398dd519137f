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
