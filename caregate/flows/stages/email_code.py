"""The email code stage: Send verification code → Verify code / Send new code → Continue."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from caregate.delivery import tasks
from caregate.delivery.email import describe_seconds, send_code_email
from caregate.delivery.models import Delivery
from caregate.flows.engine import Advance, FlowState, Render, Result
from caregate.flows.events import record_step
from caregate.flows.forms import CodeForm, EmailForm
from caregate.security.client import client_ip
from caregate.verification import ratelimit
from caregate.verification.codes import (
    CheckResult,
    CodeStatus,
    CodeVerifier,
    IssuedCode,
    ResendCooldown,
    SendBudgetSpent,
)
from caregate.verification.models import VerificationCode

SEND_FAILED = "We could not send the email just now. Please try again in a moment."
TOO_MANY_SENDS = "Too many codes have been requested. Please wait a while and try again."
TOO_MANY_CHECKS = "Too many attempts from this computer. Please wait a while and try again."
NOT_SENT = "Please select Send verification code first."
NOT_VERIFIED = "Please verify your email address before you continue."
# While the delivery worker has the code (background delivery, caregate.delivery.tasks).
DELIVERY_MESSAGES = {
    tasks.SENDING: "Sending the verification code…",
    tasks.TRYING: "Still trying to send the verification code…",
    tasks.FAILED: "We could not deliver the code: try again or choose another method.",
}


def code_error(result: CheckResult) -> str:
    """The message for a code that was not accepted (shared by every code stage)."""
    if result.status is CodeStatus.WRONG:
        left = result.attempts_left
        return (
            "That code is not correct. Please check it and try again "
            f"({left} attempt{'s' if left != 1 else ''} left)."
        )
    return CODE_MESSAGES[result.status]


CODE_MESSAGES = {
    CodeStatus.EXPIRED: "This code has expired. Select Send new code to get a new one.",
    CodeStatus.USED: "This code has already been used. Select Send new code to get a new one.",
    CodeStatus.LOCKED: (
        "Too many wrong codes: this code can no longer be used. "
        "Select Send new code to get a new one."
    ),
    CodeStatus.MISSING: NOT_SENT,
}


# A flow may refuse an address before a code is sent (e.g. one another account uses):
# it returns the message to show, or "" to go on.
EmailCheck = Callable[[str, FlowState], str]


@dataclass(frozen=True)
class EmailCode:
    """Prove control of an email address with a one-time code.

    ``prefilled``: the address comes from the flow (``state.data["email"]``) and cannot be
    edited (email login); otherwise the user types it and may "Change" it (registration).
    """

    purpose: str
    lifetime_setting: str = "CAREGATE_EMAIL_CODE_SECONDS"
    prefilled: bool = True
    # The rate-limit scopes of the sends (<budget>:account, :destination, :client). A flow
    # anyone can start for any address (Forgot password) has budgets of its own, so that
    # spending them cannot stop the address's owner from signing in.
    send_budget: str = "code-send"
    heading: str = "Email verification"
    intro: str = "Verification is necessary. Please click Send button."
    # Shown above a typed address before a code was sent (e.g. Forgot password's).
    typed_intro: str = ""
    sent_message: str = (
        "Verification code has been sent to your inbox. Please copy it to the input box below."
    )
    resent_message: str = (
        "A new verification code has been sent to your inbox. The code sent before no "
        "longer works."
    )
    verified_message: str = "E-mail address verified. You can now continue."
    check_email: EmailCheck | None = None
    # Registration goes straight on once the code is verified (the next screen says so);
    # email login shows the verified message with a Continue button, as its guide does.
    advance_on_verify: bool = False
    key: str = "email-code"
    template: str = "flows/email_code.html"

    @property
    def lifetime(self) -> int:
        # Read on every use so that an operator's (or a test's) setting applies at once.
        return int(getattr(settings, self.lifetime_setting))

    def verifier(self, state: FlowState) -> CodeVerifier:
        # ":email" keeps it apart from a phone code of the same flow (see PhoneChallenge).
        return CodeVerifier(state.id, f"{self.purpose}:email", lifetime_seconds=self.lifetime)

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        own = state.stage(self.key)
        if request.method != "POST":
            # Showing the page writes nothing: the flow's address is shown from a copy.
            shown = {**own, "email": state.data["email"]} if self.prefilled else own
            return self._render(state, shown)
        if self.prefilled:
            own["email"] = state.data["email"]
        action = request.POST.get("action", "")
        if action in {"send", "resend"}:
            return self._send(request, state, own)
        if action == "verify":
            return self._verify(request, state, own)
        if action == "change" and not self.prefilled:
            self.verifier(state).discard()
            own.clear()
            return self._render(state, own)
        if action == "continue":
            if own.get("verified"):
                return Advance({"verified_email": own["email"]})
            return self._render(state, own, error=NOT_VERIFIED)
        return self._render(state, own)

    # -- actions --
    def _send(self, request: HttpRequest, state: FlowState, own: dict[str, Any]) -> Result:
        if own.get("verified"):
            return self._render(state, own)
        again = bool(own.get("sent"))  # "Send new code": say that a new one went out
        if not self.prefilled and not own.get("sent"):
            email_form = EmailForm(request.POST)
            if not email_form.is_valid():
                return self._render(state, own, email_form=email_form)
            refusal = (
                self.check_email(email_form.cleaned_data["email"], state)
                if self.check_email
                else ""
            )
            if refusal:
                email_form.add_error("email", refusal)
                return self._render(state, own, email_form=email_form)
            own["email"] = email_form.cleaned_data["email"]
        email = own.get("email", "")
        user_id = state.data.get("user_id")
        # An address with no account counts a key of its own in the account's place, so
        # both make the same round trips whichever budget refuses (no tell: Forgot
        # password asks for any address).
        senders = [
            (f"{self.send_budget}:account", str(user_id) if user_id else f"?{email}"),
            (f"{self.send_budget}:client", client_ip(request)),
        ]
        # The address's budget only for a send the sender's own allowed (hit_in_turn).
        destination = [(f"{self.send_budget}:destination", email)]
        try:
            issued = self.verifier(state).issue(
                "email",
                email,
                within_budget=lambda: ratelimit.hit_in_turn(senders, destination),
                withhold=self.withholds(state),
            )
        except ResendCooldown as wait:
            error = f"Please wait {wait.seconds_left} seconds before asking for a new code."
            return self._render(state, own, error=error)
        except SendBudgetSpent:
            record_step(request, state, "code.send", "throttled", channel="email")
            return self._render(state, own, error=TOO_MANY_SENDS)
        delivery = self.deliver(state, email, issued)
        word = tasks.page_state(delivery)
        if word == tasks.FAILED:
            # Never delivered, so it must not block the retry with a cooldown.
            issued.record.delete()
            record_step(request, state, "code.send", "failed", channel="email")
            return self._render(state, own, error=SEND_FAILED)
        own["sent"] = True
        # Followed on the page until sent (an email once sent stays sent: no query then).
        own["delivery"] = delivery.pk if delivery is not None and word != tasks.SENT else None
        record_step(request, state, "code.send", self.send_outcome(state, word), channel="email")
        # The countdown is the code just issued, and the delivery the one just queued: no
        # need to read either back.
        info = self.resent_message if again else self.sent_message
        return self._render(state, own, info=info, current=issued.record, delivery=delivery)

    def _verify(self, request: HttpRequest, state: FlowState, own: dict[str, Any]) -> Result:
        if own.get("verified"):
            return self._render(state, own)
        if not own.get("sent"):
            return self._render(state, own, error=NOT_SENT)
        form = CodeForm(request.POST)
        if not form.is_valid():
            return self._render(state, own, code_form=form)
        if not ratelimit.hit("code-verify:client", client_ip(request)):
            record_step(request, state, "code.verify", "throttled", channel="email")
            return self._render(state, own, error=TOO_MANY_CHECKS)
        # Only a code emailed to this address in this flow instance counts. The check and
        # its audit event are one transaction: a code is never used up unrecorded.
        with transaction.atomic():
            result = self.verifier(state).check(
                form.cleaned_data["code"], channel="email", destination=own.get("email", "")
            )
            record_step(request, state, "code.verify", result.status.value, channel="email")
        if result.status is CodeStatus.OK:
            own["verified"] = True
            if self.advance_on_verify:
                return Advance({"verified_email": own["email"]})
            return self._render(state, own)
        return self._render(state, own, error=code_error(result))

    def withholds(self, state: FlowState) -> bool:
        """Whether this flow's code is issued only to be withheld (never delivered, never
        verifying). Always False here; see account_email.py."""
        return False

    def send_outcome(self, state: FlowState, word: str) -> str:
        """The code.send audit outcome, from the delivery's page state."""
        return "sent" if word == tasks.SENT else "queued"

    def deliver(self, state: FlowState, email: str, issued: IssuedCode) -> Delivery | None:
        """Hand the code email to the delivery worker; the Delivery tells how it went, and
        None shows nothing of it. A flow whose page must not tell which addresses have an
        account overrides this (see account_email.py)."""
        return send_code_email(
            email,
            issued.code,
            self.lifetime,
            purpose=self.purpose,
            user_id=state.data.get("user_id"),
            flow_id=state.id,
            send_before=issued.record.expires_at,
        )

    def delivery_status(self, state: FlowState, known: Delivery | None = None) -> tuple[str, str]:
        """The code email's delivery: (sending | trying | sent | failed, what to say).
        ``known``: the row this request just queued (then it is not read again)."""
        own = state.stage(self.key)
        delivery_id = own.get("delivery")
        if not (delivery_id and own.get("sent") and not own.get("verified")):
            delivery = None
        elif known is not None and known.pk == delivery_id:
            delivery = known
        else:
            delivery = Delivery.objects.filter(pk=delivery_id, flow_instance_id=state.id).first()
        word = tasks.page_state(delivery)
        return word, DELIVERY_MESSAGES.get(word, self.sent_message)

    # -- page --
    def _render(
        self,
        state: FlowState,
        own: dict[str, Any],
        *,
        error: str = "",
        info: str = "",
        code_form: CodeForm | None = None,
        email_form: EmailForm | None = None,
        current: VerificationCode | None = None,
        delivery: Delivery | None = None,
    ) -> Render:
        verified = bool(own.get("verified"))
        sent = bool(own.get("sent"))
        context: dict[str, Any] = {
            "email": own.get("email", ""),
            "prefilled": self.prefilled,
            "sent": sent,
            "verified": verified,
            "error": error,
            "heading": self.heading,
            "intro": self.intro if self.prefilled else ("" if sent else self.typed_intro),
            "info": info or (self.sent_message if sent and not verified else ""),
            "verified_message": self.verified_message,
            "code_form": code_form or CodeForm(),
            "email_form": email_form or EmailForm(initial={"email": own.get("email", "")}),
            "lifetime_text": describe_seconds(self.lifetime),
        }
        if sent and not verified:
            context.update(self._timer(state, current))
            if own.get("delivery"):
                self._delivery_context(state, context, delivery)
        return Render(context)

    def _delivery_context(
        self, state: FlowState, context: dict, known: Delivery | None = None
    ) -> None:
        """Say where the code email is while the worker has it."""
        word, message = self.delivery_status(state, known)
        context["delivery_state"] = word
        if word == tasks.FAILED:
            context.update(info="", error=context["error"] or message)
        elif word != tasks.SENT:
            context["info"] = message

    def _timer(self, state: FlowState, current: VerificationCode | None) -> dict[str, Any]:
        current = current or self.verifier(state).current()
        if current is None:
            return {}
        left = (current.expires_at - timezone.now()).total_seconds()
        return {
            "expires_at": current.expires_at,
            "expires_epoch": int(current.expires_at.timestamp()),
            # The countdown counts this down from the moment the page loads: the time left
            # is relative, so a wrong clock on the user's PC does not shift it, and in
            # milliseconds, so it never calls the code expired before the server does.
            "ms_left": max(0, math.ceil(left * 1000)),
            "seconds_left": max(0, int(left)),
            "time_left": describe_seconds(int(left)),
            "code_expired": left <= 0 or current.voided_at is not None,
        }
