"""Steps of the passkey tests (test client + the software authenticator)."""

from __future__ import annotations

import html
import json
import re
from datetime import UTC, datetime
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.test import Client

from caregate.accounts.models import User
from caregate.delivery.models import OutboxMessage
from caregate.factors import registry
from caregate.flows import keys
from caregate.flows.engine import Flow, FlowState
from caregate.flows.models import FlowInstance
from caregate.flows.signin import active_user, sign_in
from caregate.flows.stages.credentials import Credentials
from tests.conftest import PASSWORD
from tests.phone_steps import email_login, sms_code
from tests.webauthn_soft import SoftAuthenticator

PASSKEYS = "/account/passkeys/"
ADD = "/account/passkeys/add/"
START_ADD = "/account/passkeys/add/verify/"
VERIFY = "/add-passkey/current/"
LOGIN_START = "/login/passkey/"
LOGIN_STAGE = "/passkey-login/passkey/"
SECOND_FACTOR_CREDENTIALS = "/passkey-second-factor/credentials/"
SECOND_FACTOR_STAGE = "/passkey-second-factor/passkey/"

_OPTIONS = re.compile(r'<script id="passkey-options" type="application/json">(.*?)</script>', re.S)


def options(response: HttpResponse) -> dict[str, Any]:
    """The WebAuthn options a page gives its script."""
    match = _OPTIONS.search(response.content.decode())
    assert match, response.content.decode()[:2000]
    return json.loads(html.unescape(match.group(1)))


def page_text(response: HttpResponse) -> str:
    return html.unescape(response.content.decode())


def signed_in(client: Client, user) -> Client:
    response = email_login(client, user)
    assert response.status_code == 302 and response.url == "/home/", response
    return client


def verify_for_passkey(client: Client) -> None:
    """Add a passkey → the code to the email or phone on record (flows.ADD_PASSKEY)."""
    user = User.objects.get(pk=client.session["_auth_user_id"])
    response = client.post(START_ADD)
    assert response.status_code == 302 and response.url == VERIFY, response
    if user.usable_mfa_method == User.MfaMethod.PHONE:
        client.post(VERIFY, {"action": "sms"})
        response = client.post(
            VERIFY, {"action": "verify-sms", "code": sms_code(user.phone_number)}
        )
    else:
        client.post(VERIFY, {"action": "send"})
        message = OutboxMessage.objects.filter(to__icontains=user.email).order_by("-id").first()
        code = re.search(r"\b(\d{6})\b", message.body).group(1)
        client.post(VERIFY, {"action": "verify", "code": code})
        response = client.post(VERIFY, {"action": "continue"})
    assert response.status_code == 302 and response.url == ADD, response


def add_page(client: Client) -> HttpResponse:
    """The Add a passkey page, proving the current factor first unless this session
    already did (and has not used that proof for a passkey yet)."""
    if cache.get(f"caregate:passkeys:add-ticket:{client.session.session_key}") is None:
        verify_for_passkey(client)
    return client.get(ADD)


def enrol(client: Client, name: str = "Work laptop", **create: Any) -> SoftAuthenticator:
    """Add a passkey from the Passkeys page with a new software authenticator (the
    current factor proved first)."""
    verify_for_passkey(client)
    device = SoftAuthenticator()
    response = client.post(
        ADD, {"name": name, "credential": device.create(options(client.get(ADD)), **create)}
    )
    assert response.status_code == 302, page_text(response)
    return device


def passkey_login(client: Client) -> dict[str, Any]:
    """LOGIN WITH PASSKEY up to its screen; return that screen's options."""
    response = client.post(LOGIN_START)
    assert response.status_code == 302 and response.url == LOGIN_STAGE, response
    return options(client.get(LOGIN_STAGE))


def post_assertion(client: Client, url: str, credential: str) -> HttpResponse:
    return client.post(url, {"action": "verify", "credential": credential})


# A sign-in flow with the passkey as the second factor after the password, standing in
# for the factor choice ("Try another way", caregate/factors) that offers it.
def _finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    user = active_user(state.data["user_id"])
    assert state.data["second_factor"] == "passkey"
    return sign_in(request, user, method="email-passkey", flow=SECOND_FACTOR_FLOW.name)


SECOND_FACTOR_FLOW = Flow(
    "passkey-second-factor",
    title="Passkey as the second factor",
    stages=[Credentials(method="email"), registry.get("passkey").stage],
    on_done=_finish,
)


def start_second_factor(client: Client, user, password: str = PASSWORD) -> dict[str, Any]:
    """Password, then the passkey stage; return its options. (The flow is started as
    Flow.start() does: a new instance row, the session's pointer to it.)"""
    state = FlowState.new(SECOND_FACTOR_FLOW.name, 900, {})
    FlowInstance.objects.create(
        id=state.id,
        flow=SECOND_FACTOR_FLOW.name,
        state=state.raw,
        expires_at=datetime.fromtimestamp(state.raw["expires_at"], tz=UTC),
    )
    session = client.session
    session[keys.FLOWS] = {**session.get(keys.FLOWS, {}), SECOND_FACTOR_FLOW.name: state.id}
    session.save()
    response = client.post(SECOND_FACTOR_CREDENTIALS, {"email": user.email, "password": password})
    assert response.status_code == 302 and response.url == SECOND_FACTOR_STAGE, response
    return options(client.get(SECOND_FACTOR_STAGE))
