"""Steps shared by the phone login, Twilio and Remember Me tests (Django test client)."""

from __future__ import annotations

import html
import re

from django.contrib.auth import SESSION_KEY
from django.test import Client

from caregate.delivery.models import OutboxMessage
from tests.conftest import PASSWORD

PHONE_CREDENTIALS = "/phone-login/credentials/"
PHONE_STAGE = "/phone-login/phone/"
CALL_STATUS = "/phone-login/call-status.json"
EMAIL_CREDENTIALS = "/email-login/credentials/"
EMAIL_CODE = "/email-login/email-code/"
PHONE = "+12025559885"  # the guide's XXX-XXX-9885
ON_RECORD = (
    "We have the following number on record for you. "
    "We can send a code via SMS or phone to authenticate you."
)
ENTER_CODE = "Enter your verification code below, or send a new code"
SIX_DIGITS = re.compile(r"\b(\d{6})\b")
CALL_CODE = re.compile(r'<p class="call-code"[^>]*>\s*(\d{6})\s*</p>')


def text(response) -> str:
    """The visible words of a page: tags dropped, entities decoded, blanks collapsed."""
    body = re.sub(r"<[^>]+>", " ", response.content.decode())
    return " ".join(html.unescape(body).split())


def is_signed_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def start(client: Client, method: str = "phone", *, remember: bool = False):
    data = {"method": method}
    if remember:
        data["remember_me"] = "on"
    return client.post("/login/start/", data)


def to_phone_stage(client: Client, user, *, remember: bool = False) -> None:
    response = start(client, "phone", remember=remember)
    assert response.status_code == 302 and response.url == PHONE_CREDENTIALS
    response = client.post(PHONE_CREDENTIALS, {"email": user.email, "password": PASSWORD})
    assert response.status_code == 302 and response.url == PHONE_STAGE, response


def sms_code(to: str = PHONE) -> str:
    message = OutboxMessage.objects.filter(channel="sms", to=to).order_by("-id").first()
    assert message is not None, f"no SMS to {to}"
    match = SIX_DIGITS.search(message.body)
    assert match, message.body
    return match.group(1)


def newest_call(to: str = PHONE) -> OutboxMessage:
    message = OutboxMessage.objects.filter(channel="voice", to=to).order_by("-id").first()
    assert message is not None, f"no call to {to}"
    return message


def shown_call_code(response) -> str:
    """The number the page asks the user to key in during the call (code mode)."""
    match = CALL_CODE.search(response.content.decode())
    assert match, text(response)[:2000]
    return match.group(1)


def answer(client: Client, message: OutboxMessage, digits: str) -> dict:
    """Answer a call in the dev outbox and key ``digits``; return what the call said."""
    response = client.post(
        f"/dev/outbox/{message.pk}/answer", {"digits": digits}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200
    return response.json()


def phone_login(client: Client, user, *, remember: bool = False, to: str = PHONE):
    """The whole Section 3 login by SMS; return the last response (the redirect home)."""
    to_phone_stage(client, user, remember=remember)
    client.post(PHONE_STAGE, {"action": "sms"})
    return client.post(PHONE_STAGE, {"action": "verify-sms", "code": sms_code(to)})


def email_login(client: Client, user, *, remember: bool = False):
    """The whole Section 4 login; return the last response (the redirect home)."""
    response = start(client, "email", remember=remember)
    assert response.url == EMAIL_CREDENTIALS
    response = client.post(EMAIL_CREDENTIALS, {"email": user.email, "password": PASSWORD})
    assert response.url == EMAIL_CODE, response
    client.post(EMAIL_CODE, {"action": "send"})
    message = OutboxMessage.objects.filter(channel="email", to=user.email).order_by("-id")[0]
    code = SIX_DIGITS.search(message.body).group(1)
    client.post(EMAIL_CODE, {"action": "verify", "code": code})
    return client.post(EMAIL_CODE, {"action": "continue"})
