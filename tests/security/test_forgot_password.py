"""Attacks on "Forgot your password?": skipping the phone step, replaying or racing the
last step, a code from another flow, and telling registered addresses from others.

A reset must never be a way around the second factor: a phone account reaches the new
password (and the home page) only through its phone on record, whatever URL, state or
timing the attacker tries; and the pages never say whether an address has an account.
"""

from __future__ import annotations

import asyncio
import html
import re
import threading
import time
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.flows.forgot_password import FORGOT_PASSWORD
from caregate.flows.stages.email_code import TOO_MANY_SENDS
from caregate.verification import codes, ratelimit
from caregate.verification.models import VerificationCode
from tests import flowstate
from tests.conftest import PASSWORD
from tests.phone_steps import EMAIL_CODE as LOGIN_EMAIL_CODE
from tests.phone_steps import EMAIL_CREDENTIALS, email_login, sms_code, start, text
from tests.security.test_enumeration import neutral
from tests.test_forgot_password import (
    EMAIL_CODE,
    NEW,
    NEW_PASSWORD,
    PHONE,
    begin,
    email_code,
    is_signed_in,
    new_password,
    send,
    verify_email,
)

pytestmark = pytest.mark.django_db
FLOW = "forgot-password"
OTHER = "Another-Brand-New-Pass-88"


@pytest.fixture(autouse=True)
def _one_rate_limit_window():
    """Freeze the rate limits' clock: a fixed window ending mid-test would reset a budget."""
    now = time.time()
    with mock.patch.object(ratelimit, "time", mock.Mock(time=lambda: now)):
        yield


@pytest.fixture
def phone_user(make_user):
    return make_user(mfa="phone", phone="+12025559885")


def at_password_stage(client: Client, user) -> None:
    """Email and phone verified: the new-password page is reached."""
    verify_email(client, user)
    client.post(PHONE, {"action": "sms"})
    response = client.post(PHONE, {"action": "verify-sms", "code": sms_code(user.phone_number)})
    assert response.status_code == 302 and response.url == NEW_PASSWORD


def unchanged(user) -> bool:
    user.refresh_from_db()
    return user.check_password(PASSWORD)


# --- skipping the phone step ----------------------------------------------------------------


def test_phone_step_cannot_be_skipped_by_url(client: Client, phone_user) -> None:
    verify_email(client, phone_user)
    assert client.get(NEW_PASSWORD).url == PHONE
    response = new_password(client)
    assert response.status_code == 302 and response.url == PHONE
    assert unchanged(phone_user) and not is_signed_in(client)


def test_new_password_page_cannot_be_reached_from_a_fresh_flow(client: Client) -> None:
    begin(client)
    for url in (NEW_PASSWORD, PHONE):
        assert new_password(client).url == EMAIL_CODE
        assert client.get(url).url == EMAIL_CODE


def test_state_claiming_email_only_does_not_skip_the_phone(client: Client, phone_user) -> None:
    """Even a flow state that says "email-only" at the password stage (a bug elsewhere, a
    restored row) does not let a phone account change its password without the phone."""
    verify_email(client, phone_user)

    def skip_phone(raw: dict) -> None:
        raw["data"]["mfa_method"] = "email"
        raw["reached"] = FORGOT_PASSWORD.index_of("password")

    flowstate.edit(client.session, FLOW, skip_phone)
    response = new_password(client)
    assert response.status_code == 302 and response.url == "/"
    assert unchanged(phone_user) and not is_signed_in(client)


def test_a_phone_added_after_the_email_step_must_be_proven(client: Client, email_user) -> None:
    verify_email(client, email_user)
    email_user.mfa_method, email_user.phone_number = "phone", "+12025550188"
    email_user.save()
    assert new_password(client).url == "/"
    assert unchanged(email_user) and not is_signed_in(client)


def test_a_number_changed_after_the_phone_step_is_refused(client: Client, phone_user) -> None:
    at_password_stage(client, phone_user)
    phone_user.phone_number = "+12025550188"
    phone_user.save()
    assert new_password(client).url == "/"
    assert unchanged(phone_user) and not is_signed_in(client)


def test_phone_reset_reaches_home_only_through_the_phone(client: Client, phone_user) -> None:
    """Every action of every stage, tried before the phone was verified: none gets home."""
    verify_email(client, phone_user)
    for url in (EMAIL_CODE, PHONE, NEW_PASSWORD):
        for action in ["", "continue", "verify", "check-call", "verify-sms", "create"]:
            response = client.post(
                url,
                {
                    "action": action,
                    "code": "123456",
                    "new_password": NEW,
                    "confirm_password": NEW,
                },
            )
            assert not (response.status_code == 302 and response.url == "/home/")
    assert unchanged(phone_user) and not is_signed_in(client)


def test_a_code_sent_to_an_address_the_account_no_longer_has_is_refused(
    client: Client, email_user
) -> None:
    """The account's email changed after the code went out (My Account, an administrator):
    the old mailbox's code does not reset the account."""
    begin(client)
    send(client, email_user.email)
    code = email_code(email_user.email)
    email_user.email = "moved@clinic.example"
    email_user.save()
    client.post(EMAIL_CODE, {"action": "verify", "code": code})
    response = client.post(EMAIL_CODE, {"action": "continue"})
    assert response.status_code == 302 and response.url == "/"
    assert client.get(NEW_PASSWORD).url == "/"
    assert unchanged(email_user) and not is_signed_in(client)


# --- replay and concurrency -----------------------------------------------------------------


def test_the_final_post_cannot_be_replayed(client: Client, email_user) -> None:
    verify_email(client, email_user)
    assert new_password(client).url == "/home/"
    client.post("/logout/")
    response = new_password(client, OTHER)
    assert response.status_code == 302 and response.url == "/"
    email_user.refresh_from_db()
    assert email_user.check_password(NEW) and not email_user.check_password(OTHER)
    assert AuditEvent.objects.filter(event="password.reset", outcome="success").count() == 1


def test_a_finished_reset_cannot_be_replayed_from_another_browser(
    client: Client, email_user
) -> None:
    verify_email(client, email_user)
    copy = Client()
    copy.cookies = client.cookies  # the session cookie, stolen before the last step
    assert new_password(client).url == "/home/"
    response = new_password(copy, OTHER)
    assert not (response.status_code == 302 and response.url == "/home/")
    email_user.refresh_from_db()
    assert email_user.check_password(NEW)


@pytest.mark.django_db(transaction=True)
def test_two_last_steps_at_once_change_the_password_once(phone_user, settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    first = Client()
    at_password_stage(first, phone_user)
    second = Client()
    second.cookies = first.cookies
    barrier = threading.Barrier(2)
    responses: dict[str, object] = {}

    def post(client: Client, password: str) -> None:
        barrier.wait()
        try:
            responses[password] = new_password(client, password)
        finally:
            connection.close()  # the thread's own connection, or teardown waits on it

    threads = [
        threading.Thread(target=post, args=(first, NEW)),
        threading.Thread(target=post, args=(second, OTHER)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    homes = [p for p, r in responses.items() if r.status_code == 302 and r.url == "/home/"]
    assert len(homes) == 1
    phone_user.refresh_from_db()
    # The password saved is the one of the request that finished the flow, only it.
    assert phone_user.check_password(homes[0])
    assert AuditEvent.objects.filter(event="password.reset", outcome="success").count() == 1


# --- codes from elsewhere ---------------------------------------------------------------------


def test_an_email_login_code_is_refused_here(client: Client, email_user) -> None:
    start(client, "email")
    client.post(EMAIL_CREDENTIALS, {"email": email_user.email, "password": PASSWORD})
    client.post(LOGIN_EMAIL_CODE, {"action": "send"})
    login_code = email_code(email_user.email)
    begin(client)
    with mock.patch.object(codes, "generate_code", return_value="000111"):
        send(client, email_user.email)
    assert login_code != "000111"
    page = client.post(EMAIL_CODE, {"action": "verify", "code": login_code})
    assert "That code is not correct" in text(page)
    assert client.post(EMAIL_CODE, {"action": "continue"}).status_code == 200


def test_a_reset_code_is_refused_by_email_login(client: Client, email_user) -> None:
    begin(client)
    send(client, email_user.email)
    reset_code = email_code(email_user.email)
    start(client, "email")
    client.post(EMAIL_CREDENTIALS, {"email": email_user.email, "password": PASSWORD})
    with mock.patch.object(codes, "generate_code", return_value="000111"):
        client.post(LOGIN_EMAIL_CODE, {"action": "send"})
    assert reset_code != "000111"
    page = client.post(LOGIN_EMAIL_CODE, {"action": "verify", "code": reset_code})
    assert "That code is not correct" in text(page)
    assert not is_signed_in(client)


def test_even_the_issued_code_of_an_unknown_address_never_verifies(client: Client) -> None:
    begin(client)
    with mock.patch.object(codes, "generate_code", return_value="424242"):
        send(client, "nobody@clinic.example")
    assert VerificationCode.objects.get(destination="nobody@clinic.example").code_hash == ""
    page = client.post(EMAIL_CODE, {"action": "verify", "code": "424242"})
    assert "That code is not correct" in text(page)
    assert "E-mail address verified" not in text(page)


# --- enumeration: the same answers for every address ---------------------------------------


def page(response) -> str:
    body = html.unescape(response.content.decode())
    # A cooldown is said in seconds, which may tick between the two runs.
    return re.sub(r"wait \d+ seconds", "wait N seconds", body)


def walk(email: str, settings) -> list[tuple[int, str]]:
    """The attacker's probe: start, send, a wrong code, resend too soon, then spend the
    address's send budget: every answer, as the attacker sees it."""
    client = Client(REMOTE_ADDR="203.0.113.7")
    answers = []
    for step in [
        lambda: client.get("/forgot-password/", follow=True),
        lambda: send(client, email),
        lambda: client.post(EMAIL_CODE, {"action": "verify", "code": "999999"}),
        lambda: client.post(EMAIL_CODE, {"action": "resend"}),
        lambda: client.post(EMAIL_CODE, {"action": "continue"}),
    ]:
        response = step()
        answers.append((response.status_code, neutral(page(response), email)))
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    for _ in range(3):
        response = client.post(EMAIL_CODE, {"action": "resend"})
        answers.append((response.status_code, neutral(page(response), email)))
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 10
    return answers


@pytest.mark.parametrize("kind", ["disabled", "unknown"])
def test_a_registered_address_gets_the_same_pages_as_any_other(
    kind: str, make_user, settings
) -> None:
    settings.CAREGATE_RATE_LIMITS = {
        **django_settings.CAREGATE_RATE_LIMITS,
        "reset-send:destination": (3, 3600),
        "reset-send:client": (1000, 3600),
    }
    known = make_user(email="known@clinic.example")
    other = "nobody@clinic.example"
    if kind == "disabled":
        other = make_user(email="gone@clinic.example", is_active=False).email
    known_answers = walk(known.email, settings)
    other_answers = walk(other, settings)
    assert known_answers == other_answers
    assert TOO_MANY_SENDS in known_answers[-1][1]
    assert "That code is not correct" in known_answers[2][1]
    # ... and only the account's own mailbox received anything.
    assert OutboxMessage.objects.filter(to__icontains=known.email).count() == 3
    assert not OutboxMessage.objects.filter(to__icontains=other).exists()


def test_the_send_budget_of_an_address_holds_for_unknown_addresses(client, settings) -> None:
    """Without an account there is no email, but still a budget: the attacker learns
    nothing from where the refusals start."""
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    settings.CAREGATE_RATE_LIMITS = {
        **django_settings.CAREGATE_RATE_LIMITS,
        "reset-send:destination": (2, 3600),
    }
    begin(client)
    send(client, "nobody@clinic.example")
    client.post(EMAIL_CODE, {"action": "resend"})
    assert TOO_MANY_SENDS in text(client.post(EMAIL_CODE, {"action": "resend"}))


def test_resets_asked_for_a_victims_address_do_not_stop_their_email_login(
    email_user, settings
) -> None:
    """Found by the attacker review: eleven resets for the victim's address used up the
    email-login budget, and the victim could not get a sign-in code for an hour."""
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    attacker = Client()
    begin(attacker)
    send(attacker, email_user.email)
    for _ in range(15):
        attacker.post(EMAIL_CODE, {"action": "resend"})
    assert TOO_MANY_SENDS in text(attacker.post(EMAIL_CODE, {"action": "resend"}))
    victim = Client()
    assert email_login(victim, email_user).url == "/home/"


def test_a_sign_in_begun_with_the_old_password_ends_at_the_reset(make_user, settings) -> None:
    """Found by the attacker review: a sign-in that had passed the password step with the
    leaked password went on to sign in after the user had reset it."""
    from tests.phone_steps import PHONE_STAGE, is_signed_in, to_phone_stage

    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    user = make_user(mfa="phone")
    attacker = Client()
    to_phone_stage(attacker, user)  # the old password, accepted
    user.set_password("A-Brand-New-Passphrase-77")  # the owner's reset lands meanwhile
    user.save()
    attacker.post(PHONE_STAGE, {"action": "sms"})
    code = sms_code(user.phone_number)
    response = attacker.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    assert response.status_code == 302 and response.url == "/"
    assert not is_signed_in(attacker)


def test_an_email_login_begun_before_a_reset_registration_ends(email_user, outbox_code) -> None:
    from caregate.accounts.models import User
    from tests.phone_steps import EMAIL_CODE as CODE_PAGE
    from tests.phone_steps import is_signed_in

    attacker = Client()
    start(attacker, "email")
    attacker.post(EMAIL_CREDENTIALS, {"email": email_user.email, "password": PASSWORD})
    attacker.post(CODE_PAGE, {"action": "send"})
    attacker.post(CODE_PAGE, {"action": "verify", "code": outbox_code(email_user.email)})
    User.objects.filter(pk=email_user.pk).update(mfa_method="none")  # the admin's reset
    response = attacker.post(CODE_PAGE, {"action": "continue"})
    assert response.status_code == 302 and response.url == "/"
    assert not is_signed_in(attacker)


class HeldSmtpServer:
    """An SMTP handler that holds each message until released: a slow mail relay."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.connections = 0
        self.messages: list[bytes] = []

    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope) -> str:
        await asyncio.get_running_loop().run_in_executor(None, self.release.wait, 20)
        self.messages.append(envelope.content)
        return "250 Message accepted for delivery"


def test_with_a_slow_mail_server_a_registered_address_does_not_answer_later(
    email_user, settings
) -> None:
    """Found by the attacker review: the reset email was sent inside the request, so a
    registered address answered after the relay's round trip and any other at once. With
    the task queue (the database backend of production) the request never talks to the
    mail server (shown by the order of events, not by a clock): both requests have
    answered, each having queued one delivery, before the relay saw any connection; the
    worker then sends the one real email."""
    from aiosmtpd.controller import Controller

    from caregate.delivery.models import Delivery
    from tests.test_delivery_tasks import run_worker
    from tests.test_email_smtp import free_port, smtp_settings

    settings.TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
    relay = HeldSmtpServer()
    controller = Controller(relay, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        smtp_settings(settings, controller.port)
        known, unknown = Client(), Client()
        begin(known)
        known_page = send(known, email_user.email)
        begin(unknown)
        unknown_page = send(unknown, "nobody@clinic.example")
        assert relay.connections == 0  # neither request reached the mail server
        assert neutral(page(known_page), email_user.email) == neutral(
            page(unknown_page), "nobody@clinic.example"
        )
        assert Delivery.objects.count() == 2  # the same work for both
        relay.release.set()
        run_worker()
        assert len(relay.messages) == 1  # the registered address did get its code
        assert relay.connections == 1  # and nothing was sent for the other address
    finally:
        relay.release.set()
        controller.stop()
