""" "Call Me": what a verification call says, and what the callee's keys do.

Two modes (CAREGATE_CALL_MODE):
- ``code`` (default): the sign-in page shows a 6-digit number; the call asks the user to
  key it followed by #. A secret passes between the two channels (NIST SP 800-63B), so a
  busy user who answers an attacker's call and presses # out of habit approves nothing.
- ``press-pound``: the guide's behaviour; # alone approves.
The keyed digits are bound to the one call (and so the one sign-in attempt) and accepted
once.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from caregate.verification.codes import CodeStatus, CodeVerifier
from caregate.verification.models import PhoneCall, VerificationCode

Status = PhoneCall.Status
MAX_CALL_ATTEMPTS = 3
# Twilio's call statuses (status callback) and what they mean for the sign-in page.
_PROVIDER_STATUS = {
    "queued": Status.CALLING,
    "initiated": Status.CALLING,
    "ringing": Status.RINGING,
    "in-progress": Status.ANSWERED,
    "answered": Status.ANSWERED,
    "busy": Status.BUSY,
    "no-answer": Status.NO_ANSWER,
    "failed": Status.FAILED,
    "canceled": Status.FAILED,
}
OPEN = {Status.CALLING, Status.RINGING, Status.ANSWERED}


@dataclass(frozen=True)
class KeyResult:
    """What the call says after the callee keyed something, and whether to ask again."""

    approved: bool
    say: str
    ask_again: bool = False


def new_call(
    flow_id: str, purpose: str, to: str, code: VerificationCode, user_id: int | None = None
) -> PhoneCall:
    """A call placed with ``code`` (issued for the voice channel to ``to``)."""
    now = timezone.now()
    return PhoneCall.objects.create(
        token=secrets.token_urlsafe(24),
        flow_id=flow_id,
        purpose=purpose,
        to=to,
        code=code,
        user_id=user_id,
        mode=settings.CAREGATE_CALL_MODE,
        created_at=now,
        expires_at=now + timedelta(seconds=settings.CAREGATE_CALL_TIMEOUT_SECONDS),
    )


def prompt(call: PhoneCall, brand: str) -> str:
    """The words the call speaks when answered."""
    if call.mode == "press-pound":
        return (
            f"This is {brand} calling to verify your sign-in. "
            "If you are signing in now, press the pound key. "
            "If you are not, hang up."
        )
    return (
        f"This is {brand} calling to verify your sign-in. "
        "Enter the six digit number shown on your screen, followed by the pound key. "
        "If you are not signing in now, hang up."
    )


def refresh(call: PhoneCall) -> PhoneCall:
    """Time out an open call that has run past its deadline."""
    if call.status in OPEN and timezone.now() >= call.expires_at:
        PhoneCall.objects.filter(pk=call.pk, status=call.status).update(status=Status.TIMED_OUT)
        call.refresh_from_db()
    return call


def provider_status(token: str, provider_value: str) -> None:
    """Apply a status callback from the telephony provider (never downgrades an approval)."""
    with transaction.atomic():
        call = PhoneCall.objects.select_for_update().filter(token=token).first()
        if call is None or call.status not in OPEN:
            return
        if provider_value == "completed":
            # Hung up before approving.
            new = Status.REJECTED
        else:
            new = _PROVIDER_STATUS.get(provider_value, call.status)
        if new != call.status:
            call.status = new
            call.save(update_fields=["status"])


def verifier_for(call: PhoneCall) -> CodeVerifier:
    """The verifier of the code the sign-in page showed for this call (same flow, purpose)."""
    # The lifetime only matters when issuing; the call's code was issued by the stage.
    return CodeVerifier(call.flow_id, call.purpose, lifetime_seconds=0)


def check_call_code(call: PhoneCall, digits: str) -> CodeStatus:
    """Check keyed digits against the code this call was placed with, and no other."""
    result = verifier_for(call).check_issued(
        call.code_id, digits, channel="voice", destination=call.to
    )
    return result.status


def keyed(token: str, digits: str) -> KeyResult:
    """Handle what the callee keyed; ``digits`` excludes the finishing # in code mode."""
    with transaction.atomic():
        call = PhoneCall.objects.select_for_update().filter(token=token).first()
        if call is None:
            return KeyResult(False, "This call is no longer valid. Goodbye.")
        call = refresh(call)
        if call.status not in OPEN:
            return KeyResult(False, "This call is no longer valid. Goodbye.")
        call.attempts += 1
        approved = _approves(call, digits)
        if approved:
            call.status = Status.APPROVED
            call.approved_at = timezone.now()
        elif call.attempts >= MAX_CALL_ATTEMPTS:
            call.status = Status.REJECTED
        else:
            call.status = Status.ANSWERED
        call.save(update_fields=["status", "attempts", "approved_at"])
    if approved:
        return KeyResult(True, "Thank you. Your sign-in is verified. Goodbye.")
    if call.status == Status.REJECTED:
        return KeyResult(False, "Your sign-in could not be verified. Goodbye.")
    again = (
        "Sorry, that did not work. Press the pound key."
        if call.mode == "press-pound"
        else "Sorry, that number is not correct. Enter the number shown on your screen, "
        "followed by the pound key."
    )
    return KeyResult(False, again, ask_again=True)


def _approves(call: PhoneCall, digits: str) -> bool:
    if call.mode == "press-pound":
        return digits == "#"
    # Code mode: a bare # (empty digits) approves nothing.
    if not digits:
        return False
    return check_call_code(call, digits) is CodeStatus.OK


def consume(call: PhoneCall, flow_id: str, to: str) -> bool:
    """Use an approved call for the sign-in, once; return False if it was not approved,
    or was placed by another flow instance or to another number."""
    return bool(
        PhoneCall.objects.filter(
            pk=call.pk, status=Status.APPROVED, flow_id=flow_id, to=to
        ).update(status=Status.USED)
    )
