"""The guide's "Section 1 – Current Portal User; MFA Registration only", and the same
enrollment reached from the emailed link (Section 2 and the registration helpers).

username + password → LOGIN METHOD (PHONE / EMAIL) → work email → Send verification code
→ Verify code → "The code has been verified. You can now continue." → New Password,
Confirm New Password → Create → (PHONE) Country Code, Phone Number → Send Code or Call Me
→ the home page (after the Terms of Use, for new users).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.flows.engine import Advance, Flow, FlowState, Render, Result, Stage, When
from caregate.flows.signin import active_user, sign_in
from caregate.flows.stages.choose_method import ChooseMethod, chose_phone, offered
from caregate.flows.stages.credentials import Credentials
from caregate.flows.stages.email_code import EmailCode
from caregate.flows.stages.phone_challenge import PhoneChallenge
from caregate.flows.stages.set_password import NewPasswordForm, SetPassword
from caregate.flows.stages.user_info import EMAIL_TAKEN
from caregate.portal.notices import mask_email, notify
from caregate.verification.ratelimit import CACHE_ERRORS

NAME = "mfa-registration"
LINK_NAME = "complete-registration"
# A second Create within this long tells of the same change of address only once.
NOTICE_ONCE_SECONDS = 600


def needs_registration(user: User) -> Result | None:
    """Users who already registered MFA sign in with their button instead."""
    if user.usable_mfa_method == User.MfaMethod.NONE:
        return None
    return Render({"notice": "registered"}, template="flows/wrong_method.html")


def email_available(email: str, state: FlowState) -> str:
    """The work email may be the user's own, but not another account's."""
    taken = User.objects.with_email(email).exclude(pk=state.data.get("user_id")).exists()
    return EMAIL_TAKEN if taken else ""


@dataclass(frozen=True)
class CreatePassword(SetPassword):
    """New Password → Create, which saves the verified work email: refused here when the
    address is another account's.

    The email step does not ask (it sends the code to any address, so the page is the same
    whether or not the address has an account): asking there let anyone with a sign-in
    test addresses. Here the code has been verified, so the user has shown the mailbox is
    theirs and the answer tells them nothing new. The database's unique email is the
    backstop for a registration that takes the address between this check and the save.
    """

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        if request.method == "POST" and request.POST.get("action") != "change":
            refusal = email_available(state.data.get("verified_email", ""), state)
            user = active_user(state.data.get("user_id"))
            if refusal and user is not None:
                form = NewPasswordForm(request.POST, user=user)
                form.is_valid()
                form.add_error(None, refusal)
                record("mfa.email", "in-use", request=request, user=user, flow=state.raw["flow"])
                return Render(self._context(state, form))
        before = active_user(state.data.get("user_id"))  # the account as it was
        result = super().handle(request, state)
        if isinstance(result, Advance) and before is not None:
            # Create saved the verified work email (SetPassword): no need to read it back.
            tell_old_address(before, state.data.get("verified_email", ""))
        return result


def _first_to_tell(user: User, new_email: str) -> bool:
    """Whether this request is the first to tell of this change of address.

    Create pressed twice: both requests read the old address before either saved it, and
    the flow engine throws the second one's state away only after its stage ran. An
    atomic add in the shared cache (where the rate limits count) lets one of them tell.
    If the cache cannot be reached, tell anyway: two notices are better than none.
    """
    change = f"{user.pk}|{user.email.lower()}|{new_email.lower()}"
    key = "caregate:email-replaced:" + hashlib.sha256(change.encode()).hexdigest()[:32]
    try:
        return bool(cache.add(key, 1, timeout=NOTICE_ONCE_SECONDS))
    except CACHE_ERRORS:
        return True


def tell_old_address(user: User, new_email: str) -> None:
    """The registration replaced the account's email (``user`` as read before) with the
    verified work email: tell the address it had. Someone who learned the password could
    otherwise register the account to a mailbox of their own without its owner hearing."""
    old_email = user.email
    if not old_email or not new_email or old_email.lower() == new_email.lower():
        return
    if not _first_to_tell(user, new_email):
        return
    notify(
        user,
        "New email address",
        f"The email address for your account {user.username} was changed from "
        f"{mask_email(old_email)} to {mask_email(new_email)} during its multi-factor "
        "authentication registration, together with its password. Notices and email codes "
        "now go to the new address.",
        email_to=[old_email],
    )


def finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    """Record the MFA registration, then sign in (the Terms of Use come before home)."""
    user = active_user(state.data.get("user_id"))
    if user is None or user.is_operator_staff:  # staff MFA is the identity provider's
        return MFA_REGISTRATION.restart(request, "Please start again.")
    if state.data.get("method") not in offered():
        # The policy turned this method off while the registration was under way.
        record("mfa.registered", "factor-off", request=request, user=user, flow=NAME)
        return MFA_REGISTRATION.restart(request, "Please start again.")
    if state.data.get("method") == "phone":
        user.mfa_method = User.MfaMethod.PHONE
        user.phone_number = state.data["phone_verified"]
    else:
        user.mfa_method = User.MfaMethod.EMAIL
        user.phone_number = ""
    user.mfa_registered_at = timezone.now()
    user.save()
    record("mfa.registered", user.mfa_method, request=request, user=user, flow=state.raw["flow"])
    return sign_in(request, user, method=f"registration-{user.mfa_method}", flow=NAME)


ENROLLMENT: list[Stage] = [
    ChooseMethod(),  # "LOGIN METHOD"
    EmailCode(  # work email → Send verification code → Verify code
        purpose="mfa-registration",
        prefilled=False,
        sent_message="Verification code has been sent. Please copy it to the input box below.",
        verified_message="The code has been verified. You can now continue.",
        advance_on_verify=True,
    ),
    CreatePassword(),  # New Password, Confirm New Password → Create
    When(chose_phone, PhoneChallenge(purpose="mfa-registration", enroll=True)),
]

MFA_REGISTRATION = Flow(
    NAME,
    title="MFA Registration",
    stages=[
        Credentials(
            method="username",
            check_user=needs_registration,
            heading="Complete your multi-factor authentication registration",
            button="Login",
        ),
        *ENROLLMENT,
    ],
    on_done=finish,
)

# The same enrollment, for a user who proved who they are by the emailed link.
COMPLETE_REGISTRATION = Flow(
    LINK_NAME, title="Complete your registration", stages=ENROLLMENT, on_done=finish
)
