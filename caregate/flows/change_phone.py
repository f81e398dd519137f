"""Setup → My Account → Change phone number.

The current second factor again (a code to the number on record, or for an email user a
code to the account's email; where the factor policy turned that factor off, the
account's strongest allowed factor instead) → Country Code, Phone Number → Send Code or
Call Me → the new number is saved, remembered browsers and the other sessions end, and
the account's email address is told.

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
from django.utils.crypto import constant_time_compare

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.factors import policy, recovery, registry
from caregate.factors.models import AuthenticatorApp
from caregate.factors.registry import SecondFactor
from caregate.flows import keys
from caregate.flows.engine import Advance, Flow, FlowState, Render, Restart, Result
from caregate.flows.signin import active_user
from caregate.flows.stages.email_code import EmailCode
from caregate.flows.stages.factor_choice import TURNED_OFF
from caregate.flows.stages.phone_challenge import PhoneChallenge
from caregate.passkeys.models import Passkey
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
NO_ALLOWED_FACTOR = (
    "{factor} no longer counts as a second factor here, and your account has no authenticator "
    "app or passkey to prove it is you, so nothing can be changed. Please call the help desk."
)
OWN_FACTOR_LABEL = {
    User.MfaMethod.EMAIL: "An emailed code",
    User.MfaMethod.PHONE: "A text message",
}
PASSKEY_HEADING = "Verify it is you with a passkey"
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


# Factors never asked for instead of a turned-off one: recovery codes are the fallback of a
# lost factor, and a printed sheet plus a session must not set up a new way in.
FALLBACKS = frozenset({recovery.KEY})


def own_factor_counts(method: object) -> bool:
    """Whether the policy still lets the account's own factor (email or phone) prove it is
    the user (caregate/factors/policy.py): settings only, no query."""
    return policy.allowed(str(method))


def proof_factor(user: User) -> SecondFactor | None:
    """The strongest factor ``user`` has enrolled that the policy allows, recovery codes
    aside: what a change asks for when the account's own factor no longer counts. Stops
    at the first enrolled one (a query per factor looked at)."""
    candidates = sorted(registry.registered(), key=lambda factor: -factor.strength)
    for factor in candidates:
        if factor.key not in FALLBACKS and policy.allowed(factor.key) and factor.enrolled(user):
            return factor
    return None


def _proof_id(factor: SecondFactor, user: User, data: dict[str, Any]) -> int | None:
    """The enrolled thing the factor's stage just verified: the passkey it named, or the
    account's app row (a removed and re-added app is a new row: its proof does not count)."""
    if factor.key == "passkey":
        return data.get("passkey_id")
    if factor.key == "authenticator-app":
        return AuthenticatorApp.objects.filter(user=user).values_list("pk", flat=True).first()
    return None


def _still_enrolled(factor: SecondFactor, user: User, proof_id: object) -> bool:
    if factor.key == "passkey":
        return proof_id is not None and Passkey.objects.filter(pk=proof_id, user=user).exists()
    if factor.key == "authenticator-app":
        return (
            proof_id is not None
            and AuthenticatorApp.objects.filter(pk=proof_id, user=user).exists()
        )
    return factor.enrolled(user)


@dataclass(frozen=True)
class CurrentFactor:
    """Prove the second factor on record again: a code to the phone on record for a phone
    user, a code to the account's email for an email user.

    One stage rather than two ``When`` stages: which factor is asked is decided by the
    account's method when the change began (``current_method``), and both ways keep their
    state in this one namespace. The proof is kept as ``current_verified``, apart from the
    ``phone_verified`` / ``verified_email`` the new factor's stage writes.

    Where the factor policy turned the account's own factor off (the "aal2" profile: email
    is no second factor), the mailbox alone must not change the account's factors: the
    stage runs the user's strongest allowed factor's own stage instead (the passkey, else
    the authenticator app: the stage objects "Try another way" runs, see
    caregate/factors/registry.py), re-chosen from the account at every request, and
    refuses the change for a user without one. That proof names the factor and the very
    passkey or app row (``current_factor_id``); owner() checks both again at the end.
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
        if method not in (User.MfaMethod.PHONE, User.MfaMethod.EMAIL):
            return Restart(NOT_REGISTERED)
        if not own_factor_counts(method):
            return self._stronger(request, state, str(method))
        if method == User.MfaMethod.PHONE:
            delegate: PhoneChallenge | EmailCode = self.phone_stage
        else:
            delegate = self.email_stage
        result = delegate.handle(request, state)
        if isinstance(result, Advance):
            return Advance({"current_verified": method})
        if isinstance(result, Render):
            return replace(result, template=result.template or delegate.template)
        return result

    def _stronger(self, request: HttpRequest, state: FlowState, method: str) -> Result:
        """The account's own factor is off: its strongest allowed factor, or a refusal."""
        user = active_user(state.data.get("user_id"))
        if user is None or not request.user.is_authenticated or request.user.pk != user.pk:
            return Restart(SIGNED_IN_AGAIN)
        factor = proof_factor(user)
        if factor is None:
            record("account.change", "factor-off", request=request, user=user,
                   flow=state.raw["flow"], channel=method)  # fmt: skip
            label = TURNED_OFF.get(method, method)
            return Restart(NO_ALLOWED_FACTOR.format(factor=label))
        result = factor.stage.handle(request, state)
        if isinstance(result, Render):
            context = dict(result.context)
            if "heading" in context:  # the passkey page's "Sign in with a passkey"
                context["heading"] = PASSKEY_HEADING
            return replace(
                result, context=context, template=result.template or factor.stage.template
            )
        if not isinstance(result, Advance):
            return result
        # The factor stages verify the flow's own user; a stage naming anyone else is no
        # proof for this account.
        if result.data.get("user_id", user.pk) != user.pk:
            record("account.change", "other-user", request=request, user=user,
                   flow=state.raw["flow"], channel=factor.key)  # fmt: skip
            return Restart(SIGNED_IN_AGAIN)
        return Advance(
            {
                "current_verified": factor.key,
                "current_factor_id": _proof_id(factor, user, result.data),
            }
        )

    def current_call(self, own: dict[str, Any]) -> PhoneCall | None:
        # The call-status poll of a phone user's current-number call.
        return self.phone_stage.current_call(own)


def _stronger_proven(user: User, proof: dict[str, Any]) -> bool:
    """This proof was of the strongest allowed factor the account has now, and that very
    passkey or app is still the account's (removed meanwhile, or a stronger one added: no)."""
    factor = proof_factor(user)
    proven = str(proof.get("current_verified", ""))
    if factor is None or not constant_time_compare(proven, factor.key):
        return False
    return _still_enrolled(factor, user, proof.get("current_factor_id"))


# What owner() reads of a change's data: who, the factors the change started from, and what
# the current-factor stage verified. Kept by itself where a proof outlives its flow (the
# Add a passkey ticket, caregate/passkeys/flows.py).
PROOF_FIELDS = (
    "user_id",
    "current_method",
    "current_verified",
    "current_factor_id",
    "email",
    "phone",
)


def proof_of(state: FlowState) -> dict[str, Any]:
    return {name: state.data.get(name) for name in PROOF_FIELDS}


def owner(request: HttpRequest, state: FlowState) -> tuple[User | None, str]:
    """The signed-in user the change is for, or (None, why it must not be saved)."""
    return owner_of_proof(request, state.data)


def owner_of_proof(request: HttpRequest, proof: dict[str, Any]) -> tuple[User | None, str]:
    """The signed-in user a proof of the current factor is for, or (None, why it no
    longer counts).

    The user signed in when the change began must still be the one signed in, still
    active, with the factors the change started from: a change begun in one session must
    never land on an account that signed in since, nor undo another change made meanwhile.
    Where the policy no longer counts the account's own factor, the proof must be of the
    account's strongest allowed factor as it is now (a policy switched on meanwhile makes
    an emailed code's proof count for nothing).
    """
    user = active_user(proof.get("user_id"))
    method = proof.get("current_method")
    own_counts = own_factor_counts(method)  # settings only: no query for most users
    if (
        user is None
        or not request.user.is_authenticated
        or request.user.pk != user.pk
        or (own_counts and proof.get("current_verified") != method)
    ):
        return None, SIGNED_IN_AGAIN
    if (
        user.email != proof.get("email")
        or user.phone_number != proof.get("phone")
        or user.usable_mfa_method != method
        or (not own_counts and not _stronger_proven(user, proof))
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
