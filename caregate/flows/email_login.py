"""The guide's "Section 4 – Email Login".

LOGIN WITH EMAIL → "Sign in with your email address" → "Verification is necessary.
Please click Send button." → Send verification code → Verify code → "E-mail address
verified. You can now continue." → Continue → the home page.

A user with other enrolled factors (authenticator app, recovery codes, passkeys) sees "Try
another way" on the code page (caregate/flows/stages/factor_choice.py); Remember Me stays
bound to this button whichever factor was used.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse

from caregate.flows.engine import Flow, FlowState
from caregate.flows.signin import checked_user, require_mfa_method, sign_in
from caregate.flows.stages.credentials import Credentials
from caregate.flows.stages.email_code import EmailCode
from caregate.flows.stages.factor_choice import FactorChoice, own_factor

NAME = "email-login"


def finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    user = checked_user(state)
    if user is None:
        return EMAIL_LOGIN.restart(request, "Please sign in again.")
    remember_as = "email" if state.data.get("remember_me") else ""
    factor = state.data.get("second_factor", "email")
    return sign_in(
        request, user, method="email", flow=NAME, remember_as=remember_as, factor=factor
    )


EMAIL_LOGIN = Flow(
    NAME,
    title="Email Login",
    stages=[
        Credentials(method="email", check_user=require_mfa_method("email"), note_factors=True),
        FactorChoice(
            own_factor(
                "email",
                "Email a code to my email address",
                EmailCode(
                    purpose="email-login",
                    lifetime_setting="CAREGATE_EMAIL_LOGIN_CODE_SECONDS",
                    prefilled=True,
                ),
                strength=10,
            )
        ),
    ],
    on_done=finish,
)
