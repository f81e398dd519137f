"""LOGIN WITH PASSKEY (issue #11), shown on the login page when CAREGATE_PASSKEY_LOGIN is
on: no username or password is typed; the browser offers the passkeys it holds for this
site, and the one chosen (with the user's PIN, fingerprint or face) names the account.

A passkey is the password and the second factor in one: it is phishing-resistant (it
signs for this site's origin only) and verifies the user on the device.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.factors import registry
from caregate.flows.engine import Flow, FlowState
from caregate.flows.signin import active_user, sign_in
from caregate.flows.stages.passkey import PasskeyAssertion
from caregate.passkeys.models import Passkey

NAME = "passkey-login"
METHOD = "passkey"


def offered() -> bool:
    """LOGIN WITH PASSKEY: turned on, and passkeys allowed at all (a deployment that took
    "passkey" out of its factors must not keep signing people in with one)."""
    return bool(settings.CAREGATE_PASSKEY_LOGIN) and registry.allowed(METHOD)


def finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    user = active_user(state.data.get("user_id"))
    # Re-read at the end: the account may have been disabled, reset (which removes its
    # passkeys) or the passkey removed since the ceremony.
    still_enrolled = (
        user is not None
        and Passkey.objects.filter(pk=state.data.get("passkey_id"), user=user).exists()
    )
    if user is None or not still_enrolled:
        return PASSKEY_LOGIN.restart(request, "Please sign in again.")
    if not offered():
        # Turned off while this sign-in was under way.
        return PASSKEY_LOGIN.restart(request, "Please sign in with another LOGIN button.")
    if user.is_operator_staff or user.usable_mfa_method == User.MfaMethod.NONE:
        # Staff sign in with the staff LOGIN; an account whose registration is not
        # complete has no business signing in at all.
        record("signin", "wrong-door", request=request, user=user, flow=NAME, method=METHOD)
        return PASSKEY_LOGIN.restart(request, "Please sign in with another LOGIN button.")
    return sign_in(request, user, method=METHOD, flow=NAME)


PASSKEY_LOGIN = Flow(
    NAME,
    title="Passkey Login",
    stages=[PasskeyAssertion(discoverable=True)],
    on_done=finish,
)
