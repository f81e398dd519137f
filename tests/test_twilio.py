"""Real delivery through Twilio: the REST requests (recorded with ``responses``), Twilio's
failures on the page, and the signed TwiML and status webhooks that drive a call.
"""

from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs

import pytest
import requests
import responses
from django.test import Client
from twilio.request_validator import RequestValidator

from caregate.audit.models import AuditEvent
from caregate.delivery.models import Delivery, OutboxMessage
from caregate.verification.models import PhoneCall, VerificationCode
from tests.phone_steps import (
    CALL_STATUS,
    ENTER_CODE,
    ON_RECORD,
    PHONE,
    PHONE_STAGE,
    SIX_DIGITS,
    is_signed_in,
    shown_call_code,
    text,
    to_phone_stage,
)

pytestmark = pytest.mark.django_db

SID = "AC" + "0123456789abcdef" * 2
AUTH_TOKEN = "twilio-test-auth-token"
FROM = "+12025550100"
BASE = "https://gate.example.org"
API = f"https://api.twilio.com/2010-04-01/Accounts/{SID}"
MESSAGES = f"{API}/Messages.json"
CALLS = f"{API}/Calls.json"
SMS_FAILED = "We could not send the text message just now. Please try again, or select Call Me."
CALL_FAILED = "We could not place the call just now. Please try again, or select Send Code."


@pytest.fixture
def twilio(settings):
    settings.CAREGATE_PHONE_BACKEND = "twilio"
    settings.TWILIO_ACCOUNT_SID = SID
    settings.TWILIO_AUTH_TOKEN = AUTH_TOKEN
    settings.TWILIO_FROM_NUMBER = FROM
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.TWILIO_TIMEOUT_SECONDS = 7
    settings.CAREGATE_PUBLIC_BASE_URL = BASE
    return settings


@pytest.fixture
def api(twilio):
    """Twilio's REST API, answered by ``responses``; no real request leaves the machine."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mocked:
        yield mocked


@pytest.fixture
def phone_user(make_user):
    return make_user(mfa="phone", phone=PHONE)


def message_created(api, sid: str = "SM" + "1" * 32) -> None:
    api.add(responses.POST, MESSAGES, status=201, json={"sid": sid, "status": "queued"})


def call_created(api, sid: str = "CA" + "1" * 32) -> None:
    api.add(responses.POST, CALLS, status=201, json={"sid": sid, "status": "queued"})


def twilio_error(api, url: str, status: int, code: int, message: str) -> None:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    api.add(responses.POST, url, status=status, json=body)


def form(request) -> dict[str, list[str]]:
    return parse_qs(request.body, keep_blank_values=True)


def basic_auth(request) -> str:
    scheme, _, encoded = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded).decode()


def audit(event: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event=event).order_by("id"))


# --- SMS --------------------------------------------------------------------------------


def test_sms_request_to_twilio(client, api, phone_user):
    message_created(api)
    to_phone_stage(client, phone_user)
    page = client.post(PHONE_STAGE, {"action": "sms"})
    assert ENTER_CODE in text(page)
    assert len(api.calls) == 1
    request = api.calls[0].request
    assert request.method == "POST"
    assert request.url == MESSAGES
    assert basic_auth(request) == f"{SID}:{AUTH_TOKEN}"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert request.req_kwargs["timeout"] == 7  # TWILIO_TIMEOUT_SECONDS
    sent = form(request)
    assert set(sent) == {"To", "From", "Body", "StatusCallback"}
    # Twilio reports the message's fate to a signed callback naming this one delivery.
    [delivery] = Delivery.objects.filter(channel="sms")
    assert sent["StatusCallback"] == [f"{BASE}/twilio/sms/{delivery.token}/status"]
    assert sent["To"] == [PHONE]
    assert sent["From"] == [FROM]
    body = sent["Body"][0]
    assert body.startswith("Caregate Provider Portal: your verification code is ")
    code = SIX_DIGITS.search(body).group(1)
    assert not OutboxMessage.objects.exists(), "the dev outbox is not used"
    assert [(e.outcome, e.detail["channel"]) for e in audit("phone.send")] == [("sent", "sms")]
    response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    assert response.status_code == 302 and response.url == "/home/"


def test_sms_through_a_messaging_service(client, api, twilio, phone_user):
    twilio.TWILIO_MESSAGING_SERVICE_SID = "MG" + "2" * 32
    message_created(api)
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    sent = form(api.calls[0].request)
    assert set(sent) == {"To", "MessagingServiceSid", "Body", "StatusCallback"}
    assert sent["MessagingServiceSid"] == ["MG" + "2" * 32]


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (400, 21211, "The 'To' number +12025559885 is not a valid phone number."),
        (400, 21610, "Attempt to send to unsubscribed recipient"),
        (401, 20003, "Authenticate"),
        (429, 20429, "Too Many Requests"),
        (500, 20500, "Internal Server Error"),
        (503, 20503, "Service Unavailable"),
    ],
)
def test_twilio_error_on_sms_is_shown_and_can_be_retried(
    client, api, phone_user, status, code, message
):
    twilio_error(api, MESSAGES, status, code, message)
    to_phone_stage(client, phone_user)
    response = client.post(PHONE_STAGE, {"action": "sms"})
    assert response.status_code == 200
    words = text(response)
    assert SMS_FAILED in words
    assert message not in words, "Twilio's wording stays out of the page"
    body = response.content.decode()
    assert 'value="sms">Send Code' in body and 'value="call">Call Me' in body
    assert ENTER_CODE not in words
    assert not VerificationCode.objects.exists(), "an undelivered code holds no cooldown"
    [event] = audit("phone.send")
    assert event.outcome == "failed"
    assert event.detail == {"channel": "sms", "error": f"twilio-{code}"}
    assert not is_signed_in(client)
    # Try again at once: no cooldown, and this time Twilio takes it.
    api.replace(responses.POST, MESSAGES, status=201, json={"sid": "SM" + "3" * 32})
    page = client.post(PHONE_STAGE, {"action": "sms"})
    assert ENTER_CODE in text(page)
    code_sent = SIX_DIGITS.search(form(api.calls[-1].request)["Body"][0]).group(1)
    assert client.post(PHONE_STAGE, {"action": "verify-sms", "code": code_sent}).url == "/home/"


@pytest.mark.parametrize(
    "failure",
    [
        requests.exceptions.ConnectTimeout("connect timed out"),
        requests.exceptions.ReadTimeout("read timed out"),
        requests.exceptions.ConnectionError("connection refused"),
    ],
)
def test_network_failure_on_sms_is_shown(client, api, phone_user, failure):
    api.add(responses.POST, MESSAGES, body=failure)
    to_phone_stage(client, phone_user)
    response = client.post(PHONE_STAGE, {"action": "sms"})
    assert response.status_code == 200
    assert SMS_FAILED in text(response)
    [event] = audit("phone.send")
    assert event.outcome == "failed"
    assert event.detail["error"] == type(failure).__name__
    assert not VerificationCode.objects.exists()


# --- calls ------------------------------------------------------------------------------


def place_call(client: Client, api, user) -> tuple[str, str]:
    """Call Me with Twilio; return (the call's token, the number shown on the page)."""
    call_created(api)
    to_phone_stage(client, user)
    page = client.post(PHONE_STAGE, {"action": "call"})
    shown = shown_call_code(page) if 'class="call-code"' in page.content.decode() else ""
    url = form(api.calls[-1].request)["Url"][0]
    token = re.fullmatch(rf"{re.escape(BASE)}/twilio/voice/([^/]+)/answer", url).group(1)
    return token, shown


def test_call_request_to_twilio(client, api, phone_user):
    token, shown = place_call(client, api, phone_user)
    assert len(api.calls) == 1
    request = api.calls[0].request
    assert request.url == CALLS
    assert basic_auth(request) == f"{SID}:{AUTH_TOKEN}"
    assert request.req_kwargs["timeout"] == 7
    sent = form(request)
    assert sent == {
        "To": [PHONE],
        "From": [FROM],
        "Url": [f"{BASE}/twilio/voice/{token}/answer"],
        "Method": ["POST"],
        "StatusCallback": [f"{BASE}/twilio/voice/{token}/status"],
        "StatusCallbackMethod": ["POST"],
        "StatusCallbackEvent": ["initiated", "ringing", "answered", "completed"],
        "Timeout": ["30"],
    }
    assert shown and shown not in request.body, "the number is never sent to Twilio"
    call = PhoneCall.objects.get()
    assert call.token == token
    assert call.provider_sid == "CA" + "1" * 32
    assert call.status == PhoneCall.Status.CALLING
    assert [(e.outcome, e.detail["channel"]) for e in audit("phone.send")] == [("placed", "voice")]


@pytest.mark.parametrize(
    ("status", "code"), [(400, 21215), (400, 13224), (500, 20500), (503, 20503)]
)
def test_twilio_error_on_call_is_shown_and_can_be_retried(client, api, phone_user, status, code):
    twilio_error(api, CALLS, status, code, "Twilio could not place the call")
    to_phone_stage(client, phone_user)
    response = client.post(PHONE_STAGE, {"action": "call"})
    assert response.status_code == 200
    words = text(response)
    assert CALL_FAILED in words
    assert "Calling your phone now" not in words
    body = response.content.decode()
    assert 'value="sms">Send Code' in body and 'value="call">Call Me' in body
    assert not PhoneCall.objects.exists()
    assert not VerificationCode.objects.exists()
    [event] = audit("phone.send")
    assert event.outcome == "failed"
    assert event.detail == {"channel": "voice", "error": f"twilio-{code}"}
    assert client.get(CALL_STATUS).json()["status"] == "none"
    api.replace(responses.POST, CALLS, status=201, json={"sid": "CA" + "4" * 32})
    assert "Calling your phone now" in text(client.post(PHONE_STAGE, {"action": "call"}))
    assert PhoneCall.objects.get().provider_sid == "CA" + "4" * 32


def test_network_timeout_on_call_is_shown(client, api, phone_user):
    api.add(responses.POST, CALLS, body=requests.exceptions.ReadTimeout("read timed out"))
    to_phone_stage(client, phone_user)
    response = client.post(PHONE_STAGE, {"action": "call"})
    assert response.status_code == 200
    assert CALL_FAILED in text(response)
    assert audit("phone.send")[0].detail["error"] == "ReadTimeout"
    assert not PhoneCall.objects.exists()


# --- webhooks ---------------------------------------------------------------------------


def signature(path: str, params: dict[str, str], token: str = AUTH_TOKEN) -> str:
    return RequestValidator(token).compute_signature(BASE + path, params)


def webhook(path: str, params: dict[str, str], *, sig: str | None = None):
    """POST as Twilio does; ``sig`` None: correctly signed, "": no signature header."""
    headers = {}
    value = signature(path, params) if sig is None else sig
    if value:
        headers["HTTP_X_TWILIO_SIGNATURE"] = value
    return Client().post(path, params, **headers)


def answer_path(token: str) -> str:
    return f"/twilio/voice/{token}/answer"


def gather_path(token: str) -> str:
    return f"/twilio/voice/{token}/gather"


def status_path(token: str) -> str:
    return f"/twilio/voice/{token}/status"


def call_params(**extra: str) -> dict[str, str]:
    return {"AccountSid": SID, "CallSid": "CA" + "1" * 32, "From": FROM, "To": PHONE, **extra}


def status_of(token: str) -> str:
    return PhoneCall.objects.get(token=token).status


def test_answer_webhook_says_the_prompt_and_gathers(client, api, phone_user):
    token, _ = place_call(client, api, phone_user)
    response = webhook(answer_path(token), call_params(CallStatus="in-progress"))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/xml")
    xml = response.content.decode()
    assert f'action="{BASE}{gather_path(token)}"' in xml
    assert 'finishOnKey="#"' in xml
    assert 'actionOnEmptyResult="true"' in xml
    assert "Enter the six digit number shown on your screen, followed by the pound key." in xml
    assert status_of(token) == PhoneCall.Status.ANSWERED


@pytest.mark.parametrize("path_of", [answer_path, gather_path, status_path])
@pytest.mark.parametrize(
    "sig",
    [
        "",  # unsigned
        "bm90IGEgc2lnbmF0dXJl",  # garbage
        "wrong-token",  # signed with another auth token
        "other-url",  # signed for another URL
        "other-params",  # signed for other parameters
    ],
)
def test_unsigned_or_wrongly_signed_webhooks_are_refused(client, api, phone_user, path_of, sig):
    token, shown = place_call(client, api, phone_user)
    path = path_of(token)
    params = call_params(Digits=f"{shown}", CallStatus="completed")
    if sig == "wrong-token":
        sig = signature(path, params, token="another-accounts-token")
    elif sig == "other-url":
        sig = signature(answer_path("someone-elses-call"), params)
    elif sig == "other-params":
        sig = signature(path, {**params, "Digits": "1"})
    events_before = AuditEvent.objects.count()
    response = webhook(path, params, sig=sig)
    assert response.status_code == 403
    assert status_of(token) == PhoneCall.Status.CALLING
    assert PhoneCall.objects.get(token=token).attempts == 0
    assert client.post(PHONE_STAGE, {"action": "check-call"}).status_code == 200
    assert not is_signed_in(client)
    new = list(AuditEvent.objects.order_by("id")[events_before:])
    if sig:
        assert [(e.event, e.outcome) for e in new] == [("twilio.webhook", "bad-signature")]
    else:
        assert new == []
    # The call can still be approved properly afterwards.
    assert webhook(gather_path(token), call_params(Digits=shown)).status_code == 200
    assert status_of(token) == PhoneCall.Status.APPROVED


def test_webhooks_refused_without_an_auth_token(client, api, twilio, phone_user):
    token, shown = place_call(client, api, phone_user)
    twilio.TWILIO_AUTH_TOKEN = ""
    params = call_params(Digits=shown)
    sig = RequestValidator("").compute_signature(BASE + gather_path(token), params)
    assert webhook(gather_path(token), params, sig=sig).status_code == 403
    assert status_of(token) == PhoneCall.Status.CALLING


def test_webhooks_only_take_post(client, api, phone_user):
    token, _ = place_call(client, api, phone_user)
    path = answer_path(token)
    response = Client().get(path, HTTP_X_TWILIO_SIGNATURE=signature(path, {}))
    assert response.status_code == 405


def test_correct_digits_approve_the_one_attempt_once(client, api, phone_user):
    token, shown = place_call(client, api, phone_user)
    webhook(answer_path(token), call_params())
    response = webhook(gather_path(token), call_params(Digits=shown))
    assert response.status_code == 200
    xml = response.content.decode()
    assert "Thank you. Your sign-in is verified. Goodbye." in xml
    assert "<Hangup" in xml
    assert status_of(token) == PhoneCall.Status.APPROVED
    assert client.get(CALL_STATUS).json()["approved"] is True
    # Replaying the same signed request changes nothing.
    replay = webhook(gather_path(token), call_params(Digits=shown))
    assert "This call is no longer valid. Goodbye." in replay.content.decode()
    assert status_of(token) == PhoneCall.Status.APPROVED
    assert [e.outcome for e in audit("call.keys")] == ["approved", "refused"]
    # The approval signs in this attempt, once.
    assert client.post(PHONE_STAGE, {"action": "check-call"}).url == "/home/"
    assert status_of(token) == PhoneCall.Status.USED
    webhook(gather_path(token), call_params(Digits=shown))
    assert status_of(token) == PhoneCall.Status.USED
    # A completed status afterwards does not undo it.
    webhook(status_path(token), call_params(CallStatus="completed"))
    assert status_of(token) == PhoneCall.Status.USED


def test_digits_of_one_attempt_do_not_approve_another(api, make_user):
    first_user = make_user(mfa="phone", phone=PHONE)
    second_user = make_user(mfa="phone", phone="+12025550177")
    first, second = Client(), Client()
    first_token, first_shown = place_call(first, api, first_user)
    second_token, second_shown = place_call(second, api, second_user)
    if first_shown == second_shown:
        pytest.skip("the two calls drew the same number")
    response = webhook(gather_path(second_token), call_params(Digits=first_shown))
    assert "that number is not correct" in response.content.decode()
    assert status_of(second_token) == PhoneCall.Status.ANSWERED
    assert status_of(first_token) == PhoneCall.Status.CALLING
    webhook(gather_path(first_token), call_params(Digits=first_shown))
    assert status_of(first_token) == PhoneCall.Status.APPROVED
    assert status_of(second_token) == PhoneCall.Status.ANSWERED
    assert second.post(PHONE_STAGE, {"action": "check-call"}).status_code == 200
    assert not is_signed_in(second)
    assert first.post(PHONE_STAGE, {"action": "check-call"}).url == "/home/"


def test_code_mode_bare_pound_approves_nothing(client, api, phone_user):
    token, shown = place_call(client, api, phone_user)
    webhook(answer_path(token), call_params())
    # Twilio sends an empty Digits when # is pressed alone (actionOnEmptyResult).
    for params in [call_params(Digits=""), call_params(Digits="#"), call_params()]:
        response = webhook(gather_path(token), params)
        assert response.status_code == 200
        assert status_of(token) != PhoneCall.Status.APPROVED
    assert status_of(token) == PhoneCall.Status.REJECTED  # three tries, then the call ends
    assert client.post(PHONE_STAGE, {"action": "check-call"}).status_code == 200
    assert not is_signed_in(client)
    assert shown not in repr(list(AuditEvent.objects.values()))


def test_wrong_digits_ask_again(client, api, phone_user):
    token, shown = place_call(client, api, phone_user)
    wrong = f"{(int(shown) + 1) % 1_000_000:06d}"
    response = webhook(gather_path(token), call_params(Digits=wrong))
    xml = response.content.decode()
    assert "<Gather" in xml and "Sorry, that number is not correct." in xml
    assert status_of(token) == PhoneCall.Status.ANSWERED
    webhook(gather_path(token), call_params(Digits=shown))
    assert status_of(token) == PhoneCall.Status.APPROVED


def test_press_pound_mode(client, api, twilio, phone_user):
    twilio.CAREGATE_CALL_MODE = "press-pound"
    token, shown = place_call(client, api, phone_user)
    assert shown == ""
    xml = webhook(answer_path(token), call_params()).content.decode()
    assert 'numDigits="1"' in xml and 'finishOnKey=""' in xml
    assert "press the pound key" in xml
    webhook(gather_path(token), call_params(Digits="1"))
    assert status_of(token) == PhoneCall.Status.ANSWERED
    webhook(gather_path(token), call_params(Digits="#"))
    assert status_of(token) == PhoneCall.Status.APPROVED
    assert client.post(PHONE_STAGE, {"action": "check-call"}).url == "/home/"


@pytest.mark.parametrize(
    ("call_status", "stored", "message"),
    [
        ("no-answer", PhoneCall.Status.NO_ANSWER, "The call was not answered."),
        ("busy", PhoneCall.Status.BUSY, "The line was busy."),
        ("failed", PhoneCall.Status.FAILED, "The call could not be completed."),
        ("canceled", PhoneCall.Status.FAILED, "The call could not be completed."),
        ("completed", PhoneCall.Status.REJECTED, "The call ended without verifying you."),
    ],
)
def test_status_callbacks_end_the_call_and_the_page_says_so(
    client, api, phone_user, call_status, stored, message
):
    token, shown = place_call(client, api, phone_user)
    for step in ["initiated", "ringing"]:
        assert webhook(status_path(token), call_params(CallStatus=step)).status_code == 204
    assert status_of(token) == PhoneCall.Status.RINGING
    response = webhook(status_path(token), call_params(CallStatus=call_status))
    assert response.status_code == 204
    assert status_of(token) == stored
    assert ("call.status", call_status) in [(e.event, e.outcome) for e in audit("call.status")]
    words = text(client.post(PHONE_STAGE, {"action": "check-call"}))
    assert message in words
    assert "You can try again:" in words
    assert not is_signed_in(client)
    status = client.get(CALL_STATUS).json()
    assert status == {"status": stored, "open": False, "approved": False, "message": message}
    # Keys arriving after the end approve nothing.
    webhook(gather_path(token), call_params(Digits=shown))
    assert status_of(token) == stored


def test_answer_webhook_for_an_ended_call(client, api, phone_user):
    token, _ = place_call(client, api, phone_user)
    webhook(status_path(token), call_params(CallStatus="no-answer"))
    xml = webhook(answer_path(token), call_params()).content.decode()
    assert "This call is no longer valid. Goodbye." in xml
    assert "<Gather" not in xml
    assert status_of(token) == PhoneCall.Status.NO_ANSWER


def test_webhooks_for_an_unknown_call(api):
    for path in [answer_path("nope"), gather_path("nope")]:
        response = webhook(path, call_params(Digits="123456"))
        assert response.status_code == 200
        assert "This call is no longer valid. Goodbye." in response.content.decode()
    assert webhook(status_path("nope"), call_params(CallStatus="busy")).status_code == 204


def test_phone_page_is_unchanged_by_twilio_backend(client, api, phone_user):
    to_phone_stage(client, phone_user)
    assert ON_RECORD in text(client.get(PHONE_STAGE))
    assert len(api.calls) == 0


def test_every_phone_event_names_the_user_and_the_channel(client, api, phone_user, settings):
    """Sends, code checks, the call's keys, its status and its approval are all audited
    with the user they concern and the channel, webhooks included (issue #7)."""
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    token, shown = place_call(client, api, phone_user)
    webhook(answer_path(token), call_params())
    webhook(gather_path(token), call_params(Digits="000000"))
    webhook(gather_path(token), call_params(Digits=shown))
    webhook(status_path(token), call_params(CallStatus="in-progress"))
    assert client.post(PHONE_STAGE, {"action": "check-call"}).url == "/home/"
    events = AuditEvent.objects.filter(
        event__in=["phone.send", "code.verify", "call.keys", "call.status", "phone.call"]
    )
    assert {e.event for e in events} == {"phone.send", "call.keys", "call.status", "phone.call"}
    for event in events:
        assert event.user_id_snapshot == phone_user.pk, event.event
        assert event.username == phone_user.username, event.event
        assert event.detail["channel"] == "voice", event.event
