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

A worker that dies mid-send leaves its delivery in "sending": past a lease
(``CAREGATE_DELIVERY_LEASE_SECONDS``) a sweep task, which every worker keeps scheduled while
it sends, takes the row over (compare-and-set: one sweeper wins) and retries it, or marks it
failed when the message has expired or had its last attempt. A worker that dies after the
queue handed it the task but before the attempt leaves the task "running" and the delivery
"queued": the same sweep, past the lease, closes that task and queues the delivery again.
"""

from __future__ import annotations

import logging
import secrets
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import getaddresses

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django_tasks import task
from django_tasks.backends.immediate import ImmediateBackend

from caregate import rowsql
from caregate.audit.log import record
from caregate.delivery import phone
from caregate.delivery.models import Delivery
from caregate.ops import queue
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
# A row the immediate backend is about to run, handed from enqueue() to attempt() in the same
# call so the attempt needs neither its claim nor a read: keyed by row id, so threads that
# enqueue at once never see each other's.
_CLAIMED: dict[int, Delivery] = {}


def _runs_inline() -> bool:
    """Whether ``deliver`` runs inside enqueue() (the immediate backend)."""
    return isinstance(deliver.get_backend(), ImmediateBackend)


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
    inline = _runs_inline()
    fields: dict[str, object] = {}
    if inline:
        # Born claimed: no worker, duplicate task or sweep can see the row before it is
        # inserted, so the insert is the attempt's claim (the claim's UPDATE and the read
        # that follows it would only repeat what this process already holds).
        fields = {"status": Status.SENDING, "attempts": 1}
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
        **fields,
    )
    if not inline:
        deliver.enqueue(delivery.pk)
        return delivery
    _CLAIMED[delivery.pk] = delivery
    try:
        deliver.enqueue(delivery.pk)
    finally:
        _CLAIMED.pop(delivery.pk, None)
    if delivery.status in OPEN:
        # Retried: the later attempts ran on their own copy of the row.
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
    delivery = _CLAIMED.pop(delivery_id, None)  # inserted as claimed by enqueue()
    if delivery is None:
        _keep_a_sweep_scheduled(now)  # before the claim: a death after it is then covered
        delivery = _claim(delivery_id, now)
        if delivery is None:
            return "skipped"
    return _proceed(delivery, now)


def _claim(delivery_id: int, now: datetime) -> Delivery | None:
    # Compare-and-set: a duplicate task or a second worker sends nothing.
    claimed = Delivery.objects.filter(pk=delivery_id, status__in=[Status.QUEUED, Status.RETRYING])
    if not claimed.update(status=Status.SENDING, attempts=F("attempts") + 1, updated_at=now):
        return None
    return Delivery.objects.get(pk=delivery_id)


def _proceed(delivery: Delivery, now: datetime) -> str:
    """The attempt of a row this attempt holds (in "sending", its ``attempts`` counted)."""
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
    if outcome.retry and _attempts_left(delivery):
        _retry(delivery, outcome.error, _backoff()[delivery.attempts - 1])
        return Status.RETRYING
    _failed(delivery, outcome.error)
    return Status.FAILED


def _backoff() -> list[int]:
    return settings.CAREGATE_DELIVERY_BACKOFF_SECONDS


def _attempts_left(delivery: Delivery) -> bool:
    return delivery.attempts <= len(_backoff())


def _held(delivery: Delivery) -> dict[str, object]:
    """The row as long as this attempt holds it: still sending, and no later attempt since.
    (A sweep takes a row over without counting an attempt, then retries or fails it: its
    own writes go through these same conditions, so the first writer wins.)"""
    # Field names both the ORM's filter() and rowsql take.
    return {"id": delivery.pk, "status": Status.SENDING, "attempts": delivery.attempts}


def _finish(delivery: Delivery, status: str, *, provider_id: str = "", error: str = "") -> bool:
    """Mark it done and blank the message in the same write; False if this attempt no
    longer held the row."""
    now = timezone.now()
    fields = {"body": "", "finished_at": now, "updated_at": now, "last_error": error[:100]}
    if provider_id:
        fields["provider_id"] = provider_id[:64]
    # The attempt's last write, on every delivery: by rowsql (the same conditional UPDATE).
    if rowsql.update(Delivery, {"status": status, **fields}, _held(delivery)):
        # Written as set here: the row is these values, no need to read it back.
        for name, value in {"status": status, **fields}.items():
            setattr(delivery, name, value)
        return True
    # A status callback got there first: keep its status, blank the message anyway. (Not a
    # row a sweep handed to a later attempt, which still needs its message.)
    Delivery.objects.filter(
        pk=delivery.pk,
        attempts=delivery.attempts,
        status__in=[Status.DELIVERED, Status.UNDELIVERED],
    ).update(**fields)
    delivery.refresh_from_db()
    return False


def _failed(delivery: Delivery, error: str) -> None:
    if not _finish(delivery, Status.FAILED, error=error):
        return
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
    held = Delivery.objects.filter(**_held(delivery))
    if not held.update(status=Status.RETRYING, last_error=error[:100], next_attempt_at=when):
        return
    task_ = deliver
    if deliver.get_backend().supports_defer and wait_seconds > 0:
        task_ = deliver.using(run_after=when)
    # The immediate backend cannot wait: its next attempt runs now, inside this one.
    task_.enqueue(delivery.pk)


# -- deliveries left in "sending" by a worker that died -----------------------------------
class _Sweeps:
    # When a sweep is next due, as far as this process knows (it scheduled that one).
    next_at: datetime | None = None


def lease() -> timedelta:
    """How long an attempt may hold a row in "sending" before a sweep takes it over.

    By default twice the longer of the SMTP and Twilio timeouts, plus 10 s (30 s with the
    defaults): a call is a Twilio read and a create, an email a handful of SMTP commands,
    each bounded by its timeout, and a live server answers each well within it. A send
    that outlives the lease anyway is made a second time, never recorded twice (see
    recover_stale). Short, because the email-login code lives only 30 seconds.
    """
    configured = getattr(settings, "CAREGATE_DELIVERY_LEASE_SECONDS", None)
    if configured:
        return timedelta(seconds=int(configured))
    timeouts = (getattr(settings, "EMAIL_TIMEOUT", None) or 10, settings.TWILIO_TIMEOUT_SECONDS)
    return timedelta(seconds=2 * max(timeouts) + 10)


def _keep_a_sweep_scheduled(now: datetime) -> None:
    """Make sure a sweep runs after a claim made now: scheduled once per lease by each
    worker process while it claims rows (one task row, no query in between)."""
    if not sweep.get_backend().supports_defer:
        return
    if _Sweeps.next_at is not None and _Sweeps.next_at > now:
        return
    _Sweeps.next_at = now + lease() + timedelta(seconds=1)
    sweep.using(run_after=_Sweeps.next_at).enqueue()


@task()
def sweep() -> int:
    """Take over the deliveries left in "sending" past their lease; keep watching the
    ones still being sent. Returns how many were taken over."""
    now = timezone.now()
    taken = recover_stale(now) + recover_orphaned(now)
    _watch_the_rest(now)
    return taken


def recover_stale(now: datetime | None = None) -> int:
    """Retry, or mark failed, every delivery in "sending" for longer than the lease.

    Why a retry and not a failure: the worker may have died before the mail server or
    Twilio took the message, and the message is still in the row (it is blanked only by
    the write that finishes the delivery). It may also have died after: the person then
    gets the same message twice (the same code or the same link, both still valid once),
    which is better than a code that never comes. A message past ``send_before`` is never
    sent: the delivery fails, as an expired one does at its attempt.
    """
    now = now or timezone.now()
    stale = Delivery.objects.filter(status=Status.SENDING, updated_at__lt=now - lease())
    taken = 0
    for delivery in stale.order_by("pk")[:200]:
        if _take_over(delivery, now):
            taken += 1
            _resume(delivery, now)
    return taken


def recover_orphaned(now: datetime | None = None) -> int:
    """Queue again every delivery whose task a worker took and never ran.

    A worker killed after the queue handed it the task (the task row RUNNING) but before
    attempt() claimed the delivery leaves the delivery "queued" (or "retrying"), where
    recover_stale() does not look, and scheduled no sweep of its own. Past the lease the
    task row is marked failed (compare-and-set on its status: one sweeper acts) and, if
    the delivery is still waiting, it gets a new task. Were that worker only slow, its
    attempt and the new one meet at the claim's compare-and-set: one sends.
    """
    if not queue.installed():
        return 0
    now = now or timezone.now()
    results = queue.task_results()
    lost = results.filter(
        task_path=deliver.module_path, status="RUNNING", started_at__lt=now - lease()
    )
    queued = 0
    for result in lost.order_by("started_at")[:200]:
        ended = results.filter(pk=result.pk, status="RUNNING").update(
            status="FAILED",
            finished_at=now,
            exception_class_path="caregate.delivery.tasks.WorkerLost",
            traceback="The worker that took this task stopped before it ran (swept).",
        )
        ids = (result.args_kwargs or {}).get("args") or []
        if not ended or not ids:
            continue
        waiting = Delivery.objects.filter(pk=ids[0], status__in=[Status.QUEUED, Status.RETRYING])
        if waiting.exists():
            logger.warning(
                "delivery %s: its worker stopped before the attempt: queued again", ids[0]
            )
            deliver.enqueue(ids[0])
            queued += 1
    return queued


def _take_over(delivery: Delivery, now: datetime) -> bool:
    """Compare-and-set on what the sweep read (status, attempts, updated_at): of two
    sweepers (or a sweeper and the late worker) only one writes."""
    rows = Delivery.objects.filter(
        pk=delivery.pk,
        status=Status.SENDING,
        attempts=delivery.attempts,
        updated_at=delivery.updated_at,
    )
    if not rows.update(updated_at=now):
        return False
    delivery.updated_at = now
    return True


def _resume(delivery: Delivery, now: datetime) -> None:
    """The attempt that died counts: past the last one (or past the message's expiry)
    the delivery fails; otherwise the next attempt is queued at once."""
    logger.warning("delivery %s was left in sending: taken over", delivery.pk)
    if delivery.send_before is not None and now >= delivery.send_before:
        _failed(delivery, "expired")
    elif not _attempts_left(delivery):
        _failed(delivery, "interrupted")
    else:
        _retry(delivery, "interrupted", 0)


def _watch_the_rest(now: datetime) -> None:
    """Schedule the next sweep for when the oldest row still in "sending" (or the oldest
    delivery task a worker has taken) would go stale, unless one is already due by then
    (so the sweeps of several workers do not multiply)."""
    moments = [
        Delivery.objects.filter(status=Status.SENDING)
        .order_by("updated_at")
        .values_list("updated_at", flat=True)
        .first()
    ]
    if queue.installed():
        running = queue.task_results().filter(task_path=deliver.module_path, status="RUNNING")
        moments.append(running.order_by("started_at").values_list("started_at", flat=True).first())
    known = [moment for moment in moments if moment is not None]
    if not known or not sweep.get_backend().supports_defer:
        return
    oldest = min(known)
    when = max(oldest + lease(), now) + timedelta(seconds=1)
    if queue.installed():
        pending = queue.task_results().filter(
            task_path=sweep.module_path, status="READY", run_after__lte=when
        )
        if pending.exists():
            return
    sweep.using(run_after=when).enqueue()


# -- one attempt per channel --------------------------------------------------------------
def _send(delivery: Delivery) -> Outcome:
    if delivery.channel == Delivery.Channel.EMAIL:
        return _send_email(delivery)
    if delivery.channel == Delivery.Channel.SMS:
        return _send_sms(delivery)
    return _place_call(delivery)


def _send_email(delivery: Delivery) -> Outcome:
    # A notice may go to two addresses at once (the old and the new): ", " between them.
    # Read as an address list, not split at every comma: a comma inside a quoted local
    # part belongs to that one address (Caregate accepts none; see accounts/addresses.py).
    recipients = [address for _, address in getaddresses([delivery.destination]) if address]
    message = EmailMessage(delivery.subject, delivery.body, None, recipients)
    try:
        message.send(fail_silently=False)
    except smtplib.SMTPResponseException as exc:
        # 5xx: the server refused this message for good; 4xx: try again later.
        return Outcome(False, error=f"smtp-{exc.smtp_code}", retry=exc.smtp_code < 500)
    except smtplib.SMTPRecipientsRefused as exc:
        # Every recipient refused at RCPT: 4xx (greylisting, a full mailbox, a 421 from a
        # server closing a kept connection) is worth another attempt, 5xx is final.
        codes = [code for code, _ in exc.recipients.values()]
        return Outcome(
            False,
            error="smtp-recipients-refused",
            retry=any(code < 500 for code in codes),
        )
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
