"""Setup → My Account → Change phone number.

The current second factor again (a code to the number on record, or for an email user a
code to the account's email) → Country Code, Phone Number → Send Code or Call Me → the new
number is saved, remembered browsers and the other sessions end, and the account's email
address is told.

Also the pieces both My Account changes share (this module and change_email): the stage
that proves the current factor, the data a change starts with, the check that the
signed-in user is still the one who started it, and what every change voids.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.contrib import messages
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.flows import keys
from caregate.flows.engine import Advance, Flow, FlowState, Render, Restart, Result
from caregate.flows.signin import active_user
from caregate.flows.stages.email_code import EmailCode
from caregate.flows.stages.phone_challenge import PhoneChallenge
from caregate.portal.notices import notify
from caregate.security import sessions
from caregate.verification.models import PhoneCall, RememberedBrowser
from caregate.verification.phones import mask_phone

NAME = "change-phone"
MY_ACCOUNT = "portal:my-account"
CURRENT_KEY = "current"
NOT_REGISTERED = (
    "Your multi-factor authentication registration is not complete, so there is no second "
    "factor to change. Please call the help desk."
)
ACCOUNT_CHANGED = (
    "Your account changed while this page was open, so nothing was saved. Please start again."
)
SIGNED_IN_AGAIN = "You have signed in again since this change began. Please start again."
NOTHING_CHANGED = "That is the number already on record for you, so nothing was changed."
REMEMBERED_SESSION_ENDED = (
    "Remembered browsers were ended, including this one. Please sign in again with your password."
)


# The engine's restart messages speak of the login page; these flows start from My Account.
_RESTART_WORDING = {
    "Please start again from the login page.": "Please start again from My Account.",
    "Your sign-in took too long and has expired. Please start again.": (
        "This change took too long and has expired. Please start again from My Account."
    ),
}


class AccountFlow(Flow):
    """A flow that a signed-in user starts from My Account, and is sent back to."""

    def restart(self, request: HttpRequest, message: str) -> HttpResponse:
        return super().restart(request, _RESTART_WORDING.get(message, message))


def start_data(user: User) -> dict[str, Any]:
    """What a change starts with: who is signed in and their factors as they are now."""
    return {
        "user_id": user.pk,
        "username": user.username,
        "email": user.email,
        "phone": user.phone_number,
        "current_method": user.usable_mfa_method,
    }


@dataclass(frozen=True)
class CurrentFactor:
    """Prove the second factor on record again: a code to the phone on record for a phone
    user, a code to the account's email for an email user.

    One stage rather than two ``When`` stages: which factor is asked is decided by the
    account's method when the change began (``current_method``), and both ways keep their
    state in this one namespace. The proof is kept as ``current_verified``, apart from the
    ``phone_verified`` / ``verified_email`` the new factor's stage writes.
    """

    purpose: str
    phone_intro: str
    email_intro: str
    key: str = CURRENT_KEY
    template: str = "flows/phone_challenge.html"

    @property
    def phone_stage(self) -> PhoneChallenge:
        return PhoneChallenge(
            purpose=f"{self.purpose}:current", intro=self.phone_intro, key=self.key
        )

    @property
    def email_stage(self) -> EmailCode:
        return EmailCode(
            purpose=f"{self.purpose}:current",
            prefilled=True,
            intro=self.email_intro,
            key=self.key,
        )

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        method = state.data.get("current_method")
        if method == User.MfaMethod.PHONE:
            delegate: PhoneChallenge | EmailCode = self.phone_stage
        elif method == User.MfaMethod.EMAIL:
            delegate = self.email_stage
        else:
            return Restart(NOT_REGISTERED)
        result = delegate.handle(request, state)
        if isinstance(result, Advance):
            return Advance({"current_verified": method})
        if isinstance(result, Render):
            return replace(result, template=result.template or delegate.template)
        return result

    def current_call(self, own: dict[str, Any]) -> PhoneCall | None:
        # The call-status poll of a phone user's current-number call.
        return self.phone_stage.current_call(own)


def owner(request: HttpRequest, state: FlowState) -> tuple[User | None, str]:
    """The signed-in user the change is for, or (None, why it must not be saved).

    The user signed in when the change began must still be the one signed in, still
    active, with the factors the change started from: a change begun in one session must
    never land on an account that signed in since, nor undo another change made meanwhile.
    """
    user = active_user(state.data.get("user_id"))
    if (
        user is None
        or not request.user.is_authenticated
        or request.user.pk != user.pk
        or state.data.get("current_verified") != state.data.get("current_method")
    ):
        return None, SIGNED_IN_AGAIN
    if (
        user.email != state.data.get("email")
        or user.phone_number != state.data.get("phone")
        or user.usable_mfa_method != state.data.get("current_method")
    ):
        return None, ACCOUNT_CHANGED
    return user, ""


def save_if_unchanged(user: User, state: FlowState, **fields: object) -> bool:
    """Write ``fields`` only if the account still has the factors the change started
    from, in one conditional UPDATE: an administrator's Reset Registration (or another
    change) that lands between owner()'s read and this write is never overwritten."""
    written = User.objects.filter(
        pk=user.pk,
        email=state.data.get("email"),
        phone_number=state.data.get("phone"),
        mfa_method=state.data.get("current_method"),
        is_active=True,
    ).update(**fields)
    return bool(written)


def refuse(request: HttpRequest, flow: str, why: str) -> HttpResponse:
    user = request.user if request.user.is_authenticated else None
    record("account.change", "refused", request=request, user=user, flow=flow)
    messages.error(request, why)
    return redirect(MY_ACCOUNT if user is not None else "portal:login")


def void_after_change(request: HttpRequest, user: User) -> HttpResponse | None:
    """What a new phone or email voids: every remembered browser and every other session.

    Someone who had the password and a remembered browser or a session must not keep it
    past a change of the factor that would lock them out. A session created from a
    remembered browser hangs on that token, so it ends too: the user is told why and signs
    in again (a response is returned); otherwise None and this session goes on.
    """
    RememberedBrowser.objects.filter(user=user).delete()
    ended = sessions.end_sessions(user, keep=request.session.session_key)
    record("account.change", "voided", request=request, user=user, sessions_ended=ended)
    if keys.REMEMBERED_BY in request.session:
        sessions.forget(request)
        logout(request)
        messages.info(request, REMEMBERED_SESSION_ENDED)
        return redirect("portal:login")
    return None


def finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    user, why = owner(request, state)
    if user is None:
        return refuse(request, NAME, why)
    new_phone = state.data.get("phone_verified", "")
    if not new_phone:
        return refuse(request, NAME, ACCOUNT_CHANGED)
    if new_phone == user.phone_number and user.mfa_method == User.MfaMethod.PHONE:
        messages.info(request, NOTHING_CHANGED)
        return redirect(MY_ACCOUNT)
    previous = user.usable_mfa_method
    if not save_if_unchanged(user, state, phone_number=new_phone, mfa_method=User.MfaMethod.PHONE):
        return refuse(request, NAME, ACCOUNT_CHANGED)
    user.refresh_from_db()
    record("account.phone", "changed", request=request, user=user, flow=NAME, previous=previous)
    notify(
        user,
        "New phone number",
        f"The phone number for your account {user.username} was changed to "
        f"{mask_phone(new_phone)}. Codes and calls for signing in now go to this number. "
        "Remembered browsers and your other sessions were ended.",
        email_to=[user.email],
    )
    signed_out = void_after_change(request, user)
    if signed_out is not None:
        return signed_out
    messages.success(request, f"Your phone number is now {mask_phone(new_phone)}.")
    return redirect(MY_ACCOUNT)


CHANGE_PHONE = AccountFlow(
    NAME,
    title="Change phone number",
    stages=[
        CurrentFactor(
            purpose=NAME,
            phone_intro=(
                "To change your phone number, first verify the number we have on record "
                "for you. We can send a code via SMS or phone."
            ),
            email_intro=(
                "To change your login method to phone, first verify your email address. "
                "Please click Send button."
            ),
        ),
        PhoneChallenge(
            purpose=f"{NAME}:new",
            enroll=True,
            enroll_intro=(
                "Enter your new phone number below. We can send a code via SMS or phone to "
                "make sure it is yours."
            ),
            key="new-phone",
        ),
    ],
    on_done=finish,
    start_url=MY_ACCOUNT,
)
