"""Refused attempts use up no one else's budget.

A budget shared with other people (an organization's registration ceiling, a username's
reset links, an address's or a number's codes) is counted only for an attempt the
requester's own budgets let through (``ratelimit.hit_in_turn``). A refused attempt checks
no code and sends nothing, so counting it would only let one address keep someone else
paused: the organization out of registration, a user out of their reset link or their
sign-in codes. (The phone sends' version is in test_attack_session16_sms_cap.py.)
"""

from __future__ import annotations

import html

import pytest
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.flows.stages.email_code import TOO_MANY_SENDS
from caregate.flows.stages.organization import TOO_MANY
from tests.conftest import PASSWORD
from tests.phone_steps import email_login
from tests.registration_steps import choose, section1_login

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_rate_limit_window")]


def limits(settings, **scopes: tuple[int, int]) -> None:
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        **{scope.replace("__", ":"): value for scope, value in scopes.items()},
    }


def text(response) -> str:
    return html.unescape(response.content.decode())


def try_code(client: Client, npi: str, code: str) -> str:
    client.get("/register/")
    return text(client.post("/register/organization/", {"npi": npi, "registration_code": code}))


def test_one_address_cannot_keep_an_organization_from_registering(settings, org):
    limits(
        settings,
        registration__client=(2, 3600),
        registration__npi=(100, 3600),
        **{"registration__npi-all": (3, 3600)},
    )
    stranger = Client(REMOTE_ADDR="203.0.113.5")
    for _ in range(20):
        try_code(stranger, org.npi, "WRONG-CODE")
    assert TOO_MANY in try_code(stranger, org.npi, "WRONG-CODE")
    # Only the stranger's two allowed tries reached the organization's ceiling of three.
    colleague = Client(REMOTE_ADDR="198.51.100.20")
    assert TOO_MANY not in try_code(colleague, org.npi, "REG-CODE-1")
    # The ceiling itself still holds: past it, nobody registers from anywhere.
    assert TOO_MANY in try_code(Client(REMOTE_ADDR="198.51.100.21"), org.npi, "REG-CODE-1")


def test_one_address_cannot_keep_someone_from_their_reset_link(settings, make_user):
    limits(settings, **{"link-request__client": (1, 3600), "link-request__account": (3, 3600)})
    victim = make_user(username="new.hire", email="new.hire@clinic.example", mfa="none")
    stranger = Client(REMOTE_ADDR="203.0.113.6")
    for _ in range(10):
        stranger.post("/registration-error/reset/", {"username": victim.username})
    Client(REMOTE_ADDR="198.51.100.30").post(
        "/registration-error/reset/", {"username": victim.username}
    )
    outcomes = list(
        AuditEvent.objects.filter(event="registration.reset").values_list("outcome", flat=True)
    )
    assert outcomes.count("throttled") == 9  # the stranger's, past its one
    assert outcomes[-1] != "throttled"  # the victim's own request went through
    assert OutboxMessage.objects.filter(to=victim.email).count() == 2


def test_one_account_cannot_keep_someone_from_their_sign_in_codes(settings, make_user):
    """MFA registration's email step takes a typed address: an account over its own send
    budget typing the victim's address is refused without counting that address's."""
    limits(
        settings,
        **{"code-send__account": (1, 3600), "code-send__destination": (3, 3600)},
    )
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    victim = make_user(mfa="email", email="victim@clinic.example")
    make_user(username="attacker1", email="attacker1@old.example", mfa="none")
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    section1_login(attacker, "attacker1", PASSWORD)
    choose(attacker, "mfa-registration", "email")
    refused = 0
    for _ in range(10):
        response = attacker.post(
            "/mfa-registration/email-code/", {"action": "send", "email": victim.email}
        )
        refused += TOO_MANY_SENDS in text(response)
        attacker.post("/mfa-registration/email-code/", {"action": "change"})
    assert refused == 9
    # One code went to the victim's address (the attacker's one allowed send); the
    # victim's sign-in still gets its own.
    response = email_login(Client(REMOTE_ADDR="198.51.100.40"), victim)
    assert response.status_code == 302 and response.url == "/home/"
