"""Twilio answering 500 or timing out (its REST API answered by ``responses``), with the
production set-up: the request only enqueues, the worker (its own claim and run, in
process) sends and retries with backoff. The page says "Still trying…" and then, if
Twilio never answers, that the code could not be delivered; it is never a 500 page. An
SMS that finally goes out is the code the page asked for, sent once."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
import requests
import responses
from django.test import Client

from caregate.delivery.models import Delivery
from tests.phone_steps import ENTER_CODE, PHONE, PHONE_STAGE, SIX_DIGITS, text, to_phone_stage
from tests.test_delivery_tasks import api, database_backend, make_due, run_worker  # noqa: F401
from tests.test_twilio import MESSAGES

pytestmark = pytest.mark.django_db

STATUS = "/delivery/phone-login/status.json"
TRYING = "Still trying to send the verification code…"
FAILED = "We could not deliver the code: try again or choose another method."
TIMEOUT = requests.exceptions.ConnectTimeout("connect timed out")
SERVER_ERROR = {"status": 500, "json": {"code": 20500, "message": "Internal error"}}


def status_of(client: Client) -> str:
    response = client.get(STATUS)
    assert response.status_code == 200
    return response.json()["state"]


def attempt() -> None:
    """Let the backoff pass and run the worker over what is due."""
    make_due()
    run_worker()


@pytest.fixture
def phone_page(client, make_user, api, database_backend):  # noqa: F811
    to_phone_stage(client, make_user(mfa="phone", phone=PHONE))
    page = client.post(PHONE_STAGE, {"action": "sms"})
    assert page.status_code == 200 and ENTER_CODE in text(page)
    return client


def test_twilio_timing_out_then_500_then_back_delivers_the_code_once(phone_page, api):  # noqa: F811
    client = phone_page
    api.add(responses.POST, MESSAGES, body=TIMEOUT)
    api.add(responses.POST, MESSAGES, **SERVER_ERROR)
    api.add(responses.POST, MESSAGES, status=201, json={"sid": "SM" + "5" * 32})
    for _ in range(2):
        attempt()
        page = client.get(PHONE_STAGE)
        assert page.status_code == 200 and TRYING in text(page)
        assert status_of(client) == "trying"
    attempt()
    assert status_of(client) == "sent"
    assert len(api.calls) == 3
    [delivery] = Delivery.objects.all()
    assert (delivery.status, delivery.attempts, delivery.body) == ("sent", 3, "")
    # The three requests carried the same code: the one the page now verifies.
    bodies = {parse_qs(call.request.body)["Body"][0] for call in api.calls}
    assert len(bodies) == 1
    code = SIX_DIGITS.search(bodies.pop()).group(1)
    verified = client.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    # The phone step is passed: the flow moves on (signed in, or Terms of Use first).
    assert verified.status_code == 302 and verified.url != PHONE_STAGE


@pytest.mark.parametrize("failure", [TIMEOUT, None], ids=["timeout", "500"])
def test_twilio_never_answering_ends_in_a_clear_message(phone_page, api, failure):  # noqa: F811
    client = phone_page
    if failure is None:
        api.add(responses.POST, MESSAGES, **SERVER_ERROR)
    else:
        api.add(responses.POST, MESSAGES, body=failure)
    for _ in range(10):  # more rounds than attempts: the worker stops by itself
        attempt()
    [delivery] = Delivery.objects.all()
    assert delivery.status == "failed" and delivery.body == ""
    assert len(api.calls) == delivery.attempts == 3  # the first try and two retries
    page = client.get(PHONE_STAGE)
    assert page.status_code == 200
    assert FAILED in text(page) and TRYING not in text(page)
    assert status_of(client) == "failed"
    assert json.loads(client.get(STATUS).content)["message"] == FAILED
