"""The guide's "Section 3 – Phone Login".

LOGIN WITH PHONE → "Sign in with your email address" → "We have the following number on
record for you…" (XXX-XXX-9885) → Send Code (SMS: "Enter your verification code below, or
send a new code" → Verify Code) or Call Me (answer and key in) → the home page.

A user with other enrolled factors sees "Try another way" on the phone page
(caregate/flows/stages/factor_choice.py); Remember Me stays bound to this button.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from caregate.flows.engine import Flow, FlowState
from caregate.flows.signin import checked_user, require_mfa_method, sign_in
from caregate.flows.stages.credentials import Credentials
from caregate.flows.stages.factor_choice import FactorChoice, own_factor
from caregate.flows.stages.phone_challenge import PhoneChallenge

NAME = "phone-login"


def finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    user = checked_user(state)
    factor = state.data.get("second_factor", "phone")
    # The phone's proof is the number on record now (one changed meanwhile does not count).
    if user is None or (
        factor == "phone" and user.phone_number != state.data.get("phone_verified")
    ):
        return PHONE_LOGIN.restart(request, "Please sign in again.")
    remember_as = "phone" if state.data.get("remember_me") else ""
    return sign_in(
        request, user, method="phone", flow=NAME, remember_as=remember_as, factor=factor
    )


PHONE_LOGIN = Flow(
    NAME,
    title="Phone Login",
    stages=[
        Credentials(method="email", check_user=require_mfa_method("phone"), note_factors=True),
        FactorChoice(
            own_factor(
                "phone", "Send a code to my phone", PhoneChallenge(purpose="phone-login"), 20
            )
        ),
    ],
    on_done=finish,
)
