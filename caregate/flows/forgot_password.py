"""The guide's "Forgot or Reset Password".

LOGIN WITH PHONE or LOGIN WITH EMAIL → "Forgot your password?" → Email Address → Send
verification code → the 6-digit code → Verify code → Continue → (users registered with a
phone) Send Code or Call Me → New Password, Confirm New Password → Continue → the home page.

Email-only users skip the phone step, as the guide's note says; a phone user never does:
the step is chosen from the account, and the password is saved only when every factor the
account has registered was proven in this flow instance (checked again at the end, against
the account as it is then). Afterwards every other session ends, remembered browsers are
forgotten, and the user is told by email and in the Message Center.

Issue #11: "a password reset asks for the strongest enrolled factor". The emailed code
stays first (the guide's mailbox proof); the second step is then the account's strongest
enrolled factor the deployment allows (caregate/factors/registry.py) when it is stronger
than the account's phone or email: a passkey, else an authenticator app, instead of the
phone. Recovery codes never are that step: they are the fallback of a lost factor, and a
reset that took one would let whoever finds the printed sheet and reads the mailbox past
the passkey or app. A user who lost the stronger factor calls the help desk (Reset
Registration). The factor is chosen when the email is verified and re-read at every step.
Where the deployment's policy turned the account's own factor off (the "aal2" profile:
email is no second factor) and it has no stronger one, the reset stops after the emailed
code with the sign-in's "turned off" page: the mailbox alone must not sign in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.factors import policy, recovery, registry
from caregate.factors.models import AuthenticatorApp
from caregate.factors.registry import SecondFactor
from caregate.flows.engine import Advance, Flow, FlowState, Render, Restart, Result, When
from caregate.flows.signin import active_user, sign_in
from caregate.flows.stages.account_email import AccountEmailCode
from caregate.flows.stages.factor_choice import TURNED_OFF
from caregate.flows.stages.new_password import NewPassword
from caregate.flows.stages.phone_challenge import PhoneChallenge
from caregate.passkeys.models import Passkey
from caregate.portal.notices import notify
from caregate.security import sessions
from caregate.verification.models import RememberedBrowser

NAME = "forgot-password"
NOTICE_SUBJECT = "Your password was changed"

# The strengths of the guides' own factors, as LOGIN WITH EMAIL / PHONE describe them
# (caregate/flows/email_login.py, phone_login.py): a stronger enrolled factor replaces them.
OWN_STRENGTH = {User.MfaMethod.EMAIL: 10, User.MfaMethod.PHONE: 20}
# Factors a reset never asks for, however strong they claim to be (see the module's note).
FALLBACKS = frozenset({recovery.KEY})
FACTOR_STAGE = "factor"  # the URL segment of the stronger factor's step
START_AGAIN = "Please start again."
FACTOR_HEADING = "Reset your password with your passkey"
FACTOR_TEMPLATE = "flows/forgot_password_factor.html"


def reset_factor(user: User) -> SecondFactor | None:
    """The factor a reset of ``user``'s password asks for after the emailed code, when it is
    stronger than the account's phone or email (None: the guide's phone step, or nothing)."""
    floor = OWN_STRENGTH.get(user.usable_mfa_method, OWN_STRENGTH[User.MfaMethod.PHONE])
    factor = registry.strongest(user, floor=floor)
    return factor if factor is not None and factor.key not in FALLBACKS else None


def own_factor_allowed(user: User) -> bool:
    """Whether the deployment's policy still lets the account's own factor (email or
    phone) verify it (caregate/factors/policy.py)."""
    return policy.allowed(str(user.usable_mfa_method))


def stronger_required(state: FlowState) -> bool:
    return bool(state.data.get("reset_factor"))


def phone_required(state: FlowState) -> bool:
    """Everyone but an email-only account goes through the phone step (fails closed),
    unless a stronger factor is asked instead."""
    return state.data.get("mfa_method") != User.MfaMethod.EMAIL and not stronger_required(state)


# --- what proves a factor is the one the account has now ------------------------------


def _proof_id(key: str, user: User, data: dict[str, Any]) -> int | None:
    """The enrolled thing the factor's stage just verified: the passkey it named, the
    account's app row (a removed and re-added app is a new row, so a proof of the old one
    does not count)."""
    if key == "passkey":
        return data.get("passkey_id")
    if key == "authenticator-app":
        return AuthenticatorApp.objects.filter(user=user).values_list("pk", flat=True).first()
    return None


def _still_enrolled(factor: SecondFactor, user: User, proof_id: object) -> bool:
    if factor.key == "passkey":
        return Passkey.objects.filter(pk=proof_id, user=user).exists()
    if factor.key == "authenticator-app":
        return AuthenticatorApp.objects.filter(pk=proof_id, user=user).exists()
    return factor.enrolled(user)


@dataclass(frozen=True)
class NotingFactor:
    """The email code stage, noting on Advance which stronger factor (if any) comes next:
    decided once from the account the code verified, re-checked at every later step."""

    stage: AccountEmailCode

    @property
    def key(self) -> str:
        return self.stage.key

    @property
    def template(self) -> str:
        return self.stage.template

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        result = self.stage.handle(request, state)
        if not isinstance(result, Advance):
            return result
        user = active_user(result.data.get("user_id"))
        factor = reset_factor(user) if user is not None else None
        if user is not None and factor is None and not own_factor_allowed(user):
            return self._turned_off(request, state, user)
        return Advance({**result.data, "reset_factor": factor.key if factor else ""})

    @staticmethod
    def _turned_off(request: HttpRequest, state: FlowState, user: User) -> Render:
        """The policy turned the account's own factor off (the "aal2" profile: email) and it
        has no stronger one: a reset must not sign in with the mailbox alone, which the
        sign-in itself no longer accepts. The same page as the sign-in's."""
        method = user.usable_mfa_method
        record("password.reset.factor", "factor-off", request=request, user=user, flow=NAME)
        context = {
            "factor_label": TURNED_OFF.get(method, method),
            "phone_allowed": policy.allowed("phone"),
        }
        return Render(context, status=403, template="factors/not_allowed.html")

    def __getattr__(self, name: str) -> Any:
        # The delivery-status poll reads the email stage's helpers from the current stage.
        return getattr(self.stage, name)


@dataclass(frozen=True)
class StrongerFactor:
    """The account's strongest factor (the passkey stage, the authenticator code stage), as
    the sign-in's "Try another way" runs them; only the noted factor, of the flow's user."""

    key: str = FACTOR_STAGE
    template: str = "flows/forgot_password_new.html"  # unused: the factor's stage renders

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        user = active_user(state.data.get("user_id"))
        noted = str(state.data.get("reset_factor", ""))
        factor = reset_factor(user) if user is not None else None
        # Removed, no longer allowed, or a stronger one added since: the step is not the
        # one the account asks for now.
        if user is None or factor is None or factor.key != noted:
            record("password.reset.factor", "changed", request=request, user=user, flow=NAME)
            return Restart(START_AGAIN)
        result = factor.stage.handle(request, state)
        if isinstance(result, Render):
            return self._page(result, factor)
        if not isinstance(result, Advance):
            return result
        # The factor stages verify the flow's own user; a stage naming anyone else is not
        # a proof for this account.
        named = result.data.get("user_id", user.pk)
        if named != user.pk:
            record("password.reset.factor", "other-user", request=request, user=user, flow=NAME)
            return Restart(START_AGAIN)
        record(
            "password.reset.factor",
            "success",
            request=request,
            user=user,
            flow=NAME,
            factor=factor.key,
        )
        return Advance(
            {
                "reset_factor_proven": factor.key,
                "reset_factor_id": _proof_id(factor.key, user, result.data),
                "second_factor": factor.key,
            }
        )

    @staticmethod
    def _page(result: Render, factor: SecondFactor) -> Render:
        """The factor's own page, headed for a reset, with the way out for a lost factor."""
        context = {
            **result.context,
            "wrapped_template": result.template or factor.stage.template,
            "factor_label": factor.label,
        }
        if "heading" in context:  # the passkey page's "Sign in with a passkey"
            context["heading"] = FACTOR_HEADING
        return replace(result, context=context, template=FACTOR_TEMPLATE)


def _stronger_passed(user: User, state: FlowState) -> bool | None:
    """None: the account asks for no stronger factor now. Else whether this instance proved
    the one it asks for, and that factor (the very passkey or app) is still enrolled."""
    required = reset_factor(user)
    if required is None:
        return None
    proven = str(state.data.get("reset_factor_proven", ""))
    if not proven or not constant_time_compare(proven, required.key):
        return False
    return _still_enrolled(required, user, state.data.get("reset_factor_id"))


def factors_passed(user: User, state: FlowState) -> bool:
    """This instance verified the account's email and then, as the account is now, its
    strongest factor when that is stronger than phone/email, else the phone number on
    record for a phone account (a number changed meanwhile does not count)."""
    verified_email = str(state.data.get("verified_email", "")).lower()
    if not verified_email or not constant_time_compare(verified_email, user.email.lower()):
        return False
    stronger = _stronger_passed(user, state)
    if stronger is not None:
        return stronger
    method = user.usable_mfa_method
    if not own_factor_allowed(user):
        return False
    if method == User.MfaMethod.EMAIL:
        return True
    if method == User.MfaMethod.PHONE:
        return constant_time_compare(str(state.data.get("phone_verified", "")), user.phone_number)
    return False


def finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    """Save the new password, sign in, end every other session, forget remembered
    browsers, tell the user. The engine has already deleted the instance: this runs once."""
    user = active_user(state.data.get("user_id"))
    password_hash = state.data.get("password_hash", "")
    if user is None or not password_hash or not factors_passed(user, state):
        record("password.reset", "refused", request=request, user=user, flow=NAME)
        return FORGOT_PASSWORD.restart(request, START_AGAIN)
    user.password = password_hash
    user.save(update_fields=["password"])
    record("password.reset", "success", request=request, user=user, flow=NAME)
    voided, _ = RememberedBrowser.objects.filter(user=user).delete()
    record("remember.voided", "success", request=request, user=user, flow=NAME, count=voided)
    # The stronger factor used, if any, is named in the sign-in's audit event.
    factor = str(state.data.get("second_factor", ""))
    response = sign_in(request, user, method=user.usable_mfa_method, flow=NAME, factor=factor)
    ended = sessions.end_sessions(user, keep=request.session.session_key)
    record("sessions.ended", "success", request=request, user=user, flow=NAME, count=ended)
    text = render_to_string(
        "email/password_changed.txt",
        {
            "user": user,
            "portal": settings.CAREGATE_PORTAL_NAME,
            "when": timezone.localtime(),
        },
    ).strip()
    sent = notify(user, NOTICE_SUBJECT, text)
    record("password.notice", "sent" if sent else "failed", request=request, user=user)
    return response


FORGOT_PASSWORD = Flow(
    NAME,
    title="Forgot or Reset Password",
    stages=[
        NotingFactor(
            AccountEmailCode(  # Email Address → Send verification code → Verify code → Continue
                purpose="forgot-password",
                prefilled=False,
                send_budget="reset-send",
                sent_message=(
                    "Verification code has been sent. Please copy it to the input box below."
                ),
                verified_message="E-mail address verified. You can now continue.",
                heading="Forgot your password?",
                typed_intro="Enter your email address and select Send verification code.",
            )
        ),
        When(stronger_required, StrongerFactor()),  # the passkey, or the authenticator app
        When(phone_required, PhoneChallenge(purpose="forgot-password")),  # Send Code / Call Me
        NewPassword(factors_passed=factors_passed),  # New Password, Confirm → Continue
    ],
    on_done=finish,
)
