"""SMS pumping through enrollment: one cap on every send and call to a number being enrolled.

A number typed in at MFA registration is not on record yet, so the per-number, per-account
and per-address budgets are all an attacker with many unregistered accounts and addresses
meets. ``phone-send:new-numbers`` caps those sends for all accounts together, and counts
only the sends the other budgets let through (refused attempts from one account cannot use
everyone's allowance up). Sign-ins to a number on record are not under it.
"""

from __future__ import annotations

import html
import logging
from unittest import mock

import pytest
import redis
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.flows.stages.phone_challenge import NEW_NUMBERS_PAUSED, TOO_MANY_SENDS
from caregate.verification import ratelimit
from tests.conftest import PASSWORD
from tests.registration_steps import choose, create_password, section1_login, verify_email

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_rate_limit_window")]
PHONE_STAGE = "/mfa-registration/phone/"


def caps(settings, *, new_numbers: int, account: int = 100) -> None:
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        "phone-send:new-numbers": (new_numbers, 3600),
        "phone-send:account": (account, 3600),
        "phone-send:destination": (100, 3600),
        "phone-send:client": (100, 3600),
    }
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


def at_the_phone_step(make_user, n: int) -> Client:
    """Account ``n`` (unregistered) at MFA registration's phone step, from its own address."""
    make_user(username=f"unreg{n}", email=f"unreg{n}@old.example", mfa="none")
    client = Client(REMOTE_ADDR=f"198.51.100.{n}")
    section1_login(client, f"unreg{n}", PASSWORD)
    choose(client, "mfa-registration", "phone")
    verify_email(client, "mfa-registration", f"unreg{n}@old.example")
    response = create_password(client, "mfa-registration")
    assert response.status_code == 302 and response.url == PHONE_STAGE
    return client


def send(client: Client, n: int, action: str = "sms") -> str:
    response = client.post(
        PHONE_STAGE,
        {"action": action, "country_code": "1", "phone_number": f"601-555-01{n:02d}"},
    )
    assert response.status_code == 200
    return html.unescape(response.content.decode())


def phone_sends() -> int:
    return OutboxMessage.objects.exclude(channel="email").count()


def test_the_default_cap(settings):
    assert settings.CAREGATE_RATE_LIMITS["phone-send:new-numbers"] == (300, 3600)


def test_enrollment_sends_from_many_accounts_and_addresses_stop_at_the_cap(
    settings, make_user, caplog
):
    caps(settings, new_numbers=2)
    clients = [at_the_phone_step(make_user, n) for n in range(1, 4)]
    assert NEW_NUMBERS_PAUSED not in send(clients[0], 1)
    assert NEW_NUMBERS_PAUSED not in send(clients[1], 2, "call")  # a call counts too
    assert phone_sends() == 2
    with caplog.at_level(logging.WARNING, logger="caregate.flows.stages.phone_challenge"):
        words = send(clients[2], 3)
    assert NEW_NUMBERS_PAUSED in words and TOO_MANY_SENDS not in words
    assert phone_sends() == 2
    assert "over their cap" in caplog.text
    refusal = AuditEvent.objects.filter(event="phone.send", outcome="throttled").get()
    assert refusal.detail.get("limit") == "new-numbers"


def test_refused_attempts_do_not_use_up_everyones_allowance(settings, make_user):
    """One account over its own budget hammering Send Code: refused by its own budget,
    and not counted against the cap, so the next account still gets its code."""
    caps(settings, new_numbers=2, account=1)
    attacker = at_the_phone_step(make_user, 1)
    assert NEW_NUMBERS_PAUSED not in send(attacker, 1)
    for _ in range(10):
        words = send(attacker, 1)
        assert TOO_MANY_SENDS in words and NEW_NUMBERS_PAUSED not in words
    honest = at_the_phone_step(make_user, 2)
    assert NEW_NUMBERS_PAUSED not in send(honest, 2)
    assert phone_sends() == 2
    third = at_the_phone_step(make_user, 3)
    assert NEW_NUMBERS_PAUSED in send(third, 3)


def test_sign_ins_to_a_number_on_record_are_not_under_the_cap(settings, make_user):
    caps(settings, new_numbers=0)
    user = make_user(mfa="phone", phone="+12025550143")
    client = Client()
    client.post("/login/start/", {"method": "phone"})
    response = client.post(
        "/phone-login/credentials/", {"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 302 and response.url == "/phone-login/phone/"
    words = html.unescape(client.post("/phone-login/phone/", {"action": "sms"}).content.decode())
    assert NEW_NUMBERS_PAUSED not in words and TOO_MANY_SENDS not in words
    assert phone_sends() == 1


def test_the_cap_fails_closed_when_the_cache_is_down(settings, make_user):
    """The cache answers the per-number, per-account and per-address counts, then fails on
    the cap's: nothing is sent, and the page is the outage page, not an open gate."""
    caps(settings, new_numbers=100)
    client = at_the_phone_step(make_user, 1)
    counting = ratelimit._incr_on_redis

    def down_for_the_cap(redis_cache, counters):
        if any("new-numbers" in key for _, key in counters):
            raise redis.exceptions.ConnectionError("redis went away")
        return counting(redis_cache, counters)

    with mock.patch.object(ratelimit, "_incr_on_redis", down_for_the_cap):
        response = client.post(
            PHONE_STAGE, {"action": "sms", "country_code": "1", "phone_number": "601-555-0101"}
        )
    assert phone_sends() == 0
    # The outage page ("try again"), as for every other rate limit the cache cannot count.
    assert response.status_code == 503
