"""The guide's "Forgot or Reset Password".

LOGIN WITH PHONE or LOGIN WITH EMAIL → "Forgot your password?" → Email Address → Send
verification code → the 6-digit code → Verify code → Continue → (users registered with a
phone) Send Code or Call Me → New Password, Confirm New Password → Continue → the home page.

Email-only users skip the phone step, as the guide's note says; a phone user never does:
the step is chosen from the account, and the password is saved only when every factor the
account has registered was proven in this flow instance (checked again at the end, against
the account as it is then). Afterwards every other session ends, remembered browsers are
forgotten, and the user is told by email and in the Message Center.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.flows.engine import Flow, FlowState, When
from caregate.flows.signin import active_user, sign_in
from caregate.flows.stages.account_email import AccountEmailCode
from caregate.flows.stages.new_password import NewPassword
from caregate.flows.stages.phone_challenge import PhoneChallenge
from caregate.portal.notices import notify
from caregate.security import sessions
from caregate.verification.models import RememberedBrowser

NAME = "forgot-password"
NOTICE_SUBJECT = "Your password was changed"


def phone_required(state: FlowState) -> bool:
    """Everyone but an email-only account goes through the phone step (fails closed)."""
    return state.data.get("mfa_method") != User.MfaMethod.EMAIL


def factors_passed(user: User, state: FlowState) -> bool:
    """This instance verified the account's email and, for a phone account, its phone
    number on record now (a number changed meanwhile does not count)."""
    verified_email = str(state.data.get("verified_email", "")).lower()
    if not verified_email or not constant_time_compare(verified_email, user.email.lower()):
        return False
    method = user.usable_mfa_method
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
        return FORGOT_PASSWORD.restart(request, "Please start again.")
    user.password = password_hash
    user.save(update_fields=["password"])
    record("password.reset", "success", request=request, user=user, flow=NAME)
    voided, _ = RememberedBrowser.objects.filter(user=user).delete()
    record("remember.voided", "success", request=request, user=user, flow=NAME, count=voided)
    response = sign_in(request, user, method=user.usable_mfa_method, flow=NAME)
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
        AccountEmailCode(  # Email Address → Send verification code → Verify code → Continue
            purpose="forgot-password",
            prefilled=False,
            send_budget="reset-send",
            sent_message="Verification code has been sent. Please copy it to the input box below.",
            verified_message="E-mail address verified. You can now continue.",
            heading="Forgot your password?",
            typed_intro="Enter your email address and select Send verification code.",
        ),
        When(phone_required, PhoneChallenge(purpose="forgot-password")),  # Send Code / Call Me
        NewPassword(factors_passed=factors_passed),  # New Password, Confirm → Continue
    ],
    on_done=finish,
)
