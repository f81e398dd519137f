"""Background delivery (caregate.delivery.tasks): every email, SMS and call is a Delivery
row and a django-tasks task. With the immediate backend (development, tests) it runs in the
request; with the database backend the request only enqueues and the worker sends, retries
with backoff, then marks it failed, and the page says which.
"""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
import responses
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks.signals import task_enqueued
from django_tasks_db.management.commands.db_worker import Worker
from django_tasks_db.models import DBTaskResult
from twilio.request_validator import RequestValidator

from caregate.audit.models import AuditEvent
from caregate.delivery.models import Delivery, OutboxMessage
from caregate.verification.models import PhoneCall
from tests.conftest import PASSWORD
from tests.phone_steps import ENTER_CODE, PHONE, PHONE_STAGE, sms_code, text, to_phone_stage
from tests.test_email_smtp import Collector, free_port, serve, smtp_settings
from tests.test_forgot_password import begin, send
from tests.test_twilio import (
    AUTH_TOKEN,
    BASE,
    CALLS,
    FROM,
    MESSAGES,
    SID,
    SMS_FAILED,
    twilio_error,
)

pytestmark = pytest.mark.django_db

EMAIL_CODE = "/email-login/email-code/"
SENT = "Verification code has been sent to your inbox."
SENDING = "Sending the verification code…"
TRYING = "Still trying to send the verification code…"
FAILED = "We could not deliver the code: try again or choose another method."
SEND_FAILED = "We could not send the email just now. Please try again in a moment."
SIX = re.compile(r"\b\d{6}\b")


@pytest.fixture
def database_backend(settings):
    """The production set-up: requests enqueue, the worker (run here by hand) sends."""
    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    settings.CAREGATE_DELIVERY_BACKOFF_SECONDS = [5, 30]
    return settings


@pytest.fixture
def api(settings):
    """Twilio's REST API answered by ``responses`` (as in tests/test_twilio.py)."""
    settings.CAREGATE_PHONE_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER = FROM
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.CAREGATE_PUBLIC_BASE_URL = BASE
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        yield mocked


def run_worker() -> None:
    """What `manage.py db_worker` does, over the tasks that are due, then return: the
    worker's own claim and run_task, without its loop (whose close_old_connections would
    close the test's transaction)."""
    worker = Worker(
        queue_names=["default"],
        interval=0,
        batch=True,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="test-worker",
        excluded_queue_names=[],
    )
    ready = DBTaskResult.objects.ready().filter(backend_name="default")
    while (task_result := ready.get_locked()) is not None:
        task_result.claim(worker.worker_id)
        worker.run_task(task_result)


def make_due() -> None:
    """Let time pass: every waiting retry is due now."""
    DBTaskResult.objects.filter(status="READY").update(run_after=timezone.now())


class Enqueued:
    """Counts the tasks handed to the queue (whatever the backend)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, sender, task_result, **kwargs) -> None:
        self.count += 1


@pytest.fixture
def enqueued():
    counter = Enqueued()
    task_enqueued.connect(counter)
    yield counter
    task_enqueued.disconnect(counter)


def words(response) -> str:
    return html.unescape(response.content.decode())


def to_email_code(client: Client, user) -> None:
    client.post("/login/start/", {"method": "email"})
    response = client.post(
        "/email-login/credentials/", {"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 302 and response.url == EMAIL_CODE


class Refusing(Collector):
    """A mail server that answers 451 (try again later) to the first ``times`` messages."""

    def __init__(self, times: int) -> None:
        super().__init__()
        self.times = times
        self.refused = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refused < self.times:
            self.refused += 1
            return "451 4.3.0 Try again later"
        return await super().handle_DATA(server, session, envelope)


# --- immediate backend ------------------------------------------------------------------


def test_immediate_backend_sends_in_the_request_and_keeps_no_message(client, email_user):
    to_email_code(client, email_user)
    page = client.post(EMAIL_CODE, {"action": "send"})
    assert SENT in words(page)
    [delivery] = Delivery.objects.all()
    assert (delivery.channel, delivery.status, delivery.attempts) == ("email", "sent", 1)
    assert delivery.destination == email_user.email and delivery.user_id == email_user.pk
    assert delivery.body == "", "the code is not kept once sent"
    assert OutboxMessage.objects.filter(channel="email", to=email_user.email).count() == 1


def test_a_transient_smtp_refusal_is_retried_and_then_sent(client, email_user, settings):
    handler = Refusing(times=2)
    with serve(handler) as controller:
        smtp_settings(settings, controller.port)
        to_email_code(client, email_user)
        page = client.post(EMAIL_CODE, {"action": "send"})
    assert SENT in words(page)
    [delivery] = Delivery.objects.all()
    assert (delivery.status, delivery.attempts) == ("sent", 3)
    assert len(handler.messages) == 1


def test_smtp_refusing_every_attempt_fails_and_the_page_says_so(client, email_user, settings):
    handler = Refusing(times=99)
    with serve(handler) as controller:
        smtp_settings(settings, controller.port)
        to_email_code(client, email_user)
        page = client.post(EMAIL_CODE, {"action": "send"})
    assert page.status_code == 200
    assert SEND_FAILED in words(page)
    [delivery] = Delivery.objects.all()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 3, "smtp-451")
    assert delivery.body == ""
    assert AuditEvent.objects.filter(event="delivery.failed", outcome="smtp-451").count() == 1


def test_a_permanent_smtp_refusal_is_not_retried(client, email_user, settings):
    with serve(Collector(refuse=True)) as controller:  # 554 to every message
        smtp_settings(settings, controller.port)
        to_email_code(client, email_user)
        assert SEND_FAILED in words(client.post(EMAIL_CODE, {"action": "send"}))
    [delivery] = Delivery.objects.all()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("failed", 1, "smtp-554")


@pytest.mark.parametrize(("status", "code", "calls"), [(500, 20500, 3), (400, 21211, 1)])
def test_twilio_5xx_is_retried_4xx_is_not_and_never_a_500_page(
    client, api, make_user, status, code, calls
):
    twilio_error(api, MESSAGES, status, code, "Twilio says no")
    to_phone_stage(client, make_user(mfa="phone", phone=PHONE))
    page = client.post(PHONE_STAGE, {"action": "sms"})
    assert page.status_code == 200
    assert SMS_FAILED in text(page)
    assert len(api.calls) == calls
    [delivery] = Delivery.objects.all()
    assert (delivery.status, delivery.attempts) == ("failed", calls)
    assert delivery.last_error == f"twilio-{code}" and delivery.body == ""


# --- database backend: the request enqueues, the worker sends ---------------------------


def test_database_backend_request_enqueues_and_the_worker_sends(
    client, email_user, database_backend
):
    to_email_code(client, email_user)
    page = client.post(EMAIL_CODE, {"action": "send"})
    assert SENDING in words(page)
    assert "delivery-status.js" in page.content.decode()
    assert not OutboxMessage.objects.exists(), "nothing is sent inside the request"
    [delivery] = Delivery.objects.all()
    assert delivery.status == "queued" and SIX.search(delivery.body)
    [queued] = DBTaskResult.objects.all()
    # The queue's row names the delivery only: no code at rest in it.
    assert queued.args_kwargs == {"args": [delivery.pk], "kwargs": {}}
    status = client.get("/delivery/email-login/status.json").json()
    assert status["state"] == "sending"
    run_worker()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.body) == ("sent", 1, "")
    code = SIX.search(OutboxMessage.objects.get(channel="email").body).group(0)
    assert client.get("/delivery/email-login/status.json").json() == {
        "state": "sent",
        "message": "Verification code has been sent to your inbox. Please copy it to the "
        "input box below.",
    }
    assert SENT in words(client.get(EMAIL_CODE))
    verified = client.post(EMAIL_CODE, {"action": "verify", "code": code})
    assert "E-mail address verified" in words(verified)


def test_the_send_page_shows_the_delivery_just_queued_without_reading_it_back(
    client, email_user, database_backend
):
    to_email_code(client, email_user)
    with CaptureQueriesContext(connection) as queries:
        page = client.post(EMAIL_CODE, {"action": "send"})
    assert SENDING in words(page)
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT")]
    assert not [sql for sql in reads if 'FROM "delivery_delivery"' in sql], reads
    # A later page (the same browser, the worker not run yet) reads the row again.
    with CaptureQueriesContext(connection) as queries:
        again = client.get(EMAIL_CODE)
    assert SENDING in words(again)
    assert any('FROM "delivery_delivery"' in q["sql"] for q in queries.captured_queries)


def test_database_backend_retries_with_backoff_then_fails_and_the_page_shows_it(
    client, email_user, database_backend
):
    smtp_settings(database_backend, free_port())  # nothing listens: connection refused
    to_email_code(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    before = timezone.now()
    run_worker()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.attempts) == ("retrying", 1)
    assert delivery.body, "kept for the next attempt"
    # The next attempt waits 5 seconds: the worker does not run it yet.
    waiting = DBTaskResult.objects.get(status="READY")
    assert before + timedelta(seconds=4) < waiting.run_after < before + timedelta(seconds=7)
    run_worker()
    assert Delivery.objects.get().attempts == 1
    assert TRYING in words(client.get(EMAIL_CODE))
    assert client.get("/delivery/email-login/status.json").json()["state"] == "trying"
    make_due()
    before = timezone.now()
    run_worker()
    waiting = DBTaskResult.objects.get(status="READY")
    assert before + timedelta(seconds=29) < waiting.run_after < before + timedelta(seconds=32)
    make_due()
    run_worker()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.body) == ("failed", 3, "")
    page = client.get(EMAIL_CODE)
    assert page.status_code == 200
    assert FAILED in words(page) and TRYING not in words(page)
    assert client.get("/delivery/email-login/status.json").json()["state"] == "failed"


def test_the_mail_server_coming_back_before_the_last_attempt_delivers(
    client, email_user, database_backend
):
    port = free_port()
    smtp_settings(database_backend, port)
    to_email_code(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    run_worker()
    handler = Collector()
    with serve(handler, port):
        make_due()
        run_worker()
    assert Delivery.objects.get().status == "sent"
    assert len(handler.messages) == 1


def test_an_expired_code_is_not_sent_late(client, email_user, database_backend):
    to_email_code(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    Delivery.objects.update(send_before=timezone.now() - timedelta(seconds=1))
    run_worker()
    delivery = Delivery.objects.get()
    assert (delivery.status, delivery.last_error, delivery.body) == ("failed", "expired", "")
    assert not OutboxMessage.objects.exists()


def test_a_delivery_runs_once_even_if_its_task_runs_twice(client, email_user, database_backend):
    to_email_code(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    delivery = Delivery.objects.get()
    from caregate.delivery.tasks import attempt

    assert attempt(delivery.pk) == "sent"
    assert attempt(delivery.pk) == "skipped"
    assert OutboxMessage.objects.filter(channel="email").count() == 1


def test_the_status_of_another_browsers_flow_is_not_shown(client, email_user, database_backend):
    to_email_code(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    stranger = Client()
    response = stranger.get("/delivery/email-login/status.json")
    assert response.status_code == 404 and response.json() == {"state": "gone"}
    assert client.get("/delivery/no-such-flow/status.json").status_code == 404


def test_sms_and_call_through_the_worker(client, make_user, database_backend):
    database_backend.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    to_phone_stage(client, make_user(mfa="phone", phone=PHONE))
    page = client.post(PHONE_STAGE, {"action": "sms"})
    assert ENTER_CODE in text(page) and "delivery-status.js" in page.content.decode()
    assert not OutboxMessage.objects.exists()
    run_worker()
    assert sms_code()  # the worker sent it
    assert client.get("/delivery/phone-login/status.json").json()["state"] == "sent"
    client.post(PHONE_STAGE, {"action": "call"})
    call = PhoneCall.objects.get()
    assert not OutboxMessage.objects.filter(channel="voice").exists()
    run_worker()
    assert OutboxMessage.objects.get(channel="voice").call_token == call.token


def test_a_call_the_worker_gives_up_on_shows_as_failed(client, api, make_user, database_backend):
    api.add(responses.POST, CALLS, status=500, json={"code": 20500, "status": 500})
    to_phone_stage(client, make_user(mfa="phone", phone=PHONE))
    client.post(PHONE_STAGE, {"action": "call"})
    for _ in range(3):
        make_due()
        run_worker()
    assert len(api.calls) == 3
    assert PhoneCall.objects.get().status == PhoneCall.Status.FAILED
    page = client.get(PHONE_STAGE)
    assert page.status_code == 200 and "The call could not be completed." in text(page)


# --- Twilio's message status callback ---------------------------------------------------


def sms_sent(client, api, make_user) -> Delivery:
    api.add(responses.POST, MESSAGES, status=201, json={"sid": "SM" + "7" * 32})
    to_phone_stage(client, make_user(mfa="phone", phone=PHONE))
    assert ENTER_CODE in text(client.post(PHONE_STAGE, {"action": "sms"}))
    delivery = Delivery.objects.get(channel="sms")
    assert (delivery.status, delivery.provider_id) == ("sent", "SM" + "7" * 32)
    return delivery


def callback(delivery: Delivery, data: dict, *, signed: bool = True, client=None):
    path = f"/twilio/sms/{delivery.token}/status"
    signature = RequestValidator(AUTH_TOKEN).compute_signature(BASE + path, data)
    headers = {"HTTP_X_TWILIO_SIGNATURE": signature} if signed else {}
    return (client or Client()).post(path, data, **headers)


def test_signed_undelivered_callback_shows_on_the_page(client, api, make_user):
    delivery = sms_sent(client, api, make_user)
    data = {
        "MessageSid": delivery.provider_id,
        "MessageStatus": "undelivered",
        "ErrorCode": "30003",
    }
    assert callback(delivery, data).status_code == 204
    delivery.refresh_from_db()
    assert (delivery.status, delivery.last_error) == ("undelivered", "twilio-30003")
    page = client.get(PHONE_STAGE)
    assert FAILED in text(page)
    assert client.get("/delivery/phone-login/status.json").json()["state"] == "failed"
    # A later "delivered" (out of order) does not undo it.
    callback(delivery, {**data, "MessageStatus": "delivered"})
    delivery.refresh_from_db()
    assert delivery.status == "undelivered"


def test_signed_delivered_callback(client, api, make_user):
    delivery = sms_sent(client, api, make_user)
    callback(delivery, {"MessageSid": delivery.provider_id, "MessageStatus": "delivered"})
    delivery.refresh_from_db()
    assert delivery.status == "delivered"
    assert FAILED not in text(client.get(PHONE_STAGE))


@pytest.mark.parametrize("signature", ["none", "wrong"])
def test_unsigned_or_forged_callbacks_change_nothing(client, api, make_user, signature):
    delivery = sms_sent(client, api, make_user)
    data = {"MessageSid": delivery.provider_id, "MessageStatus": "undelivered"}
    if signature == "none":
        response = callback(delivery, data, signed=False)
    else:
        response = Client().post(
            f"/twilio/sms/{delivery.token}/status", data, HTTP_X_TWILIO_SIGNATURE="forged"
        )
    assert response.status_code == 403
    delivery.refresh_from_db()
    assert delivery.status == "sent"


def test_a_callback_for_another_message_sid_changes_nothing(client, api, make_user):
    delivery = sms_sent(client, api, make_user)
    callback(delivery, {"MessageSid": "SM" + "9" * 32, "MessageStatus": "undelivered"})
    delivery.refresh_from_db()
    assert delivery.status == "sent"


# --- the same work for an account and for no account ------------------------------------


@pytest.mark.parametrize("backend", ["immediate", "database"])
def test_forgot_password_enqueues_alike_for_registered_and_unknown_addresses(
    email_user, settings, enqueued, backend
):
    if backend == "database":
        settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    counts = []
    for address in (email_user.email, "nobody@clinic.example"):
        before_rows, before_tasks = Delivery.objects.count(), enqueued.count
        client = Client()
        begin(client)
        page = send(client, address)
        assert page.status_code == 200
        assert "delivery-status" not in page.content.decode(), "no state that would tell"
        counts.append((Delivery.objects.count() - before_rows, enqueued.count - before_tasks))
    assert counts == [(1, 1), (1, 1)]
    if backend == "database":
        assert not OutboxMessage.objects.exists()
        run_worker()
        assert OutboxMessage.objects.filter(to=email_user.email).count() == 1
        assert set(Delivery.objects.values_list("status", flat=True)) == {"sent", "withheld"}


def test_registration_error_reset_enqueues_alike_for_any_username(
    make_user, enqueued, database_backend
):
    """One task either way; the worker issues the link (tests/test_registration_error_reset.py
    compares the requests' SQL)."""
    pending = make_user(mfa="none")
    counts = []
    for username in (pending.username, "no-such-user"):
        before = enqueued.count
        client = Client()
        page = client.post("/registration-error/reset/", {"username": username})
        assert page.status_code == 200
        counts.append(enqueued.count - before)
    assert counts == [1, 1]
    assert not Delivery.objects.exists(), "no email row inside either request"
    run_worker()
    assert OutboxMessage.objects.filter(to=pending.email).count() == 1
    assert OutboxMessage.objects.count() == 1
