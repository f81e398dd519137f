"""The guide's "Registration Error Message" (Reset → username → Submit → emailed link) and
"Having Trouble Logging In?" (email + password of an unfinished registration → link).

Both pages answer the same whatever was typed, so they never tell who has an account.
"""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client
from django.utils import timezone

from caregate.accounts.models import User
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.verification.models import EmailLink
from tests.conftest import PASSWORD
from tests.registration_steps import enroll, open_link, register, registration_link

pytestmark = pytest.mark.django_db
LINKED = "complete-registration"


def page_text(response) -> str:
    return html.unescape(response.content.decode())


def field_error(response, field: str) -> str:
    match = re.search(
        rf'id="id_{field}_error"[^>]*>(.*?)</p>', response.content.decode(), re.DOTALL
    )
    return html.unescape(match.group(1)).strip() if match else ""


def reset(client: Client, username: str):
    return client.post("/registration-error/reset/", {"username": username})


def trouble(client: Client, email: str, password: str):
    return client.post("/trouble-logging-in/", {"email": email, "password": password})


# --- Registration Error ---------------------------------------------------------------


def test_registration_error_page_offers_reset(client: Client, db) -> None:
    response = client.get("/registration-error/")
    assert response.status_code == 200
    text = page_text(response)
    assert "Registration Error" in text
    assert 'href="/registration-error/reset/"' in response.content.decode()
    form = page_text(client.get("/registration-error/reset/"))
    assert "Username" in form and "Submit" in form


def test_reset_emails_a_link_that_completes_the_registration(client: Client, org) -> None:
    register(client, org)
    first = registration_link("dana@clinic.example")
    response = reset(Client(), "Dana.Provider")  # the username in any case
    assert response.status_code == 200
    assert "has been sent to its registered email address" in page_text(response)
    second = registration_link("dana@clinic.example")
    assert second != first
    # The newer link replaces the older one.
    assert "Registration Error" in page_text(open_link(Client(), first))
    browser = Client()
    assert open_link(browser, second).url == f"/{LINKED}/method/"
    assert enroll(browser, LINKED, "email", "dana@clinic.example").url == "/home/"
    user = User.objects.get(username="dana.provider")
    assert user.mfa_method == User.MfaMethod.EMAIL
    assert AuditEvent.objects.filter(event="registration.reset", outcome="sent").exists()


def test_reset_answers_identically_whether_or_not_the_username_exists(
    client: Client, org, make_user
) -> None:
    register(client, org)
    make_user(username="registered.user", mfa="email")
    before = OutboxMessage.objects.count()
    answers = [
        reset(Client(), "dana.provider"),  # registration in progress: link sent
        reset(Client(), "no.such.user"),  # unknown
        reset(Client(), "registered.user"),  # already registered: nothing to complete
    ]
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    assert OutboxMessage.objects.count() == before + 1
    assert registration_link("dana@clinic.example")


def test_reset_sends_nothing_for_an_inactive_account(client: Client, org) -> None:
    register(client, org)
    User.objects.update(is_active=False)
    before = OutboxMessage.objects.count()
    assert reset(client, "dana.provider").status_code == 200
    assert OutboxMessage.objects.count() == before


def test_reset_requires_a_username(client: Client, db) -> None:
    response = reset(client, "")
    assert field_error(response, "username") == "Please enter your Username."
    response = reset(client, "   ")
    assert field_error(response, "username") == "Please enter your Username."


def test_reset_requests_are_limited_per_username(client: Client, org) -> None:
    register(client, org)
    before = OutboxMessage.objects.count()
    answers = [reset(Client(REMOTE_ADDR=f"198.51.100.{n}"), "dana.provider") for n in range(5)]
    assert len({r.content for r in answers}) == 1
    assert OutboxMessage.objects.count() == before + 3
    assert AuditEvent.objects.filter(event="registration.reset", outcome="throttled").exists()


def test_reset_requests_are_limited_per_client(client: Client, org, make_user) -> None:
    for n in range(10):
        reset(client, f"someone{n}")
    register(Client(), org)
    before = OutboxMessage.objects.count()
    reset(client, "dana.provider")
    assert OutboxMessage.objects.count() == before


# --- Having trouble logging in? -------------------------------------------------------


@pytest.fixture
def unfinished(make_user) -> User:
    """Verified the work email and created a password, but did not finish MFA."""
    return make_user(
        username="half.way",
        email="halfway@clinic.example",
        mfa="none",
        email_verified_at=timezone.now(),
    )


def test_trouble_sends_a_link_that_completes_the_registration(
    client: Client, unfinished: User
) -> None:
    response = trouble(client, "HalfWay@Clinic.example", PASSWORD)
    assert response.status_code == 200
    assert "we have sent a link to that email address" in page_text(response)
    path = registration_link("halfway@clinic.example")
    assert open_link(client, path).url == f"/{LINKED}/method/"
    response = enroll(client, LINKED, "phone", "halfway@clinic.example", phone="2025550150")
    assert response.status_code == 302 and response.url == "/home/"
    unfinished.refresh_from_db()
    assert unfinished.mfa_method == User.MfaMethod.PHONE
    assert unfinished.phone_number == "+12025550150"
    assert AuditEvent.objects.filter(event="trouble.link", outcome="sent").exists()


def test_trouble_answers_identically_in_every_case(
    client: Client, unfinished: User, make_user
) -> None:
    make_user(email="registered@clinic.example", mfa="email")
    make_user(email="notverified@clinic.example", mfa="none")
    answers = [
        trouble(Client(), "halfway@clinic.example", PASSWORD),  # link sent
        trouble(Client(), "halfway@clinic.example", "Wrong-Password-123"),
        trouble(Client(), "nobody@clinic.example", PASSWORD),
        trouble(Client(), "registered@clinic.example", PASSWORD),
        trouble(Client(), "notverified@clinic.example", PASSWORD),
    ]
    assert {r.status_code for r in answers} == {200}
    assert len({r.content for r in answers}) == 1
    assert list(OutboxMessage.objects.values_list("to", flat=True)) == ["halfway@clinic.example"]
    assert EmailLink.objects.count() == 1


def test_trouble_validates_its_fields(client: Client, db) -> None:
    response = trouble(client, "", "")
    assert field_error(response, "email") == "Please enter your Email Address."
    assert field_error(response, "password") == "Please enter your Password."
    response = trouble(client, "not-an-email", PASSWORD)
    assert field_error(response, "email") == "Enter a valid email address."


def test_trouble_requests_are_limited(client: Client, unfinished: User) -> None:
    for n in range(10):
        trouble(client, f"guess{n}@clinic.example", PASSWORD)
    response = trouble(client, "halfway@clinic.example", PASSWORD)
    assert response.status_code == 200
    assert not OutboxMessage.objects.exists()


def test_trouble_page_links_to_mfa_help(client: Client, db) -> None:
    page = client.get("/trouble-logging-in/")
    assert "Having trouble logging in?" in page_text(page)
    assert 'href="/trouble-logging-in/help/"' in page.content.decode()
    help_page = page_text(client.get("/trouble-logging-in/help/"))
    assert "Multi-Factor Authentication Help" in help_page
    assert "/registration-error/reset/" in help_page


def test_login_page_links_to_every_helper(client: Client, db) -> None:
    text = client.get("/").content.decode()
    assert 'href="/register/"' in text
    assert 'href="/mfa-registration/"' in text
    assert 'href="/trouble-logging-in/"' in text
