"""SMS and voice senders: a tiny interface, chosen by CAREGATE_PHONE_BACKEND.

``outbox`` records every SMS and call in the dev outbox (where a call can be answered);
``twilio`` sends through Twilio Programmable Messaging and Twilio Voice. The call itself is
driven by Caregate's own TwiML endpoints (caregate.delivery.webhooks).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from django.conf import settings
from django.urls import reverse
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from caregate.delivery import tasks
from caregate.delivery.models import Delivery, OutboxMessage
from caregate.verification.calls import prompt
from caregate.verification.models import PhoneCall

logger = logging.getLogger(__name__)
RING_SECONDS = 30


@dataclass(frozen=True)
class SendResult:
    ok: bool
    provider_id: str = ""
    error: str = ""  # why a send failed, for the audit log (never the message itself)
    retry: bool = False  # a transient failure: the delivery worker tries again later


def _failure(exc: Exception) -> SendResult:
    """Twilio's error code (e.g. twilio-21211), or the kind of network failure. Twilio's
    5xx and 429 and every network failure are transient; its other 4xx are not (a wrong
    number stays wrong)."""
    if isinstance(exc, TwilioRestException):
        transient = exc.status >= 500 or exc.status == 429
        return SendResult(False, error=f"twilio-{exc.code or exc.status}", retry=transient)
    return SendResult(False, error=type(exc).__name__, retry=True)


class PhoneSender(Protocol):
    def send_sms(self, to: str, body: str, status_callback: str = "") -> SendResult: ...

    def place_call(self, call: PhoneCall) -> SendResult: ...


class OutboxPhoneSender:
    """Development: record SMS and calls in the dev outbox."""

    def send_sms(self, to: str, body: str, status_callback: str = "") -> SendResult:
        message = OutboxMessage.objects.create(channel="sms", to=to, body=body)
        return SendResult(True, f"outbox-{message.pk}")

    def place_call(self, call: PhoneCall) -> SendResult:
        message = OutboxMessage.objects.create(
            channel="voice",
            to=call.to,
            subject="Verification call",
            body=prompt(call, settings.CAREGATE_BRAND_NAME),
            call_token=call.token,
        )
        return SendResult(True, f"outbox-{message.pk}")


def public_url(path: str) -> str:
    return settings.CAREGATE_PUBLIC_BASE_URL.rstrip("/") + path


class TwilioPhoneSender:
    """Production: Twilio's REST API through the official client."""

    def __init__(self) -> None:
        self.client = Client(
            settings.TWILIO_ACCOUNT_SID,
            settings.TWILIO_AUTH_TOKEN,
            http_client=TwilioHttpClient(timeout=settings.TWILIO_TIMEOUT_SECONDS),
        )

    def send_sms(self, to: str, body: str, status_callback: str = "") -> SendResult:
        sender = (
            {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
            if settings.TWILIO_MESSAGING_SERVICE_SID
            else {"from_": settings.TWILIO_FROM_NUMBER}
        )
        # Twilio posts the message's fate (delivered, undelivered) there, signed.
        extra = {"status_callback": status_callback} if status_callback else {}
        try:
            message = self.client.messages.create(to=to, body=body, **sender, **extra)
        except (TwilioException, OSError) as exc:
            logger.exception("Twilio SMS send failed")
            return _failure(exc)
        return SendResult(True, message.sid or "")

    def place_call(self, call: PhoneCall) -> SendResult:
        try:
            placed = self.client.calls.create(
                to=call.to,
                from_=settings.TWILIO_FROM_NUMBER,
                url=public_url(reverse("delivery:twiml-answer", args=[call.token])),
                method="POST",
                status_callback=public_url(reverse("delivery:twiml-status", args=[call.token])),
                status_callback_method="POST",
                status_callback_event=["initiated", "ringing", "answered", "completed"],
                timeout=RING_SECONDS,
            )
        except (TwilioException, OSError) as exc:
            logger.exception("Twilio call failed")
            return _failure(exc)
        return SendResult(True, placed.sid or "")


def phone_sender() -> PhoneSender:
    if settings.CAREGATE_PHONE_BACKEND == "twilio":
        return TwilioPhoneSender()
    return OutboxPhoneSender()


def queue_sms(
    to: str,
    body: str,
    *,
    purpose: str,
    user_id: int | None = None,
    flow_id: str = "",
    send_before: datetime | None = None,
) -> Delivery:
    """Hand one SMS to the delivery worker (Twilio's status callback finishes its story)."""
    return tasks.enqueue(
        Delivery.Channel.SMS,
        purpose,
        to,
        body=body,
        user_id=user_id,
        flow_id=flow_id,
        send_before=send_before,
    )


def queue_call(
    call: PhoneCall, *, purpose: str, user_id: int | None = None, flow_id: str = ""
) -> Delivery:
    """Hand the placing of ``call`` to the delivery worker (the prompt comes from the
    call's own row; its TwiML and status webhooks drive the rest)."""
    return tasks.enqueue(
        Delivery.Channel.CALL,
        purpose,
        call.to,
        call_token=call.token,
        user_id=user_id,
        flow_id=flow_id,
        send_before=call.expires_at,
    )
