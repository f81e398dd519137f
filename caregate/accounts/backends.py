"""Authenticate by email (the guides' "Sign in with your email address") or username.

Every password check goes through :func:`check_password` (the Credentials stage directly,
anything else through Django's ``authenticate()``), so one sign-in budget covers every
flow that checks a password: counted per typed identity and per resolved account. An
attacker who alternates an account's email and username, or their letter case, across
email login, phone login and MFA registration gets the account's budget once, not once
per spelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

from caregate import rowsql
from caregate.accounts.hashers import spend_failed_check
from caregate.accounts.models import User
from caregate.security import devices
from caregate.verification import ratelimit

SCOPE = "signin:account"
DEVICE_SCOPE = "signin:device"
DEVICES_SCOPE = "signin:account-devices"


@dataclass(frozen=True)
class PasswordCheck:
    """The answer to one password attempt; ``user`` is set only on ``success``."""

    user: User | None
    outcome: str  # success | failure | throttled


def resolve(*, email: str | None = None, username: str | None = None) -> User | None:
    """The one account an email (or, failing that, a username) names, in one query.

    Both are unique case-insensitively (constraints on Lower(email), Lower(username)), so
    "JSmith" and " jsmith " name one account; the lookup uses those expression indexes.
    The same single query runs whether or not the account exists.
    """
    # The same statement as User.objects.with_email()/with_username() (LOWER(col) = the
    # lowercased value, which the indexes serve), written once (caregate.rowsql): it runs
    # at every password step, and building it through the ORM cost more than running it.
    if email is not None:
        value, where = email.strip(), {"email lower": User.objects.normalize_email(email)}
    else:
        value = (username or "").strip()
        where = {"username lower": value.lower()}
    if not value:
        return None
    return rowsql.get(User, where)


def _spend_a_hash(password: str) -> None:
    # ModelBackend's pattern: an unknown or throttled account costs the same work as a
    # wrong password (one Argon2 hash, plus the legacy top-up while imported hashes
    # remain), so the answer's timing does not tell them apart.
    spend_failed_check(password)


def _budgets(typed: str, user: User | None, device: str = "") -> list[tuple[str, str]]:
    """The budgets one attempt counts against: what was typed, and the account it names;
    or, from a browser where the account completed a sign-in, that browser's own.

    An unknown identity counts a second key of its own in place of the account's, so both
    cases make the same number of cache round trips (no timing difference either). All
    of them are counted in one round trip (ratelimit.hit_all), whichever they are.
    """
    if user is not None and device:
        # caregate.security.devices: a stranger's guesses do not pause this browser; all
        # the account's browsers together have one budget more, whoever holds them.
        return [(DEVICE_SCOPE, f"{user.pk}:{device}"), (DEVICES_SCOPE, f"account:{user.pk}")]
    account = f"account:{user.pk}" if user is not None else f"account:?{typed}"
    return [(SCOPE, f"typed:{typed}"), (SCOPE, account)]


def check_password(
    password: str,
    *,
    email: str | None = None,
    username: str | None = None,
    extra_limits: tuple[tuple[str, str], ...] = (),
    request: HttpRequest | None = None,
) -> PasswordCheck:
    """Check one password attempt: one account lookup, the budgets, exactly one hash.

    ``extra_limits`` (e.g. the client address's) are counted with the account's: any of
    them over its limit throttles the attempt. ``request``: its device cookie, if it names
    the account, puts the attempt under that browser's budget (security/devices.py).
    """
    typed = (email if email is not None else username or "").strip().lower()
    user = resolve(email=email, username=username)
    device = devices.nonce_for(request, user)
    # hit_all counts every budget, even once one is spent: a throttled attacker keeps
    # using up the account's budget rather than resting it.
    if not ratelimit.hit_all([*_budgets(typed, user, device), *extra_limits]):
        _spend_a_hash(password)
        return PasswordCheck(None, "throttled")
    if user is None:
        _spend_a_hash(password)
        return PasswordCheck(None, "failure")
    # Operator staff have no password here (an unusable one) and sign in only through the
    # staff LOGIN; refused even if a password were ever set on their account.
    if user.check_password(password) and user.is_active and not user.is_operator_staff:
        return PasswordCheck(user, "success")
    return PasswordCheck(None, "failure")


class EmailOrUsernameBackend(ModelBackend):
    """Django's ModelBackend, looking the user up by email or by username, throttled.

    For code that calls ``authenticate()`` (the Credentials stage calls
    :func:`check_password` itself, to audit a throttled attempt as such).
    """

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        email: str | None = None,
        **kwargs: Any,
    ) -> User | None:
        if password is None or (username is None and email is None):
            return None
        attempt = check_password(password, email=email, username=username)
        if attempt.user is not None and self.user_can_authenticate(attempt.user):
            return attempt.user
        return None

    def get_user(self, user_id: int) -> User | None:
        """The signed-in user of every request, with the organization the portal shell
        and its pages show (one query, not two), re-read each time: a deactivated user
        is signed out at the next request."""
        # select_related("organization")'s statement, written once (see caregate.rowsql).
        user = rowsql.get(User, {"id": user_id}, related="organization")
        return user if user is not None and self.user_can_authenticate(user) else None
