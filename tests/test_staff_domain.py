"""The operator's staff domain is reserved (issue #9): LOGIN WITH PHONE, LOGIN WITH EMAIL,
registration and every address a customer types refuse it, pointing to the staff LOGIN;
staff accounts cannot be reached through the customer buttons at all."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from caregate.delivery.models import OutboxMessage
from tests import registration_steps as steps
from tests.conftest import PASSWORD

STAFF_DOMAIN = "staff.example.org"
POINTER = 'staff sign in with the LOGIN button under "Kepro" on the login page.'


@pytest.fixture(autouse=True)
def _domain(settings) -> None:
    settings.CAREGATE_INTERNAL_EMAIL_DOMAIN = STAFF_DOMAIN
    settings.CAREGATE_BRAND_NAME = "Kepro"
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


def page(response) -> str:
    return response.content.decode().replace("&quot;", '"').replace("&#x27;", "'")


@pytest.mark.parametrize("button", ["email", "phone"])
@pytest.mark.parametrize("address", ["pat@staff.example.org", "PAT@EU.Staff.Example.Org"])
def test_the_customer_buttons_refuse_a_staff_address(client: Client, db, button, address) -> None:
    client.post("/login/start/", {"method": button})
    response = client.post(
        f"/{button}-login/credentials/", {"email": address, "password": PASSWORD}
    )
    assert response.status_code == 200
    assert POINTER in page(response)
    assert SESSION_KEY not in client.session


def test_the_refusal_does_not_depend_on_an_account_existing(client: Client, make_staff) -> None:
    staff = make_staff(email="real@staff.example.org")
    answers = set()
    for address in [staff.email, "nobody@staff.example.org"]:
        client.post("/login/start/", {"method": "email"})
        response = client.post(
            "/email-login/credentials/", {"email": address, "password": PASSWORD}
        )
        text = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page(response))
        answers.add(text.replace(address, "ADDRESS"))
    assert len(answers) == 1


def test_registration_refuses_a_staff_address(client: Client, org) -> None:
    response = steps.register(
        client, org, email="new@staff.example.org", confirm_email="new@staff.example.org"
    )
    assert response.status_code == 200 and POINTER in page(response)
    assert not OutboxMessage.objects.exists()


def test_mfa_registration_refuses_a_staff_address_as_work_email(client: Client, make_user) -> None:
    user = make_user(username="legacy", mfa="none")
    steps.section1_login(client, "legacy", PASSWORD)
    steps.choose(client, "mfa-registration", "email")
    response = client.post(
        "/mfa-registration/email-code/", {"action": "send", "email": "me@staff.example.org"}
    )
    assert POINTER in page(response)
    assert not OutboxMessage.objects.filter(to__icontains=STAFF_DOMAIN).exists()
    user.refresh_from_db()
    assert user.email != "me@staff.example.org"


def test_forgot_password_refuses_a_staff_address(client: Client, make_staff) -> None:
    staff = make_staff()
    client.get("/forgot-password/")
    response = client.post(
        "/forgot-password/email-code/", {"action": "send", "email": staff.email}
    )
    assert POINTER in page(response)
    assert not OutboxMessage.objects.exists()


def test_forgot_password_never_finds_a_staff_account_outside_the_domain(
    client: Client, make_staff, settings
) -> None:
    # Even with no domain configured, a staff account cannot be given a local password.
    settings.CAREGATE_INTERNAL_EMAIL_DOMAIN = ""
    staff = make_staff(email="ops@elsewhere.example.org")
    client.get("/forgot-password/")
    client.post("/forgot-password/email-code/", {"action": "send", "email": staff.email})
    assert not OutboxMessage.objects.filter(to=staff.email).exists()


def test_a_staff_account_with_a_password_still_cannot_use_the_customer_buttons(
    client: Client, make_staff, settings
) -> None:
    settings.CAREGATE_INTERNAL_EMAIL_DOMAIN = ""
    staff = make_staff(email="ops@elsewhere.example.org")
    staff.set_password(PASSWORD)
    staff.mfa_method = "email"
    staff.save()
    client.post("/login/start/", {"method": "email"})
    response = client.post(
        "/email-login/credentials/", {"email": staff.email, "password": PASSWORD}
    )
    assert response.status_code == 200 and "/email-login/email-code/" not in response.get(
        "Location", ""
    )
    assert SESSION_KEY not in client.session
    response = steps.section1_login(client, staff.username, PASSWORD)
    assert response.status_code == 200 and SESSION_KEY not in client.session


def test_username_sign_in_refuses_a_staff_username(client: Client, make_staff) -> None:
    staff = make_staff()
    response = steps.section1_login(client, staff.username, PASSWORD)
    assert POINTER in page(response)


def test_trouble_logging_in_refuses_a_staff_address(client: Client, db) -> None:
    response = client.post(
        "/trouble-logging-in/", {"email": "x@staff.example.org", "password": PASSWORD}
    )
    assert POINTER in page(response)
    assert not OutboxMessage.objects.exists()


def test_without_a_domain_setting_nothing_is_reserved(client: Client, settings, db) -> None:
    settings.CAREGATE_INTERNAL_EMAIL_DOMAIN = ""
    client.post("/login/start/", {"method": "email"})
    response = client.post(
        "/email-login/credentials/", {"email": "pat@staff.example.org", "password": PASSWORD}
    )
    assert POINTER not in page(response)
