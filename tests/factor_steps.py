"""Steps shared by the authenticator-app, recovery-code and factor-choice tests."""

from __future__ import annotations

import html
import re

from django.test import Client

from caregate.factors import crypto, recovery, totp
from caregate.factors.models import AuthenticatorApp
from tests.conftest import PASSWORD
from tests.phone_steps import EMAIL_CODE, EMAIL_CREDENTIALS, PHONE_CREDENTIALS, PHONE_STAGE, start

ADD_APP = "/account/authenticator/set-up/"
REMOVE_APP = "/account/authenticator/remove/"
NEW_CODES = "/account/recovery-codes/new/"
OFFER = "/account/recovery-codes/"
CURRENT = "/add-authenticator/current/"
SETUP = "/add-authenticator/set-up-app/"
CODES_CURRENT = "/new-recovery-codes/current/"
SECRET = re.compile(r'<code class="totp-secret" id="totp-secret">([A-Z2-7 ]+)</code>')
RECOVERY = re.compile(r"<li><code>([a-z2-9]{5}-[a-z2-9]{5})</code></li>")
CODE_PAGES = {"email": EMAIL_CODE, "phone": PHONE_STAGE}


def give_app(user, *, used_step: int | None = None) -> str:
    """Put an authenticator app on ``user`` directly; return its secret."""
    secret = totp.new_secret()
    AuthenticatorApp.objects.create(
        user=user,
        secret=crypto.encrypt(secret),
        last_used_step=totp.current_step() - 5 if used_step is None else used_step,
    )
    return secret


def give_codes(user) -> list[str]:
    return recovery.generate(user)


def app_code(secret: str, offset: int = 0) -> str:
    return totp.code_at(secret, totp.current_step() + offset)


def prove_email(client: Client, base: str, email: str, outbox_code) -> object:
    """The CurrentFactor stage of a My Account flow for an email user."""
    client.post(base, {"action": "send"})
    client.post(base, {"action": "verify", "code": outbox_code(email)})
    return client.post(base, {"action": "continue"})


def open_setup(client: Client, user, outbox_code) -> str:
    """Set up authenticator app → the email code again → the QR page; return the key."""
    response = client.post(ADD_APP)
    assert response.status_code == 302 and response.url == CURRENT, response
    response = prove_email(client, CURRENT, user.email, outbox_code)
    assert response.status_code == 302 and response.url == SETUP, response
    page = client.get(SETUP).content.decode()
    match = SECRET.search(page)
    assert match, page
    return match.group(1).replace(" ", "")


def enrol_app(client: Client, user, outbox_code) -> str:
    secret = open_setup(client, user, outbox_code)
    response = client.post(SETUP, {"action": "verify", "code": app_code(secret)})
    assert response.status_code == 302, response
    return secret


def to_code_page(client: Client, user, method: str = "email", *, remember: bool = False):
    """LOGIN WITH EMAIL/PHONE → the password → the button's code page."""
    start(client, method, remember=remember)
    credentials = EMAIL_CREDENTIALS if method == "email" else PHONE_CREDENTIALS
    response = client.post(credentials, {"email": user.email, "password": PASSWORD})
    assert response.status_code == 302 and response.url == CODE_PAGES[method], response
    return response


def choose(client: Client, factor: str, method: str = "email"):
    return client.post(CODE_PAGES[method], {"factor": factor})


def verify(client: Client, code: str, method: str = "email"):
    return client.post(CODE_PAGES[method], {"action": "verify", "code": code})


def codes_on(response) -> list[str]:
    return RECOVERY.findall(response.content.decode())


def page_text(response) -> str:
    body = re.sub(r"<[^>]+>", " ", response.content.decode())
    return " ".join(html.unescape(body).split())
