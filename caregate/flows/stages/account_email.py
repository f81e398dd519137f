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
from caregate.delivery import tasks
from caregate.delivery.email import describe_seconds
from caregate.delivery.models import Delivery
from caregate.flows.engine import Advance, FlowState, Render, Restart, Result
from caregate.flows.forms import EmailForm
from caregate.flows.registration_links import send_registration_link
from caregate.flows.stages.email_code import EmailCode
from caregate.verification import ratelimit
from caregate.verification.codes import IssuedCode

UNREGISTERED_TEMPLATE = "flows/forgot_password_unregistered.html"


def find_account(email: str) -> User | None:
    """The active customer account of ``email`` (addresses are unique, whatever their case).

    Operator staff accounts are never found: their password is the identity provider's,
    and a reset here would give them a second way in around it."""
    return User.objects.with_email(email).filter(is_active=True).filter(oidc_subject="").first()


@dataclass(frozen=True)
class AccountEmailCode(EmailCode):
    """EmailCode for a typed address, advancing with the account it verified."""

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        own = state.stage(self.key)
        if request.method == "POST" and request.POST.get("action") == "change":
            # Another address will be typed: it is looked up afresh.
            state.data.pop("user_id", None)
            state.data.pop("username", None)
        result = super().handle(request, state)
        if isinstance(result, Advance):
            return self._verified(request, state, own, result)
        return result

    # -- sending: the same for every address, delivered only to an account's --
    def _send(self, request: HttpRequest, state: FlowState, own: dict[str, Any]) -> Result:
        if not own.get("sent") and not own.get("verified"):
            form = EmailForm(request.POST)
            if form.is_valid():
                account = find_account(form.cleaned_data["email"])
                if account is not None:
                    state.data["user_id"] = account.pk
                    state.data["username"] = account.username
                else:
                    state.data.pop("user_id", None)
                    state.data.pop("username", None)
        # EmailCode's own send for every address (the same cooldown, budgets, page and
        # messages); only deliver() below tells the two apart, and it says nothing.
        return super()._send(request, state, own)

    def deliver(self, state: FlowState, email: str, issued: IssuedCode) -> Delivery | None:
        """Queue a delivery for every address, one that sends nothing for an address
        without an account: the request does the same work either way, and the mail
        server's round trip (and whether it failed) happens in the worker, outside it.
        The page never shows this delivery's state (None), which would tell the two
        apart; a lost email is another Send new code."""
        if not self.withholds(state):
            super().deliver(state, email, issued)
            return None
        # No account (or a disabled one): nothing is sent, and the code was issued without
        # a hash (withholds() below), so none ever verifies.
        tasks.enqueue_withheld(self.purpose, flow_id=state.id)
        return None

    def withholds(self, state: FlowState) -> bool:
        # Decided before the code is issued, so the code row is written once, hashless,
        # with the same statements as an account's: no second UPDATE for these only.
        return not state.data.get("user_id")

    def send_outcome(self, state: FlowState, word: str) -> str:
        # The same statements either way (one audit append); only the event's outcome
        # tells the operator that nothing went out.
        return "withheld" if self.withholds(state) else super().send_outcome(state, word)

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
                "username": user.username,
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
