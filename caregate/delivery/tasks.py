"""Background delivery: every email, SMS and call is a Delivery row and a django-tasks task.

A request creates the row and enqueues ``deliver(<row id>)``; the worker (``manage.py
db_worker`` with the database backend; inside the request with the immediate backend of
development and tests) makes the attempt. A transient failure (connection refused, a
timeout, a 4xx from the mail server, a 5xx or 429 from Twilio) is retried after the waits
of ``CAREGATE_DELIVERY_BACKOFF_SECONDS``; a permanent refusal, or the last attempt, marks it
failed. The page reads the row's state (``page_state``).

Why the message is in the row and not in the task's arguments: the database backend keeps
a task's arguments in its result rows after the task ran, and a code or a one-time link
must not outlive its delivery. Codes and links are stored only as hashes elsewhere, so the
message cannot be derived again later either; the row holds it until the delivery is
finished (sent, failed or expired) and the same write blanks it.
"""

from __future__ import annotations

import logging
import secrets
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django_tasks import task

from caregate.audit.log import record
from caregate.delivery import phone
from caregate.delivery.models import Delivery
from caregate.verification import calls
from caregate.verification.models import PhoneCall

logger = logging.getLogger(__name__)
Status = Delivery.Status
OPEN = {Status.QUEUED, Status.SENDING, Status.RETRYING}
# What the page says about a delivery: one of these four words.
SENDING, TRYING, SENT, FAILED = "sending", "trying", "sent", "failed"
_PAGE_STATE = {
    Status.QUEUED: SENDING,
    Status.SENDING: SENDING,
    Status.RETRYING: TRYING,
    Status.SENT: SENT,
    Status.DELIVERED: SENT,
    Status.WITHHELD: SENT,
    Status.FAILED: FAILED,
    Status.UNDELIVERED: FAILED,
}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    provider_id: str = ""
    error: str = ""
    retry: bool = False  # worth another attempt (a transient failure)


def page_state(delivery: Delivery | None) -> str:
    return _PAGE_STATE[Status(delivery.status)] if delivery is not None else SENT


# -- enqueueing ---------------------------------------------------------------------------
def enqueue(
    channel: str,
    purpose: str,
    destination: str,
    *,
    subject: str = "",
    body: str = "",
    call_token: str = "",
    user_id: int | None = None,
    flow_id: str = "",
    send_before: datetime | None = None,
) -> Delivery:
    """Record one delivery and hand it to the worker; return the row as it is now (the
    immediate backend has already run it, the database backend has not)."""
    delivery = Delivery.objects.create(
        channel=channel,
        purpose=purpose[:40],
        destination=destination,
        subject=subject,
        body=body,
        call_token=call_token,
        token=secrets.token_urlsafe(24),
        user_id=user_id,
        flow_instance_id=flow_id,
        send_before=send_before,
    )
    result = deliver.enqueue(delivery.pk)
    if result.is_finished:
        delivery.refresh_from_db()
    return delivery


def enqueue_withheld(purpose: str, *, flow_id: str = "") -> Delivery:
    """The same rows and the same task as a send, for a request that must not show (by
    its work or its timing) that it had no one to send to. Nothing is ever sent."""
    return enqueue(Delivery.Channel.EMAIL, purpose, "", flow_id=flow_id)


# -- the worker's side --------------------------------------------------------------------
@task()
def deliver(delivery_id: int) -> str:
    """One attempt at one delivery (a task: its only argument is the row's id)."""
    return attempt(delivery_id)


def attempt(delivery_id: int) -> str:
    now = timezone.now()
    # Claim it (compare-and-set): a duplicate task or a second worker sends nothing.
    claimed = Delivery.objects.filter(pk=delivery_id, status__in=[Status.QUEUED, Status.RETRYING])
    if not claimed.update(status=Status.SENDING, attempts=F("attempts") + 1, updated_at=now):
        return "skipped"
    delivery = Delivery.objects.get(pk=delivery_id)
    if not delivery.destination:
        _finish(delivery, Status.WITHHELD)
        return Status.WITHHELD
    if delivery.send_before is not None and now >= delivery.send_before:
        _failed(delivery, "expired")
        return Status.FAILED
    try:
        outcome = _send(delivery)
    except Exception as exc:  # a bug or an unexpected library error: never retried blind
        logger.exception("delivery %s raised", delivery.pk)
        outcome = Outcome(False, error=type(exc).__name__)
    if outcome.ok:
        _finish(delivery, Status.SENT, provider_id=outcome.provider_id)
        return Status.SENT
    backoff = settings.CAREGATE_DELIVERY_BACKOFF_SECONDS
    if outcome.retry and delivery.attempts <= len(backoff):
        _retry(delivery, outcome.error, backoff[delivery.attempts - 1])
        return Status.RETRYING
    _failed(delivery, outcome.error)
    return Status.FAILED


def _finish(delivery: Delivery, status: str, *, provider_id: str = "", error: str = "") -> None:
    """Mark it done and blank the message in the same write."""
    now = timezone.now()
    fields = {"body": "", "finished_at": now, "updated_at": now, "last_error": error[:100]}
    if provider_id:
        fields["provider_id"] = provider_id[:64]
    rows = Delivery.objects.filter(pk=delivery.pk, status=Status.SENDING)
    if rows.update(status=status, **fields):
        # Written as set here: the row is these values, no need to read it back.
        for name, value in {"status": status, **fields}.items():
            setattr(delivery, name, value)
        return
    # A status callback got there first: keep its status, blank the message anyway.
    Delivery.objects.filter(pk=delivery.pk).update(**fields)
    delivery.refresh_from_db()


def _failed(delivery: Delivery, error: str) -> None:
    _finish(delivery, Status.FAILED, error=error)
    if delivery.channel == Delivery.Channel.CALL:
        # The page follows the call: it now says the call could not be completed.
        PhoneCall.objects.filter(token=delivery.call_token, status__in=calls.OPEN).update(
            status=PhoneCall.Status.FAILED
        )
    record(
        "delivery.failed",
        error or "failed",
        user=delivery.user,
        channel=delivery.channel,
        purpose=delivery.purpose,
        attempts=delivery.attempts,
    )


def _retry(delivery: Delivery, error: str, wait_seconds: int) -> None:
    when = timezone.now() + timedelta(seconds=wait_seconds)
    Delivery.objects.filter(pk=delivery.pk, status=Status.SENDING).update(
        status=Status.RETRYING, last_error=error[:100], next_attempt_at=when
    )
    task_ = deliver
    if deliver.get_backend().supports_defer and wait_seconds > 0:
        task_ = deliver.using(run_after=when)
    # The immediate backend cannot wait: its next attempt runs now, inside this one.
    task_.enqueue(delivery.pk)


# -- one attempt per channel --------------------------------------------------------------
def _send(delivery: Delivery) -> Outcome:
    if delivery.channel == Delivery.Channel.EMAIL:
        return _send_email(delivery)
    if delivery.channel == Delivery.Channel.SMS:
        return _send_sms(delivery)
    return _place_call(delivery)


def _send_email(delivery: Delivery) -> Outcome:
    # A notice may go to two addresses at once (the old and the new): ", " between them.
    recipients = [to.strip() for to in delivery.destination.split(",") if to.strip()]
    message = EmailMessage(delivery.subject, delivery.body, None, recipients)
    try:
        message.send(fail_silently=False)
    except smtplib.SMTPResponseException as exc:
        # 5xx: the server refused this message for good; 4xx: try again later.
        return Outcome(False, error=f"smtp-{exc.smtp_code}", retry=exc.smtp_code < 500)
    except smtplib.SMTPRecipientsRefused:
        return Outcome(False, error="smtp-recipients-refused")
    except (TimeoutError, smtplib.SMTPException, OSError) as exc:
        logger.warning("could not reach the mail server: %s", type(exc).__name__)
        return Outcome(False, error=type(exc).__name__, retry=True)
    return Outcome(True)


def _sms_callback_url(delivery: Delivery) -> str:
    return phone.public_url(reverse("delivery:sms-status", args=[delivery.token]))


def _send_sms(delivery: Delivery) -> Outcome:
    result = phone.phone_sender().send_sms(
        delivery.destination, delivery.body, status_callback=_sms_callback_url(delivery)
    )
    return Outcome(result.ok, result.provider_id, result.error, result.retry)


def _place_call(delivery: Delivery) -> Outcome:
    call = PhoneCall.objects.filter(token=delivery.call_token).first()
    if call is None or calls.refresh(call).status not in calls.OPEN:
        return Outcome(False, error="call-ended")
    result = phone.phone_sender().place_call(call)
    if result.ok:
        PhoneCall.objects.filter(pk=call.pk).update(provider_sid=result.provider_id)
    return Outcome(result.ok, result.provider_id, result.error, result.retry)


# -- Twilio's message status callback -----------------------------------------------------
_SMS_FINAL = {
    "delivered": Status.DELIVERED,
    "undelivered": Status.UNDELIVERED,
    "failed": Status.UNDELIVERED,
}


def sms_status(token: str, message_sid: str, value: str, error_code: str = "") -> Delivery | None:
    """Apply Twilio's status for the SMS of ``token``: delivered, or undelivered (the page
    then says so). Only a sent SMS moves, only once, and only for its own message SID."""
    delivery = Delivery.objects.filter(token=token, channel=Delivery.Channel.SMS).first()
    new = _SMS_FINAL.get(value)
    if delivery is None or new is None:
        return delivery
    if delivery.provider_id and delivery.provider_id != message_sid:
        return delivery
    fields: dict[str, object] = {"status": new, "updated_at": timezone.now()}
    if new == Status.UNDELIVERED:
        fields["last_error"] = f"twilio-{error_code}" if error_code else "undelivered"
    Delivery.objects.filter(pk=delivery.pk, status__in=[Status.SENDING, Status.SENT]).update(
        **fields
    )
    delivery.refresh_from_db()
    return delivery
