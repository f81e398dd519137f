"""Section 3 – Phone Login, through the Django test client with the dev outbox.

LOGIN WITH PHONE → "Sign in with your email address" → "We have the following number on
record for you…" (XXX-XXX-9885) → Send Code → "Enter your verification code below, or send
a new code" → Verify Code → home; or Call Me → answer the call and key in → home.
"""

from __future__ import annotations

import datetime as dt
import re
from contextlib import contextmanager
from unittest import mock

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.flows import keys
from caregate.verification import calls, ratelimit
from caregate.verification.models import PhoneCall, VerificationCode
from tests.conftest import PASSWORD
from tests.phone_steps import (
    CALL_STATUS,
    ENTER_CODE,
    ON_RECORD,
    PHONE,
    PHONE_CREDENTIALS,
    PHONE_STAGE,
    answer,
    is_signed_in,
    newest_call,
    shown_call_code,
    sms_code,
    start,
    text,
    to_phone_stage,
)

pytestmark = pytest.mark.django_db

TOO_MANY_SENDS = "Too many codes or calls have been requested for this number."
LOCKED = "Too many wrong codes: this code can no longer be used."


@pytest.fixture
def phone_user(make_user):
    return make_user(mfa="phone", phone=PHONE)


@pytest.fixture
def no_cooldown(settings):
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


@contextmanager
def clock_moved(seconds: float):
    """Move Django's clock (codes, calls, Remember Me all read timezone.now())."""
    moment = timezone.now() + dt.timedelta(seconds=seconds)
    with mock.patch("django.utils.timezone.now", return_value=moment):
        yield moment


def other(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def events(name: str | None = None) -> list[tuple[str, str]]:
    rows = AuditEvent.objects.order_by("id")
    if name:
        rows = rows.filter(event=name)
    return [(e.event, e.outcome) for e in rows]


# --- the whole flow by SMS --------------------------------------------------------------


def test_full_phone_login_by_sms(client, phone_user):
    response = start(client, "phone")
    assert response.status_code == 302 and response.url == PHONE_CREDENTIALS
    assert "Sign in with your email address" in text(client.get(PHONE_CREDENTIALS))
    response = client.post(PHONE_CREDENTIALS, {"email": phone_user.email, "password": PASSWORD})
    assert response.status_code == 302 and response.url == PHONE_STAGE
    page = client.get(PHONE_STAGE)
    words = text(page)
    assert ON_RECORD in words
    assert "XXX-XXX-9885" in words
    assert "Send Code" in words and "Call Me" in words
    body = page.content.decode()
    for full in ["2025559885", "202-555-9885", "555-9885", "(202)"]:
        assert full not in body
    assert not OutboxMessage.objects.exists(), "nothing is sent before Send Code"

    page = client.post(PHONE_STAGE, {"action": "sms"})
    assert page.status_code == 200
    words = text(page)
    assert ENTER_CODE in words
    assert "Verify Code" in words
    assert "XXX-XXX-9885" in words
    sms = OutboxMessage.objects.get(channel="sms")
    assert sms.to == PHONE
    code = sms_code()
    assert code in sms.body and "Caregate Provider Portal" in sms.body
    assert code not in page.content.decode(), "the SMS code is never shown on the page"
    assert not is_signed_in(client)

    response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    assert response.status_code == 302 and response.url == "/home/"
    assert is_signed_in(client)
    assert client.session["_auth_user_id"] == str(phone_user.pk)
    assert client.session[keys.SIGNIN_METHOD] == "phone"
    assert client.get("/home/").status_code == 200


def test_code_with_spaces_is_accepted(client, phone_user):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    code = sms_code()
    spaced = f" {code[:3]} {code[3:]} "
    response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": spaced})
    assert response.url == "/home/"


def test_audit_events_for_each_step_without_secrets(client, phone_user):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    code = sms_code()
    client.post(PHONE_STAGE, {"action": "verify-sms", "code": other(code)})
    client.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    assert events() == [
        ("signin.password", "success"),
        ("phone.send", "sent"),
        ("code.verify", "wrong"),
        ("code.verify", "ok"),
        ("signin", "success"),
    ]
    send = AuditEvent.objects.get(event="phone.send")
    assert send.detail["channel"] == "sms"
    assert send.flow == "phone-login"
    assert send.client_ip == "127.0.0.1"
    stored = repr(list(AuditEvent.objects.values()))
    assert code not in stored and other(code) not in stored and PASSWORD not in stored
    assert PHONE not in stored


def test_only_a_hash_of_the_code_is_stored(client, phone_user):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    code = sms_code()
    record = VerificationCode.objects.get()
    assert record.channel == "sms" and record.destination == PHONE
    assert code not in repr(VerificationCode.objects.values()[0])


def test_stage_cannot_be_reached_without_the_password(client, phone_user):
    start(client, "phone")
    response = client.get(PHONE_STAGE)
    assert response.status_code == 302 and response.url == PHONE_CREDENTIALS
    response = client.post(PHONE_STAGE, {"action": "sms"})
    assert response.url == PHONE_CREDENTIALS
    assert not OutboxMessage.objects.exists()


def test_wrong_password_sends_nothing(client, phone_user):
    start(client, "phone")
    response = client.post(PHONE_CREDENTIALS, {"email": phone_user.email, "password": "nope"})
    assert response.status_code == 200
    assert "We could not sign you in with that email address and password." in text(response)
    assert client.get(PHONE_STAGE).url == PHONE_CREDENTIALS


# --- wrong, expired, used codes ---------------------------------------------------------


def test_wrong_code_message_then_right_code(client, phone_user):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    code = sms_code()
    page = client.post(PHONE_STAGE, {"action": "verify-sms", "code": other(code)})
    assert page.status_code == 200
    words = text(page)
    assert "That code is not correct. Please check it and try again (4 attempts left)." in words
    assert ENTER_CODE in words
    assert not is_signed_in(client)
    assert client.post(PHONE_STAGE, {"action": "verify-sms", "code": code}).url == "/home/"


def test_five_wrong_codes_void_the_code(client, phone_user, no_cooldown):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    code = sms_code()
    for left in [4, 3, 2, 1]:
        words = text(client.post(PHONE_STAGE, {"action": "verify-sms", "code": other(code)}))
        assert f"({left} attempt{'s' if left != 1 else ''} left)" in words
    words = text(client.post(PHONE_STAGE, {"action": "verify-sms", "code": other(code)}))
    assert LOCKED in words
    assert "Select send a new code to get a new one." in words
    # The right code no longer works either.
    response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    assert response.status_code == 200 and LOCKED in text(response)
    assert not is_signed_in(client)
    # send a new code: a fresh code works.
    client.post(PHONE_STAGE, {"action": "sms"})
    fresh = sms_code()
    assert client.post(PHONE_STAGE, {"action": "verify-sms", "code": fresh}).url == "/home/"


def test_expired_code_is_refused(client, phone_user, settings):
    settings.CAREGATE_SMS_CODE_SECONDS = 300
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    code = sms_code()
    with clock_moved(300):
        response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    assert response.status_code == 200
    assert "This code has expired. Select send a new code to get a new one." in text(response)
    assert not is_signed_in(client)


def test_code_is_good_until_its_lifetime_ends(client, phone_user, settings):
    settings.CAREGATE_SMS_CODE_SECONDS = 300
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    with clock_moved(295):
        response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": sms_code()})
    assert response.url == "/home/"


def test_lifetime_setting_applies(client, phone_user, settings):
    settings.CAREGATE_SMS_CODE_SECONDS = 20
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    record = VerificationCode.objects.get()
    assert (record.expires_at - record.created_at).total_seconds() == 20
    with clock_moved(21):
        response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": sms_code()})
    assert "This code has expired." in text(response)


def test_code_is_single_use_and_bound_to_its_sign_in(client, phone_user):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    code = sms_code()
    assert client.post(PHONE_STAGE, {"action": "verify-sms", "code": code}).url == "/home/"
    # The finished flow is gone: posting the code again goes back to the login page.
    client.post("/logout/")
    response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    assert response.status_code == 302 and response.url == "/"
    # A new sign-in attempt (a new flow) does not accept the old code.
    other_browser = Client()
    to_phone_stage(other_browser, phone_user)
    response = other_browser.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    assert response.status_code == 200
    assert ON_RECORD in text(response) and not is_signed_in(other_browser)
    other_browser.post(PHONE_STAGE, {"action": "sms"})
    response = other_browser.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    if code != sms_code():
        assert "That code is not correct." in text(response)
        assert not is_signed_in(other_browser)


def test_verify_before_send_is_refused(client, phone_user):
    to_phone_stage(client, phone_user)
    response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": "123456"})
    assert response.status_code == 200
    assert ON_RECORD in text(response)
    assert not is_signed_in(client)


# --- resend and cooldown ----------------------------------------------------------------


def test_resend_cooldown(client, phone_user, settings):
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 10
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    first = sms_code()
    words = text(client.post(PHONE_STAGE, {"action": "sms"}))
    assert "Please wait 10 seconds before asking again." in words
    assert OutboxMessage.objects.filter(channel="sms").count() == 1
    with clock_moved(11):
        words = text(client.post(PHONE_STAGE, {"action": "sms"}))
        assert ENTER_CODE in words and "Please wait" not in words
        assert OutboxMessage.objects.filter(channel="sms").count() == 2
        second = sms_code()
        if first != second:
            # "send a new code" voids the previous code.
            response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": first})
            assert "That code is not correct." in text(response)
        response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": second})
    assert response.url == "/home/"


def test_send_a_new_code_confirms_that_a_new_code_was_sent(client, phone_user, no_cooldown):
    to_phone_stage(client, phone_user)
    words = text(client.post(PHONE_STAGE, {"action": "sms"}))
    assert ENTER_CODE in words and "A new code has been sent" not in words  # the first one
    words = text(client.post(PHONE_STAGE, {"action": "sms"}))
    assert "A new code has been sent to XXX-XXX-9885." in words
    assert "The code sent before no longer works." in words
    assert OutboxMessage.objects.filter(channel="sms").count() == 2
    # The confirmation is said once, not on every later page.
    words = text(client.post(PHONE_STAGE, {"action": "verify-sms", "code": other(sms_code())}))
    assert "A new code has been sent" not in words


def test_a_refused_resend_does_not_claim_a_new_code(client, phone_user, settings):
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 10
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    words = text(client.post(PHONE_STAGE, {"action": "sms"}))
    assert "Please wait" in words and "A new code has been sent" not in words


def test_cooldown_refusal_does_not_spend_the_send_budget(client, phone_user, settings):
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        "phone-send:destination": (2, 3600),
    }
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    for _ in range(5):  # an impatient user
        assert "Please wait" in text(client.post(PHONE_STAGE, {"action": "sms"}))
    with clock_moved(11):
        words = text(client.post(PHONE_STAGE, {"action": "sms"}))
    assert TOO_MANY_SENDS not in words
    assert OutboxMessage.objects.filter(channel="sms").count() == 2


# --- send budgets (SMS pumping) ---------------------------------------------------------


@pytest.fixture
def frozen_window():
    """Hold the rate-limit clock still so no hourly window boundary splits a test."""
    with mock.patch.object(ratelimit, "time", mock.Mock(time=lambda: 1_800_000_000.0)):
        yield


def budgets(settings, *, number: int = 100, account: int = 100, client: int = 100) -> None:
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        "phone-send:destination": (number, 3600),
        "phone-send:account": (account, 3600),
        "phone-send:client": (client, 3600),
    }
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


def sends() -> int:
    return OutboxMessage.objects.exclude(channel="email").count()


def test_default_phone_budgets(settings):
    limits = settings.CAREGATE_RATE_LIMITS
    assert limits["phone-send:destination"] == (5, 3600)
    assert limits["phone-send:account"] == (8, 3600)
    assert limits["phone-send:client"] == (20, 3600)


def test_budget_per_number(settings, make_user, frozen_window):
    budgets(settings, number=3)
    first = make_user(mfa="phone", phone=PHONE)
    second = make_user(mfa="phone", phone=PHONE)  # another account, the same number
    browser = Client(REMOTE_ADDR="10.0.0.1")
    to_phone_stage(browser, first)
    for action in ["sms", "call", "sms"]:
        assert TOO_MANY_SENDS not in text(browser.post(PHONE_STAGE, {"action": action}))
    assert sends() == 3
    for action in ["sms", "call"]:
        words = text(browser.post(PHONE_STAGE, {"action": action}))
        assert TOO_MANY_SENDS in words
    assert sends() == 3
    elsewhere = Client(REMOTE_ADDR="10.0.0.2")
    to_phone_stage(elsewhere, second)
    assert TOO_MANY_SENDS in text(elsewhere.post(PHONE_STAGE, {"action": "sms"}))
    assert sends() == 3
    assert events("phone.send").count(("phone.send", "throttled")) == 3


def test_budget_per_account(settings, make_user, frozen_window):
    budgets(settings, account=2)
    user = make_user(mfa="phone", phone=PHONE)
    someone = make_user(mfa="phone", phone="+12025550177")
    for address in ["10.0.0.1", "10.0.0.2"]:
        browser = Client(REMOTE_ADDR=address)
        to_phone_stage(browser, user)
        assert TOO_MANY_SENDS not in text(browser.post(PHONE_STAGE, {"action": "sms"}))
    browser = Client(REMOTE_ADDR="10.0.0.3")
    to_phone_stage(browser, user)
    assert TOO_MANY_SENDS in text(browser.post(PHONE_STAGE, {"action": "sms"}))
    assert sends() == 2
    # Another account from the same address still gets its code.
    browser = Client(REMOTE_ADDR="10.0.0.3")
    to_phone_stage(browser, someone)
    assert ENTER_CODE in text(browser.post(PHONE_STAGE, {"action": "sms"}))
    assert sends() == 3


def test_budget_per_client_address(settings, make_user, frozen_window):
    budgets(settings, client=2)
    users = [make_user(mfa="phone", phone=f"+1202555017{n}") for n in range(3)]
    for user in users[:2]:
        browser = Client(REMOTE_ADDR="10.9.9.9")
        to_phone_stage(browser, user)
        assert ENTER_CODE in text(browser.post(PHONE_STAGE, {"action": "sms"}))
    browser = Client(REMOTE_ADDR="10.9.9.9")
    to_phone_stage(browser, users[2])
    assert TOO_MANY_SENDS in text(browser.post(PHONE_STAGE, {"action": "sms"}))
    assert sends() == 2
    browser = Client(REMOTE_ADDR="10.9.9.10")
    to_phone_stage(browser, users[2])
    assert ENTER_CODE in text(browser.post(PHONE_STAGE, {"action": "sms"}))
    assert sends() == 3


def test_every_send_is_audited_with_its_outcome(settings, phone_user, frozen_window):
    budgets(settings, number=2)
    browser = Client()
    to_phone_stage(browser, phone_user)
    browser.post(PHONE_STAGE, {"action": "sms"})
    browser.post(PHONE_STAGE, {"action": "call"})
    browser.post(PHONE_STAGE, {"action": "sms"})
    rows = list(AuditEvent.objects.filter(event="phone.send").order_by("id"))
    assert [(r.outcome, r.detail["channel"]) for r in rows] == [
        ("sent", "sms"),
        ("placed", "voice"),
        ("throttled", "sms"),
    ]
    assert all(r.flow == "phone-login" and r.client_ip == "127.0.0.1" for r in rows)


# --- Call Me ----------------------------------------------------------------------------


def test_call_me_in_code_mode(client, phone_user, settings):
    settings.CAREGATE_CALL_MODE = "code"
    to_phone_stage(client, phone_user)
    page = client.post(PHONE_STAGE, {"action": "call"})
    words = text(page)
    assert "Calling your phone now…" in words
    assert "Answer the call to XXX-XXX-9885" in words
    assert "key in this number followed by the # key" in words
    shown = shown_call_code(page)
    call = newest_call()
    assert "Enter the six digit number shown on your screen" in call.body
    assert shown not in call.body, "the number passes from the screen to the phone"
    assert PhoneCall.objects.get().mode == "code"
    assert not OutboxMessage.objects.filter(channel="sms").exists()

    assert client.get(CALL_STATUS).json() == {
        "status": "calling",
        "open": True,
        "approved": False,
        "message": "Calling your phone now…",
    }
    said = answer(Client(), call, f"{shown}#")
    assert said["approved"] is True
    status = client.get(CALL_STATUS).json()
    assert status["approved"] is True and status["status"] == "approved"
    page = client.get(PHONE_STAGE)
    assert "The call verified you. You can now continue." in text(page)
    response = client.post(PHONE_STAGE, {"action": "check-call"})
    assert response.status_code == 302 and response.url == "/home/"
    assert client.session["_auth_user_id"] == str(phone_user.pk)
    assert PhoneCall.objects.get().status == PhoneCall.Status.USED
    assert ("phone.call", "approved") in events()


@pytest.mark.parametrize("digits", ["#", "", "000000#", "12345#", "1234567#"])
def test_code_mode_refuses_a_bare_pound_and_wrong_numbers(client, phone_user, digits):
    to_phone_stage(client, phone_user)
    page = client.post(PHONE_STAGE, {"action": "call"})
    shown = shown_call_code(page)
    if digits == "000000#" and shown == "000000":
        digits = "000001#"
    said = answer(Client(), newest_call(), digits)
    assert said["approved"] is False
    assert PhoneCall.objects.get().status == PhoneCall.Status.ANSWERED
    response = client.post(PHONE_STAGE, {"action": "check-call"})
    assert response.status_code == 200
    assert not is_signed_in(client)
    assert "Waiting for you to key in the number" in text(response)
    # The right number still works afterwards.
    assert answer(Client(), newest_call(), f"{shown}#")["approved"] is True
    assert client.post(PHONE_STAGE, {"action": "check-call"}).url == "/home/"


def test_code_mode_three_wrong_entries_end_the_call(client, phone_user, no_cooldown):
    to_phone_stage(client, phone_user)
    shown = shown_call_code(client.post(PHONE_STAGE, {"action": "call"}))
    call = newest_call()
    said = [answer(Client(), call, f"{other(shown)}#") for _ in range(3)]
    assert [s["approved"] for s in said] == [False, False, False]
    assert "Goodbye" in said[-1]["say"]
    assert PhoneCall.objects.get().status == PhoneCall.Status.REJECTED
    assert answer(Client(), call, f"{shown}#")["approved"] is False
    words = text(client.post(PHONE_STAGE, {"action": "check-call"}))
    assert "The call ended without verifying you." in words
    assert not is_signed_in(client)


def test_call_me_in_press_pound_mode(client, phone_user, settings):
    settings.CAREGATE_CALL_MODE = "press-pound"
    to_phone_stage(client, phone_user)
    page = client.post(PHONE_STAGE, {"action": "call"})
    words = text(page)
    assert "press the # key to complete verification" in words
    assert 'class="call-code"' not in page.content.decode()
    call = newest_call()
    assert "press the pound key" in call.body
    assert PhoneCall.objects.get().mode == "press-pound"
    assert answer(Client(), call, "1")["approved"] is False
    assert client.post(PHONE_STAGE, {"action": "check-call"}).status_code == 200
    assert answer(Client(), call, "#")["approved"] is True
    assert client.post(PHONE_STAGE, {"action": "check-call"}).url == "/home/"


def test_call_mode_is_fixed_when_the_call_is_placed(client, phone_user, settings):
    settings.CAREGATE_CALL_MODE = "code"
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "call"})
    settings.CAREGATE_CALL_MODE = "press-pound"
    assert answer(Client(), newest_call(), "#")["approved"] is False


def test_approved_call_signs_in_only_its_own_attempt_and_only_once(phone_user):
    first, second = Client(), Client()
    to_phone_stage(first, phone_user)
    first_code = shown_call_code(first.post(PHONE_STAGE, {"action": "call"}))
    first_call = newest_call()
    to_phone_stage(second, phone_user)
    second.post(PHONE_STAGE, {"action": "call"})
    second_call = newest_call()
    assert first_call.pk != second_call.pk
    # The first attempt's number keyed into the second call approves nothing.
    assert answer(Client(), second_call, f"{first_code}#")["approved"] is False
    assert answer(Client(), first_call, f"{first_code}#")["approved"] is True
    assert second.post(PHONE_STAGE, {"action": "check-call"}).status_code == 200
    assert not is_signed_in(second)
    assert second.get(CALL_STATUS).json()["approved"] is False
    assert first.post(PHONE_STAGE, {"action": "check-call"}).url == "/home/"
    # Replaying the approval: the call is used, keying again approves nothing.
    assert answer(Client(), first_call, f"{first_code}#")["approved"] is False
    assert PhoneCall.objects.get(token=first_call.call_token).status == PhoneCall.Status.USED


def test_declined_call_says_so_and_offers_both_again(client, phone_user, no_cooldown):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "call"})
    call = newest_call()
    response = client.post(f"/dev/outbox/{call.pk}/decline")
    assert response.status_code == 302
    status = client.get(CALL_STATUS).json()
    assert status == {
        "status": "rejected",
        "open": False,
        "approved": False,
        "message": "The call ended without verifying you.",
    }
    page = client.post(PHONE_STAGE, {"action": "check-call"})
    words = text(page)
    assert "The call ended without verifying you." in words
    assert "You can try again:" in words
    body = page.content.decode()
    assert 'value="sms">Send Code' in body and 'value="call">Call Me' in body
    assert 'value="check-call"' not in body
    assert not is_signed_in(client)
    # Call Me again places a new call, which works.
    shown = shown_call_code(client.post(PHONE_STAGE, {"action": "call"}))
    assert newest_call().pk != call.pk
    assert answer(Client(), newest_call(), f"{shown}#")["approved"] is True
    assert client.post(PHONE_STAGE, {"action": "check-call"}).url == "/home/"


@pytest.mark.parametrize(
    ("provider_status", "message"),
    [
        ("no-answer", "The call was not answered."),
        ("busy", "The line was busy."),
        ("failed", "The call could not be completed."),
        ("canceled", "The call could not be completed."),
        ("completed", "The call ended without verifying you."),
    ],
)
def test_unanswered_call_says_so_and_send_code_works(
    client, phone_user, no_cooldown, provider_status, message
):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "call"})
    calls.provider_status(newest_call().call_token, provider_status)
    assert client.get(CALL_STATUS).json()["message"] == message
    words = text(client.get(PHONE_STAGE))
    assert message in words and "You can try again:" in words
    # Send Code instead.
    assert ENTER_CODE in text(client.post(PHONE_STAGE, {"action": "sms"}))
    assert client.post(PHONE_STAGE, {"action": "verify-sms", "code": sms_code()}).url == "/home/"


def test_call_not_completed_in_time(client, phone_user, settings):
    settings.CAREGATE_CALL_TIMEOUT_SECONDS = 120
    to_phone_stage(client, phone_user)
    shown = shown_call_code(client.post(PHONE_STAGE, {"action": "call"}))
    with clock_moved(121):
        assert client.get(CALL_STATUS).json()["status"] == "timed-out"
        assert answer(Client(), newest_call(), f"{shown}#")["approved"] is False
        words = text(client.post(PHONE_STAGE, {"action": "check-call"}))
    assert "The call was not completed in time." in words
    assert not is_signed_in(client)


def test_ringing_and_answered_messages_while_polling(client, phone_user):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "call"})
    token = newest_call().call_token
    calls.provider_status(token, "ringing")
    assert client.get(CALL_STATUS).json()["message"] == "Your phone is ringing…"
    calls.provider_status(token, "in-progress")
    status = client.get(CALL_STATUS).json()
    assert status["status"] == "answered" and status["open"] is True
    assert "Waiting for you to key in the number" in status["message"]


def test_continue_without_javascript_does_the_same_check(client, phone_user):
    to_phone_stage(client, phone_user)
    page = client.post(PHONE_STAGE, {"action": "call"})
    assert 'value="check-call"' in page.content.decode()
    shown = shown_call_code(page)
    for _ in range(3):
        response = client.post(PHONE_STAGE, {"action": "check-call"})
        assert response.status_code == 200 and not is_signed_in(client)
        assert shown_call_code(response) == shown, "the number stays on the page"
    answer(Client(), newest_call(), f"{shown}#")
    assert client.post(PHONE_STAGE, {"action": "check-call"}).url == "/home/"


def test_call_status_without_a_flow(client):
    response = client.get(CALL_STATUS)
    assert response.status_code == 404
    assert response.json()["status"] == "gone"


def test_call_status_before_any_call(client, phone_user):
    to_phone_stage(client, phone_user)
    assert client.get(CALL_STATUS).json() == {"status": "none", "open": False, "approved": False}
    client.post(PHONE_STAGE, {"action": "sms"})
    assert client.get(CALL_STATUS).json()["status"] == "none"


def test_send_code_after_call_me_voids_the_call_number(client, phone_user, no_cooldown):
    to_phone_stage(client, phone_user)
    shown = shown_call_code(client.post(PHONE_STAGE, {"action": "call"}))
    client.post(PHONE_STAGE, {"action": "sms"})
    assert answer(Client(), newest_call(), f"{shown}#")["approved"] is False
    response = client.post(PHONE_STAGE, {"action": "check-call"})
    assert response.status_code == 200 and not is_signed_in(client)


def test_the_dev_outbox_answer_endpoint_refuses_other_messages(client, phone_user):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    sms = OutboxMessage.objects.get(channel="sms")
    assert client.post(f"/dev/outbox/{sms.pk}/answer", {"digits": "#"}).status_code == 404
    assert client.post("/dev/outbox/999999/answer", {"digits": "#"}).status_code == 404
    assert client.get(f"/dev/outbox/{sms.pk}/answer").status_code == 405


def test_the_dev_outbox_is_absent_outside_development(client, phone_user, settings):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "call"})
    call = newest_call()
    settings.CAREGATE_DEV_OUTBOX = False
    assert client.post(f"/dev/outbox/{call.pk}/answer", {"digits": "#"}).status_code == 404
    assert client.post(f"/dev/outbox/{call.pk}/decline").status_code == 404
    assert PhoneCall.objects.get().status == PhoneCall.Status.CALLING


# --- the account changes during the sign-in ---------------------------------------------


def test_disabled_during_the_sign_in(client, phone_user):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    phone_user.is_active = False
    phone_user.save()
    response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": sms_code()})
    assert response.status_code == 302 and response.url == "/"
    assert "Please sign in again." in text(client.get("/"))
    assert not is_signed_in(client)


def test_number_changed_during_the_sign_in(client, phone_user):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    phone_user.phone_number = "+12025550177"
    phone_user.save()
    response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": sms_code()})
    # The code went to the old number: it is not accepted for the number on record now.
    assert response.status_code == 200
    assert "No text message code is waiting for this number." in text(response)
    assert not is_signed_in(client)


# --- the wrong login button -------------------------------------------------------------


def test_email_user_is_told_to_use_login_with_email(client, make_user):
    user = make_user(mfa="email")
    start(client, "phone")
    response = client.post(PHONE_CREDENTIALS, {"email": user.email, "password": PASSWORD})
    assert response.status_code == 200
    words = text(response)
    assert "Please use LOGIN WITH EMAIL" in words
    assert "select LOGIN WITH EMAIL" in words
    assert client.get(PHONE_STAGE).url == PHONE_CREDENTIALS
    assert not is_signed_in(client)
    assert not OutboxMessage.objects.exists()


def test_unregistered_user_is_told_to_complete_registration(client, make_user):
    user = make_user(mfa="none")
    start(client, "phone")
    response = client.post(PHONE_CREDENTIALS, {"email": user.email, "password": PASSWORD})
    assert "Please complete your registration" in text(response)
    assert not is_signed_in(client)


def test_phone_user_without_a_number_is_told_to_complete_registration(client, make_user):
    user = make_user(mfa="phone")
    type(user).objects.filter(pk=user.pk).update(phone_number="")
    start(client, "phone")
    response = client.post(PHONE_CREDENTIALS, {"email": user.email, "password": PASSWORD})
    words = text(response)
    assert "Please complete your registration" in words
    assert "Please use LOGIN WITH PHONE" not in words
    assert not is_signed_in(client)
    assert not OutboxMessage.objects.exists()


# --- bad input --------------------------------------------------------------------------

FUZZ = hsettings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NASTY = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "x" * 100_000,
            "é" * 10_000,
            "\x00",
            "١٢٣٤٥٦",
            "１２３４５６",
            "12345\u200b6",
            "<script>alert(1)</script>",
            "' OR '1'='1' --",
            "%00",
            "-12345",
            "1e5",
            "#",
        ]
    ),
    st.text(max_size=50),
)


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("", ""),
        ("", PASSWORD),
        ("x" * 100_000, PASSWORD),
        ("not-an-email", PASSWORD),
        ("é@é", PASSWORD),
        ("user@example.com\x00", PASSWORD),
        ("a@b.example", "x" * 100_000),
        ("a@b.example", "\x00"),
        ("a@b.example", "密码密码密码密码"),
    ],
)
def test_bad_credentials_input(client, phone_user, email, password):
    start(client, "phone")
    response = client.post(PHONE_CREDENTIALS, {"email": email, "password": password})
    assert response.status_code == 200
    assert re.search(r'role="(alert|status)"', response.content.decode())
    assert not is_signed_in(client)


@FUZZ
@given(action=st.one_of(NASTY, st.sampled_from(["sms", "call", "verify-sms", "check-call"])))
def test_bad_action_input(phone_user, action):
    cache.clear()  # rate limits: every example starts from zero
    browser = Client()
    to_phone_stage(browser, phone_user)
    response = browser.post(PHONE_STAGE, {"action": action})
    assert response.status_code == 200
    assert not is_signed_in(browser)


@FUZZ
@given(code=NASTY)
def test_bad_code_input(phone_user, code):
    cache.clear()
    browser = Client()
    to_phone_stage(browser, phone_user)
    browser.post(PHONE_STAGE, {"action": "sms"})
    response = browser.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert not is_signed_in(browser)


@FUZZ
@given(digits=NASTY)
def test_bad_digits_in_the_dev_outbox(phone_user, digits):
    cache.clear()
    browser = Client()
    to_phone_stage(browser, phone_user)
    browser.post(PHONE_STAGE, {"action": "call"})
    said = answer(Client(), newest_call(), digits)
    assert said["approved"] is False
    assert browser.post(PHONE_STAGE, {"action": "check-call"}).status_code == 200
    assert not is_signed_in(browser)


@pytest.mark.parametrize(
    "body",
    [b"action=%ff%fe&code=%c3%28", b"action&code", b"=&=&&&", b"\xff\xfe\x00garbage"],
)
def test_malformed_bodies_on_the_phone_stage(client, phone_user, body):
    to_phone_stage(client, phone_user)
    response = client.post(PHONE_STAGE, body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 200
    assert ON_RECORD in text(response)
    assert not is_signed_in(client)


def test_sms_events_name_the_user_and_the_channel(client, phone_user, settings):
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    client.post(PHONE_STAGE, {"action": "verify-sms", "code": "000000"})
    client.post(PHONE_STAGE, {"action": "verify-sms", "code": sms_code()})
    events = list(AuditEvent.objects.filter(event__in=["phone.send", "code.verify"]))
    assert [(e.event, e.outcome) for e in events] == [
        ("phone.send", "sent"),
        ("code.verify", "wrong"),
        ("code.verify", "ok"),
    ]
    for event in events:
        assert event.user_id_snapshot == phone_user.pk
        assert event.detail["channel"] == "sms"
