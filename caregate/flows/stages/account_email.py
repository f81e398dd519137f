"""The email code stage of "Forgot your password?": the typed address names the account.

The page and the work are the same whether or not the address belongs to an account that
can reset its password, so the page never tells who has an account: an address without
one (or a disabled account's) gets the same "code sent" page, countdown, cooldown and send
budgets, but its code is never delivered and can never verify. The account is known to
the rest of the flow only once its own emailed code was verified.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.delivery.email import describe_seconds
from caregate.flows.engine import Advance, FlowState, Render, Restart, Result
from caregate.flows.events import record_step
from caregate.flows.forms import EmailForm
from caregate.flows.registration_links import send_registration_link
from caregate.flows.stages.email_code import TOO_MANY_SENDS, EmailCode
from caregate.security.client import client_ip
from caregate.verification import ratelimit
from caregate.verification.codes import ResendCooldown, SendBudgetSpent
from caregate.verification.models import VerificationCode

UNREGISTERED_TEMPLATE = "flows/forgot_password_unregistered.html"


def find_account(email: str) -> User | None:
    """The active account of ``email`` (addresses are unique, whatever their case)."""
    return User.objects.filter(email__iexact=email.strip(), is_active=True).first()


@dataclass(frozen=True)
class AccountEmailCode(EmailCode):
    """EmailCode for a typed address, advancing with the account it verified."""

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        own = state.stage(self.key)
        if request.method == "POST" and request.POST.get("action") == "change":
            # Another address will be typed: it is looked up afresh.
            state.data.pop("user_id", None)
        result = super().handle(request, state)
        if isinstance(result, Advance):
            return self._verified(request, state, own, result)
        return result

    # -- sending: the same for every address, delivered only to an account's --
    def _send(self, request: HttpRequest, state: FlowState, own: dict[str, Any]) -> Result:
        if own.get("verified"):
            return super()._send(request, state, own)
        if not own.get("sent"):
            form = EmailForm(request.POST)
            if not form.is_valid():
                return super()._send(request, state, own)  # the form's errors
            account = find_account(form.cleaned_data["email"])
            if account is not None:
                state.data["user_id"] = account.pk
            else:
                state.data.pop("user_id", None)
                own["email"] = form.cleaned_data["email"]
        if state.data.get("user_id"):
            return super()._send(request, state, own)
        return self._send_nowhere(request, state, own)

    def _send_nowhere(self, request: HttpRequest, state: FlowState, own: dict[str, Any]) -> Result:
        """What EmailCode._send does, minus the email: the same cooldown, the same budgets
        (per address and per client), the same page; the code row exists (so the countdown
        and "Send new code" behave alike) but holds no hash any code can match."""
        email = own["email"]
        budget = [
            ("code-send:destination", email),
            ("code-send:client", client_ip(request)),
        ]
        try:
            issued = self.verifier(state).issue(
                "email", email, within_budget=lambda: ratelimit.hit_all(budget)
            )
        except ResendCooldown as wait:
            error = f"Please wait {wait.seconds_left} seconds before asking for a new code."
            return self._render(state, own, error=error)
        except SendBudgetSpent:
            record_step(request, state, "code.send", "throttled", channel="email")
            return self._render(state, own, error=TOO_MANY_SENDS)
        # An empty hash never equals an HMAC: no typed code verifies for this address.
        VerificationCode.objects.filter(pk=issued.record.pk).update(code_hash="")
        own["sent"] = True
        record_step(request, state, "code.send", "no-account", channel="email")
        return self._render(state, own, info=self.sent_message)

    # -- verified: the account goes on, or is told to complete its registration --
    def _verified(
        self, request: HttpRequest, state: FlowState, own: dict[str, Any], result: Advance
    ) -> Result:
        user = User.objects.filter(pk=state.data.get("user_id"), is_active=True).first()
        verified = result.data.get("verified_email", "")
        # The account may have been disabled, or its address changed, since the code went.
        if user is None or not constant_time_compare(user.email.lower(), verified.lower()):
            return Restart("Please start again.")
        method = user.usable_mfa_method
        if method == User.MfaMethod.NONE:
            return self._unregistered(request, state, own, user)
        return Advance(
            {
                **result.data,
                "user_id": user.pk,
                "email": user.email,
                "phone": user.phone_number,
                "mfa_method": method,
            }
        )

    def _unregistered(
        self, request: HttpRequest, state: FlowState, own: dict[str, Any], user: User
    ) -> Result:
        """No second factor to reset the password with: the mailbox is proven, so the
        registration link (which completes MFA registration, new password included) goes
        to it, once per flow and within the link budget of Registration Error's Reset."""
        if not own.get("link_sent"):
            own["link_sent"] = True
            if ratelimit.hit("link-request:account", user.username):
                outcome = "sent" if send_registration_link(user) else "failed"
            else:
                outcome = "throttled"
            record(
                "password.reset.unregistered",
                outcome,
                request=request,
                user=user,
                flow=state.raw["flow"],
            )
        lifetime = describe_seconds(settings.CAREGATE_REGISTRATION_LINK_SECONDS)
        return Render({"lifetime": lifetime}, template=UNREGISTERED_TEMPLATE)
