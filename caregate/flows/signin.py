"""Finish a sign-in: rotate the session, start its clocks, audit, go home."""

from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth import login
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils.crypto import constant_time_compare
from django.utils.timezone import localtime

from caregate import rowsql
from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.delivery.email import describe_seconds
from caregate.factors import policy
from caregate.flows import keys
from caregate.flows.engine import FlowState, Render, Result
from caregate.flows.stages.credentials import UserCheck
from caregate.portal.notices import notify
from caregate.security import devices, sessions
from caregate.security.client import client_ip
from caregate.verification import remember
from caregate.verification.models import RememberedBrowser

BACKEND = "caregate.accounts.backends.EmailOrUsernameBackend"
STAFF_METHOD = "staff-sso"  # the staff LOGIN's sign-in method (caregate/staff/staff_login.py)


def sign_in(
    request: HttpRequest,
    user: User,
    *,
    method: str,
    flow: str,
    remember_as: str = "",
    remembered: RememberedBrowser | None = None,
    factor: str = "",
) -> HttpResponse:
    """Log the user in (Django's login() rotates the session key) and go to the home page.

    ``remember_as`` ("phone" or "email"): Remember Me was checked for that button; the
    session is the full sign-in's (the normal lifetime), and Sign out voids the token.
    ``remembered``: the token this sign-in skipped the prompts with; the session ends when
    that token does (its four hours, Sign out, an account change), not 12 hours later.
    ``factor``: the second factor this sign-in used (issue #11's "Try another way"), named
    in the audit event.
    """
    if user.is_operator_staff != (method == STAFF_METHOD):
        # The one door for each kind of account: operator staff only through the staff
        # LOGIN (their MFA is the identity provider's), customers never through it. Any
        # other flow reaching a staff account (a registration link, a reset) stops here.
        record("signin", "wrong-door", request=request, user=user, flow=flow, method=method)
        raise PermissionDenied("This account signs in with another LOGIN button.")
    # One transaction: the old session's end, last_login, the session's registration and
    # the audit event are written together (one commit instead of four), the event last.
    with transaction.atomic():
        login(request, user, backend=BACKEND)
        now = int(time.time())
        request.session[keys.AUTH_TIME] = now
        request.session[keys.LAST_SEEN] = now
        request.session[keys.SIGNIN_METHOD] = method
        if remembered is not None:
            remember.bind_session(request, remembered)
        else:  # a full sign-in: the session no longer hangs on an earlier token
            request.session.pop(keys.REMEMBERED_BY, None)
            request.session.pop(keys.REMEMBER_UNTIL, None)
        sessions.register(request, user, method)
        detail = {"factor": factor} if factor else {}
        record("signin", "success", request=request, user=user, flow=flow, method=method, **detail)
    # The factor policy (an administrator without a required factor) may end the sign-in
    # at its prompt or its enrolment page instead; no query for anyone it does not apply to.
    response = redirect(policy.after_sign_in(request, user) or "portal:home")
    if method != STAFF_METHOD:
        devices.remember_device(request, response, user)
    if remember_as:
        entry = remember.remember(request, response, user, remember_as)
        remember.note_token(request, entry)
        record("remember.set", "success", request=request, user=user, method=remember_as)
        notify_remembered(request, user, entry)
    return response


def notify_remembered(request: HttpRequest, user: User, entry: RememberedBrowser) -> None:
    """The security notice for a new remembered browser: it skips the password and the
    code, so a browser the user did not choose to remember must be seen (and ended)."""
    notify(
        user,
        "New remembered browser",
        f"A browser at address {client_ip(request)} was remembered for LOGIN WITH "
        f"{entry.method.upper()} on {localtime(entry.created_at):%m/%d/%Y %I:%M %p}. "
        "Until it expires, that browser signs in without your password or a code. "
        f"It expires after {describe_seconds(settings.CAREGATE_REMEMBER_ME_SECONDS)}; you "
        "can end it sooner under Setup → My Account.",
    )


def checked_user(state: FlowState) -> User | None:
    """The user whose password this sign-in attempt checked, if still active and in the
    same security state: a password reset, a Reset Registration or a new phone since the
    password step ends the attempt (its password may be the one that leaked)."""
    user = active_user(state.data.get("user_id"))
    mark = state.data.get("security_mark", "")
    if user is None or not constant_time_compare(mark, remember.fingerprint(user)):
        return None
    return user


def active_user(user_id: int | None) -> User | None:
    """Re-read the user at the end of a flow: they may have been disabled meanwhile."""
    if user_id is None:
        return None
    return rowsql.get(User, {"id": user_id, "is_active": True})  # see rowsql: every sign-in


def require_mfa_method(expected: str) -> UserCheck:
    """A Credentials check: the user registered ``expected`` (phone or email) for MFA.

    Anyone else is told which LOGIN button is theirs, or to complete MFA registration.
    """

    def check(user: User) -> Result | None:
        method = user.usable_mfa_method
        if method == expected:
            return None
        notice = method if method != User.MfaMethod.NONE else "unregistered"
        return Render({"notice": notice}, template="flows/wrong_method.html")

    return check
