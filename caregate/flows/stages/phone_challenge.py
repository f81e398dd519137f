"""The phone challenge stage: Send Code (SMS) or Call Me (voice) to a number on record."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.db import transaction
from django.http import HttpRequest

from caregate.accounts.models import User
from caregate.delivery import tasks
from caregate.delivery.models import Delivery
from caregate.delivery.phone import queue_call, queue_sms
from caregate.flows.engine import Advance, FlowState, Render, Result
from caregate.flows.events import record_step
from caregate.flows.forms import CodeForm
from caregate.flows.stages.email_code import DELIVERY_MESSAGES, code_error
from caregate.security.client import client_ip
from caregate.verification import calls, ratelimit
from caregate.verification.codes import (
    CodeStatus,
    CodeVerifier,
    IssuedCode,
    ResendCooldown,
    SendBudgetSpent,
)
from caregate.verification.models import PhoneCall
from caregate.verification.phones import country_choices, mask_phone, validate_phone

Status = PhoneCall.Status
logger = logging.getLogger(__name__)
SMS_FAILED = "We could not send the text message just now. Please try again, or select Call Me."
CALL_FAILED = "We could not place the call just now. Please try again, or select Send Code."
TOO_MANY_SENDS = (
    "Too many codes or calls have been requested for this number. Please wait an hour and "
    "try again, or call the help desk."
)
# Every enrollment together (a number typed in, not one on record): a cap on what SMS
# pumping through many accounts and addresses could cost (CAREGATE_PHONE_LIMIT_NEW_NUMBERS).
NEW_NUMBERS_SCOPE = "phone-send:new-numbers"
NEW_NUMBERS_PAUSED = (
    "Codes and calls to new phone numbers are paused for a while. Please try again later, "
    "or call the help desk."
)
NO_SMS_CODE = "No text message code is waiting for this number. Please select Send Code."
RESENT = "A new code has been sent to {masked}. The code sent before no longer works."
CALL_MESSAGES = {
    Status.CALLING: "Calling your phone now…",
    Status.RINGING: "Your phone is ringing…",
    Status.ANSWERED: "The call was answered. Waiting for you to key in the number…",
    Status.APPROVED: "The call verified you. You can now continue.",
    Status.REJECTED: "The call ended without verifying you.",
    Status.NO_ANSWER: "The call was not answered.",
    Status.BUSY: "The line was busy.",
    Status.FAILED: "The call could not be completed.",
    Status.TIMED_OUT: "The call was not completed in time.",
    Status.USED: "This call has already been used.",
}


class PhoneNumberForm(forms.Form):
    """Country Code and Phone Number (enrollment)."""

    country_code = forms.TypedChoiceField(label="Country Code", coerce=int, choices=[])
    phone_number = forms.CharField(
        label="Phone Number",
        max_length=40,
        error_messages={"required": "Please enter your Phone Number."},
        widget=forms.TextInput(
            attrs={
                "autocomplete": "tel-national",
                "inputmode": "tel",
                "placeholder": "Phone number",
            }
        ),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["country_code"].choices = country_choices()

    def clean(self) -> dict:
        data = super().clean()
        if "country_code" in data and "phone_number" in data:
            check = validate_phone(data["phone_number"], data["country_code"])
            if check.error:
                self.add_error("phone_number", check.error)
            else:
                data["e164"] = check.e164
        return data


@dataclass(frozen=True)
class PhoneChallenge:
    """Prove possession of a phone: the one on record (``state.data["phone"]``), or, with
    ``enroll``, a number the user enters here (MFA registration)."""

    purpose: str
    enroll: bool = False
    intro: str = (
        "We have the following number on record for you. "
        "We can send a code via SMS or phone to authenticate you."
    )
    enroll_intro: str = (
        "Enter a number below that we can send a code via SMS or phone to authenticate you."
    )
    key: str = "phone"
    template: str = "flows/phone_challenge.html"

    @property
    def code_purpose(self) -> str:
        # Distinct from any email code of the same flow: a code (and its cooldown) for the
        # phone must not void or delay one for the email, nor be accepted in its place.
        return f"{self.purpose}:phone"

    def verifier(self, state: FlowState) -> CodeVerifier:
        return CodeVerifier(
            state.id, self.code_purpose, lifetime_seconds=settings.CAREGATE_SMS_CODE_SECONDS
        )

    def phone(self, state: FlowState, own: dict[str, Any]) -> str:
        return own.get("phone", "") if self.enroll else state.data["phone"]

    def number_on_record(self, state: FlowState, own: dict[str, Any]) -> str:
        """The number a code must have been sent to for it to count, read when it is
        checked: the one being enrolled, or the account's number as it is now (a code
        sent to a number that was changed since is refused)."""
        if self.enroll:
            return own.get("phone", "")
        user_id = state.data.get("user_id")
        current = User.objects.filter(pk=user_id).values_list("phone_number", flat=True)
        return next(iter(current), "") if user_id else ""

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        own = state.stage(self.key)
        if request.method != "POST":
            return self._render(state, own)
        action = request.POST.get("action", "")
        if self.enroll and action == "change-number":
            self.verifier(state).discard()
            own.clear()
            return self._render(state, own)
        if self.enroll and action in {"sms", "call"} and not own.get("phone"):
            form = PhoneNumberForm(request.POST)
            if not form.is_valid():
                return self._render(state, own, number_form=form)
            own["phone"] = form.cleaned_data["e164"]
        if action == "sms":
            return self._send_sms(request, state, own)
        if action == "verify-sms" and own.get("mode") == "sms":
            return self._verify_sms(request, state, own)
        if action == "call":
            return self._call(request, state, own)
        if action == "check-call" and own.get("mode") == "call":
            return self._check_call(request, state, own)
        return self._render(state, own)

    # -- sending --
    def _budget_ok(self, request: HttpRequest, state: FlowState, refused: list[str]) -> bool:
        """SMS-pumping defence: sends and calls per account and client address, then,
        while enrolling (a number typed in, not one on record), a cap on all of them
        together (phone-send:new-numbers), then per number.

        Each is counted only for a send the ones before it let through (hit_in_turn's
        rule): a refused attempt cannot use up everyone's allowance, nor the typed
        number's, which would keep its owner from getting sign-in codes (the attacker
        review of session 16). The cap comes before the number for that reason too, and
        gets its unit back when the number refuses after all."""
        senders = [
            ("phone-send:account", str(state.data.get("user_id") or "")),
            ("phone-send:client", client_ip(request)),
        ]
        destination = [("phone-send:destination", self.phone(state, state.stage(self.key)))]
        if not self.enroll:
            return ratelimit.hit_in_turn(senders, destination)
        if not ratelimit.hit_all(senders):
            return False
        counted_at = ratelimit.moment()
        if not ratelimit.hit(NEW_NUMBERS_SCOPE, "all", now=counted_at):
            logger.warning("sends to new phone numbers are over their cap (%s)", NEW_NUMBERS_SCOPE)
            refused.append(NEW_NUMBERS_SCOPE)
            return False
        if ratelimit.hit_all(destination):
            return True
        # The number was over its own budget: nothing is sent, so the cap gets its unit
        # back (two enrolments of one number at once cannot both spend it either).
        ratelimit.refund(NEW_NUMBERS_SCOPE, "all", now=counted_at)
        return False

    def _issue(
        self, request: HttpRequest, state: FlowState, own: dict[str, Any], channel: str
    ) -> tuple[IssuedCode | None, str]:
        """Issue a code for ``channel``; return (issued, error)."""
        refused: list[str] = []  # which cap said no, filled in by _budget_ok
        try:
            issued = self.verifier(state).issue(
                channel,
                self.phone(state, own),
                within_budget=lambda: self._budget_ok(request, state, refused),
            )
        except ResendCooldown as wait:
            return None, f"Please wait {wait.seconds_left} seconds before asking again."
        except SendBudgetSpent:
            if refused:
                record_step(
                    request, state, "phone.send", "throttled", channel=channel, limit="new-numbers"
                )
                return None, NEW_NUMBERS_PAUSED
            record_step(request, state, "phone.send", "throttled", channel=channel)
            return None, TOO_MANY_SENDS
        return issued, ""

    def _record_send(
        self, request: HttpRequest, state: FlowState, channel: str, delivery: Delivery
    ) -> None:
        """Audit one send with its outcome as the request left it (queued when the worker
        has it), and why Twilio refused it (never its content)."""
        word = tasks.page_state(delivery)
        if word == tasks.FAILED:
            outcome, detail = "failed", {"error": delivery.last_error}
        elif word == tasks.SENT:
            outcome, detail = ("sent" if channel == "sms" else "placed"), {}
        else:
            outcome, detail = "queued", {}
        record_step(request, state, "phone.send", outcome, channel=channel, **detail)

    def _send_sms(self, request: HttpRequest, state: FlowState, own: dict[str, Any]) -> Result:
        again = own.get("mode") == "sms"  # "send a new code": confirm that one went out
        issued, error = self._issue(request, state, own, "sms")
        if issued is None:
            return self._render(state, own, error=error)
        body = (
            f"{settings.CAREGATE_PORTAL_NAME}: your verification code is {issued.code}. "
            "Do not share it with anyone."
        )
        delivery = queue_sms(
            self.phone(state, own),
            body,
            purpose=self.code_purpose,
            user_id=state.data.get("user_id"),
            flow_id=state.id,
            send_before=issued.record.expires_at,
        )
        self._record_send(request, state, "sms", delivery)
        if tasks.page_state(delivery) == tasks.FAILED:
            issued.record.delete()  # never delivered: must not hold a cooldown
            return self._render(state, own, error=SMS_FAILED)
        # Followed on the page: Twilio's status callback may still say it was undelivered.
        own.update(mode="sms", call_token="", delivery=delivery.pk)
        info = RESENT.format(masked=mask_phone(self.phone(state, own))) if again else ""
        return self._render(state, own, info=info, delivery=delivery)  # not read back

    def _call(self, request: HttpRequest, state: FlowState, own: dict[str, Any]) -> Result:
        issued, error = self._issue(request, state, own, "voice")
        if issued is None:
            return self._render(state, own, error=error)
        call = calls.new_call(
            state.id,
            self.code_purpose,
            self.phone(state, own),
            issued.record,
            user_id=state.data.get("user_id"),
        )
        delivery = queue_call(
            call,
            purpose=self.code_purpose,
            user_id=state.data.get("user_id"),
            flow_id=state.id,
        )
        self._record_send(request, state, "voice", delivery)
        if tasks.page_state(delivery) == tasks.FAILED:
            call.delete()
            issued.record.delete()
            return self._render(state, own, error=CALL_FAILED)
        # A call the worker gives up on is marked failed: the call's own status says so.
        # The number to key in is shown on this page only (code mode); kept in the session.
        own.update(mode="call", call_token=call.token, call_code=issued.code)
        return self._render(state, own)

    # -- checking --
    def _verify_sms(self, request: HttpRequest, state: FlowState, own: dict[str, Any]) -> Result:
        form = CodeForm(request.POST)
        if not form.is_valid():
            return self._render(state, own, code_form=form)
        if not ratelimit.hit("code-verify:client", client_ip(request)):
            record_step(request, state, "code.verify", "throttled", channel="sms")
            return self._render(state, own, error="Too many attempts. Please wait a while.")
        # Only a code sent by SMS to the number on record counts: never the code of a
        # call, nor one sent to a number that has changed since.
        # The check and its audit event are one transaction (as in EmailCode).
        with transaction.atomic():
            result = self.verifier(state).check(
                form.cleaned_data["code"],
                channel="sms",
                destination=self.number_on_record(state, own),
            )
            record_step(request, state, "code.verify", result.status.value, channel="sms")
        if result.status is CodeStatus.OK:
            return Advance({"phone_verified": self.phone(state, own)})
        if result.status is CodeStatus.MISSING:
            return self._render(state, own, error=NO_SMS_CODE)
        # This page's button reads "send a new code" (the guide's words).
        error = code_error(result).replace("Send new code", "send a new code")
        return self._render(state, own, error=error)

    def _check_call(self, request: HttpRequest, state: FlowState, own: dict[str, Any]) -> Result:
        call = self.current_call(own)
        number = self.number_on_record(state, own)
        if call is not None and calls.consume(call, state.id, number):
            record_step(request, state, "phone.call", "approved", channel="voice")
            own.pop("call_code", None)
            return Advance({"phone_verified": self.phone(state, own)})
        return self._render(state, own)

    def current_call(self, own: dict[str, Any]) -> PhoneCall | None:
        token = own.get("call_token")
        call = PhoneCall.objects.filter(token=token).first() if token else None
        return calls.refresh(call) if call is not None else None

    def delivery_status(self, state: FlowState, known: Delivery | None = None) -> tuple[str, str]:
        """The SMS's delivery: (sending | trying | sent | failed, what to say).
        ``known``: the row this request just queued (then it is not read again)."""
        own = state.stage(self.key)
        delivery_id = own.get("delivery") if own.get("mode") == "sms" else None
        if not delivery_id:
            delivery = None
        elif known is not None and known.pk == delivery_id:
            delivery = known
        else:
            delivery = Delivery.objects.filter(pk=delivery_id, flow_instance_id=state.id).first()
        word = tasks.page_state(delivery)
        return word, DELIVERY_MESSAGES.get(word, "")

    # -- page --
    def _render(
        self,
        state: FlowState,
        own: dict[str, Any],
        *,
        error: str = "",
        info: str = "",
        code_form: CodeForm | None = None,
        number_form: PhoneNumberForm | None = None,
        delivery: Delivery | None = None,
    ) -> Render:
        phone = self.phone(state, own)
        context: dict[str, Any] = {
            "intro": self.enroll_intro if self.enroll else self.intro,
            "enroll": self.enroll,
            "masked_phone": mask_phone(phone) if phone else "",
            "mode": own.get("mode", ""),
            "error": error,
            "info": info,
            "code_form": code_form or CodeForm(),
            "number_form": number_form or PhoneNumberForm(),
        }
        if own.get("mode") == "sms" and own.get("delivery"):
            word, message = self.delivery_status(state, delivery)
            context["delivery_state"] = word
            if word == tasks.FAILED:
                context.update(info="", error=error or message)
            else:
                context["delivery_message"] = message
        call = self.current_call(own) if own.get("mode") == "call" else None
        if call is not None:
            context.update(
                call=call,
                call_open=call.status in calls.OPEN,
                call_approved=call.status == Status.APPROVED,
                call_message=CALL_MESSAGES[Status(call.status)],
                call_code=own.get("call_code", "") if call.mode == "code" else "",
                press_pound=call.mode == "press-pound",
            )
        return Render(context)
