"""The credentials stage: "Sign in with your email address" (or legacy username)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.http import HttpRequest

from caregate.accounts import backends
from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.factors import registry
from caregate.flows.engine import Advance, FlowState, Render, Result
from caregate.flows.forms import EmailSignInForm, UsernameSignInForm
from caregate.security.client import client_ip
from caregate.verification import remember

# One wording for a wrong password, an unknown account, a disabled account and a locked
# one, so that the page never tells an attacker which of them it was.
SIGNIN_FAILED = (
    "We could not sign you in with that {what} and password. Please check them and try "
    "again. After several failed attempts, sign-in is paused for 15 minutes; use "
    "\u201cForgot your password?\u201d if you need a new password."
)

# A flow may refuse an authenticated user at this stage (e.g. the wrong MFA method):
# it returns the Result to show instead, or None to go on.
UserCheck = Callable[[User], Result | None]


@dataclass(frozen=True)
class Credentials:
    """Check the password; on success remember who the user is (not yet signed in)."""

    method: str = "email"  # "email" or "username"
    check_user: UserCheck | None = None
    heading: str = ""  # default: "Sign in with your email address" / "...username"
    button: str = "Sign in"
    key: str = "credentials"
    template: str = "flows/credentials.html"
    # The sign-ins with "Try another way" (flows/stages/factor_choice.py): note which other
    # factors the account has enrolled, once, here, so the code page does not look them
    # up on every render just to decide whether to show the link.
    note_factors: bool = False

    def _form(self, request: HttpRequest) -> EmailSignInForm | UsernameSignInForm:
        form_class = EmailSignInForm if self.method == "email" else UsernameSignInForm
        return form_class(request.POST if request.method == "POST" else None)

    def _context(self, form: EmailSignInForm | UsernameSignInForm) -> dict:
        heading = self.heading or (
            "Sign in with your email address"
            if self.method == "email"
            else "Sign in with your username"
        )
        return {"form": form, "heading": heading, "button": self.button}

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        form = self._form(request)
        if request.method != "POST" or not form.is_valid():
            return Render(self._context(form))
        identity = form.cleaned_data.get("email") or form.cleaned_data.get("username", "")
        flow = state.raw["flow"]
        # One budget per typed identity and per resolved account, shared by every flow that
        # checks a password (see accounts.backends); the client address has its own.
        attempt = backends.check_password(
            form.cleaned_data["password"],
            email=identity if self.method == "email" else None,
            username=identity if self.method == "username" else None,
            extra_limits=(("signin:client", client_ip(request)),),
            request=request,
        )
        user = attempt.user
        if user is None:
            record(
                "signin.password", attempt.outcome, request=request, username=identity, flow=flow
            )
            what = "email address" if self.method == "email" else "username"
            form.add_error(None, SIGNIN_FAILED.format(what=what))
            return Render(self._context(form))
        record("signin.password", "success", request=request, user=user, flow=flow)
        if self.check_user is not None:
            refusal = self.check_user(user)
            if refusal is not None:
                return refusal
        data = {
            "user_id": user.pk,
            "username": user.username,  # the audit's snapshot (flows/events.py)
            "email": user.email,
            "phone": user.phone_number,
            # The account's security state as the password was checked: a password
            # reset (or a Reset Registration) meanwhile voids this sign-in attempt.
            "security_mark": remember.fingerprint(user),
        }
        if self.note_factors:
            data["enrolled_factors"] = [f.key for f in registry.enrolled_factors(user)]
        return Advance(data)
