"""MFA registration: Section 1 (username + password) and the same enrollment reached from
the emailed link (Section 2): LOGIN METHOD → work email code → New Password → (PHONE)
number and Send Code / Call Me → signed in."""

from __future__ import annotations

import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.utils import timezone

from caregate.accounts.models import TermsVersion, User
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.flows.stages.set_password import EMAIL_NOW_TAKEN
from caregate.flows.stages.user_info import EMAIL_TAKEN
from caregate.portal.models import Message
from caregate.verification.models import EmailLink, VerificationCode
from tests.conftest import PASSWORD
from tests.registration_steps import (
    NEW_PASSWORD,
    choose,
    create_password,
    email_code,
    enroll,
    open_link,
    register,
    registration_link,
    section1_login,
    sms_code,
    verify_email,
)

pytestmark = pytest.mark.django_db
S1 = "mfa-registration"
LINKED = "complete-registration"


def page_text(response) -> str:
    return html.unescape(response.content.decode())


def field_error(response, field: str) -> str:
    match = re.search(
        rf'id="id_{field}_error"[^>]*>(.*?)</p>', response.content.decode(), re.DOTALL
    )
    return html.unescape(match.group(1)).strip() if match else ""


@pytest.fixture
def legacy(make_user) -> User:
    """An existing portal user (Section 1): username and password, no MFA yet."""
    return make_user(username="legacy.user", email="legacy@old.example", mfa="none")


def signed_in_as(client: Client) -> int | None:
    value = client.session.get(SESSION_KEY)
    return int(value) if value is not None else None


# --- Section 1 ------------------------------------------------------------------------


def test_section1_email_registers_mfa_and_signs_in(client: Client, legacy: User) -> None:
    old_hash = legacy.password
    response = section1_login(client, "legacy.user", PASSWORD)
    assert response.status_code == 302 and response.url == f"/{S1}/method/"
    response = enroll(client, S1, "email", "work.email@clinic.example")
    assert response.status_code == 302 and response.url == "/home/"
    legacy.refresh_from_db()
    assert legacy.mfa_method == User.MfaMethod.EMAIL
    assert legacy.phone_number == ""
    assert legacy.mfa_registered_at is not None
    assert legacy.email == "work.email@clinic.example"
    assert legacy.email_verified_at is not None
    assert legacy.password != old_hash
    assert legacy.password.startswith("argon2$argon2id$")
    assert legacy.check_password(NEW_PASSWORD)
    assert not legacy.check_password(PASSWORD)
    assert signed_in_as(client) == legacy.pk
    events = set(
        AuditEvent.objects.filter(user_id_snapshot=legacy.pk).values_list("event", "outcome")
    )
    assert ("mfa.registered", "email") in events
    assert ("password.set", "success") in events
    assert ("signin", "success") in events


def notices_to(address: str) -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(to=address, subject__contains="New email address"))


def test_section1_tells_the_old_address_that_the_email_was_replaced(
    client: Client, legacy: User
) -> None:
    # Whoever knows the password can register the account to a mailbox of their own: the
    # account's old address hears of it.
    section1_login(client, "legacy.user", PASSWORD)
    enroll(client, S1, "email", "work.email@clinic.example")
    (notice,) = notices_to("legacy@old.example")
    assert "legacy.user" in notice.body
    assert "from l***@o***.example to w***@c***.example" in notice.body
    assert "work.email@clinic.example" not in notice.body
    assert "call the help desk" in notice.body
    assert not notices_to("work.email@clinic.example")
    assert Message.objects.filter(recipient=legacy, subject="New email address").count() == 1


@pytest.mark.parametrize("typed", ["legacy@old.example", "Legacy@OLD.example"])
def test_no_notice_when_the_work_email_is_the_address_on_record(
    client: Client, legacy: User, typed: str
) -> None:
    # An imported address may be stored in capitals; the form keeps what is typed.
    User.objects.filter(pk=legacy.pk).update(email="Legacy@Old.Example")
    section1_login(client, "legacy.user", PASSWORD)
    assert enroll(client, S1, "email", typed).url == "/home/"
    assert not OutboxMessage.objects.filter(subject__contains="New email address").exists()


def test_no_notice_when_the_account_had_no_email(client: Client, make_user) -> None:
    User.objects.filter(pk=make_user(username="no.address", mfa="none").pk).update(email="")
    section1_login(client, "no.address", PASSWORD)
    assert enroll(client, S1, "email", "first@clinic.example").url == "/home/"
    assert not OutboxMessage.objects.filter(subject__contains="New email address").exists()


def test_no_notice_when_create_is_refused(client: Client, legacy: User, make_user) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "email")
    verify_email(client, S1, "taken.later@clinic.example")
    make_user(username="quick", email="taken.later@clinic.example")
    refused = create_password(client, S1)
    assert refused.status_code == 200
    assert not OutboxMessage.objects.filter(subject__contains="New email address").exists()


def test_section1_phone_by_sms_registers_the_number(client: Client, legacy: User) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    response = enroll(client, S1, "phone", "legacy@old.example", phone="(601) 555-0188")
    assert response.status_code == 302 and response.url == "/home/"
    legacy.refresh_from_db()
    assert legacy.mfa_method == User.MfaMethod.PHONE
    assert legacy.phone_number == "+16015550188"
    assert legacy.mfa_registered_at is not None
    assert legacy.email_verified_at is not None
    assert legacy.check_password(NEW_PASSWORD)
    assert AuditEvent.objects.filter(
        event="mfa.registered", outcome="phone", user_id_snapshot=legacy.pk
    ).exists()


def test_section1_phone_by_call_registers_the_number(client: Client, legacy: User) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "phone")
    verify_email(client, S1, "legacy@old.example")
    create_password(client, S1)
    response = client.post(
        f"/{S1}/phone/", {"action": "call", "country_code": "1", "phone_number": "2025550177"}
    )
    assert response.status_code == 200
    shown = re.search(r'aria-label="Number to key in">(\d{6})<', response.content.decode())
    assert shown, "code mode: the page shows the number to key in"
    call = OutboxMessage.objects.get(channel="voice", to="+12025550177")
    # Pressing # alone approves nothing in code mode.
    client.post(f"/dev/outbox/{call.pk}/answer", {"digits": "#"})
    assert client.post(f"/{S1}/phone/", {"action": "check-call"}).status_code == 200
    legacy.refresh_from_db()
    assert legacy.mfa_method == User.MfaMethod.NONE
    client.post(f"/dev/outbox/{call.pk}/answer", {"digits": shown.group(1) + "#"})
    status = client.get(f"/{S1}/call-status.json").json()
    assert status["approved"] is True
    response = client.post(f"/{S1}/phone/", {"action": "check-call"})
    assert response.status_code == 302 and response.url == "/home/"
    legacy.refresh_from_db()
    assert legacy.mfa_method == User.MfaMethod.PHONE
    assert legacy.phone_number == "+12025550177"


def test_section1_for_an_already_registered_user_shows_the_notice(
    client: Client, make_user
) -> None:
    user = make_user(username="done.user", mfa="email")
    response = section1_login(client, "done.user", PASSWORD)
    assert response.status_code == 200
    text = page_text(response)
    assert "You have already registered" in text
    assert "LOGIN WITH PHONE" in text and "LOGIN WITH EMAIL" in text
    # It went no further: the method page sends the user back to the credentials.
    following = client.get(f"/{S1}/method/")
    assert following.status_code == 302 and following.url == f"/{S1}/credentials/"
    assert signed_in_as(client) is None
    user.refresh_from_db()
    assert user.mfa_method == User.MfaMethod.EMAIL


def test_section1_is_open_to_a_phone_user_whose_number_was_cleared(
    client: Client, make_user
) -> None:
    user = make_user(username="lost.number", mfa="phone")
    User.objects.filter(pk=user.pk).update(phone_number="")
    response = section1_login(client, "lost.number", PASSWORD)
    assert "You have already registered" not in page_text(response)
    assert client.get(f"/{S1}/method/").status_code == 200


def test_section1_wrong_password_and_unknown_user_answer_alike(
    client: Client, legacy: User
) -> None:
    wrong = section1_login(client, "legacy.user", "not-the-password")
    unknown = section1_login(client, "nobody.here", "not-the-password")
    assert wrong.status_code == unknown.status_code == 200
    assert "We could not sign you in with that username and password" in page_text(wrong)
    assert page_text(wrong).replace("legacy.user", "X").count("could not sign you in") == 1
    strip = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"|value="[^"]*"')
    assert strip.sub("", wrong.content.decode()) == strip.sub("", unknown.content.decode())


def test_stages_cannot_be_skipped(client: Client, legacy: User) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    for stage in ["email-code", "password", "phone"]:
        response = client.get(f"/{S1}/{stage}/")
        assert response.status_code == 302 and response.url == f"/{S1}/method/"
    choose(client, S1, "email")
    response = client.post(
        f"/{S1}/password/",
        {"action": "create", "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD},
    )
    assert response.status_code == 302 and response.url == f"/{S1}/email-code/"
    legacy.refresh_from_db()
    assert legacy.check_password(PASSWORD)


def test_choose_method_requires_phone_or_email(client: Client, legacy: User) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    response = choose(client, S1, "fax")
    assert response.status_code == 200
    assert "Please select PHONE or EMAIL." in page_text(response)
    text = page_text(client.get(f"/{S1}/method/"))
    assert "LOGIN METHOD" in text and "cannot use an extension" in text


# --- the work email -------------------------------------------------------------------


def test_mfa_registration_email_cannot_be_another_users(
    client: Client, legacy: User, make_org, make_user
) -> None:
    make_user(email="taken@clinic.example", organization=make_org(name="Lakeside Pediatrics"))
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "email")
    # The email step does not say the address is taken (it would answer anyone who has a
    # sign-in): the code goes out as for any address.
    response = verify_email(client, S1, "Taken@Clinic.example")
    assert response.status_code == 302 and response.url == f"/{S1}/password/"
    # Having verified the code the user controls the mailbox: now it is refused, at save.
    response = create_password(client, S1)
    assert response.status_code == 200
    assert EMAIL_TAKEN in page_text(response)
    assert "Lakeside" not in page_text(response)
    legacy.refresh_from_db()
    assert legacy.email == "legacy@old.example"
    assert legacy.check_password(PASSWORD)
    assert legacy.email_verified_at is None
    # Change → the user's own current address is fine.
    client.post(f"/{S1}/password/", {"action": "change"})
    VerificationCode.objects.update(created_at=timezone.now() - timedelta(minutes=1))
    verify_email(client, S1, "legacy@old.example")
    assert create_password(client, S1).url == "/home/"


def test_wrong_email_code_is_refused_with_attempts_left(client: Client, legacy: User) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "email")
    client.post(f"/{S1}/email-code/", {"action": "send", "email": "w@clinic.example"})
    right = email_code("w@clinic.example")
    wrong = "000000" if right != "000000" else "111111"
    response = client.post(f"/{S1}/email-code/", {"action": "verify", "code": wrong})
    assert response.status_code == 200
    assert "That code is not correct" in page_text(response)
    assert "4 attempts left" in page_text(response)
    assert client.get(f"/{S1}/password/").url == f"/{S1}/email-code/"


def test_change_on_the_password_page_goes_back_to_the_email_step(
    client: Client, legacy: User
) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "email")
    verify_email(client, S1, "first@clinic.example")
    page = client.get(f"/{S1}/password/")
    assert "The code has been verified. You can now continue." in page_text(page)
    assert "first@clinic.example" in page_text(page)
    assert "Change" in page_text(page)
    response = client.post(f"/{S1}/password/", {"action": "change"})
    assert response.status_code == 302 and response.url == f"/{S1}/email-code/"
    email_page = client.get(f"/{S1}/email-code/")
    assert 'name="email"' in email_page.content.decode()
    assert "Send verification code" in page_text(email_page)
    # The password page is out of reach until an email is verified again.
    assert client.get(f"/{S1}/password/").url == f"/{S1}/email-code/"
    # A little later (the resend cooldown is over) the user verifies another address.
    VerificationCode.objects.update(created_at=timezone.now() - timedelta(minutes=1))
    verify_email(client, S1, "second@clinic.example")
    response = create_password(client, S1)
    assert response.status_code == 302 and response.url == "/home/"
    legacy.refresh_from_db()
    assert legacy.email == "second@clinic.example"


def test_password_rules_and_confirmation(client: Client, legacy: User) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "email")
    verify_email(client, S1, "legacy@old.example")
    mismatch = client.post(
        f"/{S1}/password/",
        {"action": "create", "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD + "x"},
    )
    assert field_error(mismatch, "confirm_password") == "The two passwords do not match."
    short = create_password(client, S1, "Short-1")
    assert "too short" in field_error(short, "new_password")
    empty = client.post(f"/{S1}/password/", {"action": "create"})
    assert field_error(empty, "new_password") == "Please enter a New Password."
    legacy.refresh_from_db()
    assert legacy.check_password(PASSWORD)
    assert legacy.email_verified_at is None


def test_email_taken_by_someone_else_before_create_is_a_message_not_a_crash(
    client: Client, legacy: User, make_user, monkeypatch
) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "email")
    verify_email(client, S1, "race@clinic.example")
    make_user(email="race@clinic.example")  # another registration won the address
    # ... after Create checked it (the race the database's unique email catches).
    monkeypatch.setattr("caregate.flows.mfa_registration.email_available", lambda *a: "")
    response = create_password(client, S1)
    assert response.status_code == 200
    assert EMAIL_NOW_TAKEN in page_text(response)
    legacy.refresh_from_db()
    assert legacy.email == "legacy@old.example"
    assert legacy.check_password(PASSWORD)
    assert legacy.email_verified_at is None
    # Change → another address → Create works.
    monkeypatch.undo()
    client.post(f"/{S1}/password/", {"action": "change"})
    VerificationCode.objects.update(created_at=timezone.now() - timedelta(minutes=1))
    verify_email(client, S1, "mine@clinic.example")
    assert create_password(client, S1).url == "/home/"


# --- the phone number -----------------------------------------------------------------


@pytest.mark.parametrize(
    "number", ["202-555-0143 ext 12", "2025550143x12", "(202) 555-0143 #12", "202.555.0143,12"]
)
def test_phone_enroll_refuses_extensions(client: Client, legacy: User, number: str) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "phone")
    verify_email(client, S1, "legacy@old.example")
    create_password(client, S1)
    for action in ["sms", "call"]:
        response = client.post(
            f"/{S1}/phone/", {"action": action, "country_code": "1", "phone_number": number}
        )
        assert response.status_code == 200
        assert "extensions are not supported" in field_error(response, "phone_number")
    assert not OutboxMessage.objects.exclude(channel="email").exists()
    legacy.refresh_from_db()
    assert legacy.mfa_method == User.MfaMethod.NONE


@pytest.mark.parametrize(
    ("country", "number", "message"),
    [
        ("1", "555-0143", "10-digit phone number"),
        ("1", "", "Please enter your Phone Number."),
        ("1", "+44 20 7946 0958", "not supported"),
        ("44", "20 7946 0958", "Select a valid choice"),
    ],
)
def test_phone_enroll_validates_the_number(
    client: Client, legacy: User, country: str, number: str, message: str
) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "phone")
    verify_email(client, S1, "legacy@old.example")
    create_password(client, S1)
    response = client.post(
        f"/{S1}/phone/", {"action": "sms", "country_code": country, "phone_number": number}
    )
    errors = field_error(response, "phone_number") + field_error(response, "country_code")
    assert message in errors
    assert not OutboxMessage.objects.filter(channel="sms").exists()


def test_phone_page_offers_country_code_and_both_buttons(client: Client, legacy: User) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "phone")
    verify_email(client, S1, "legacy@old.example")
    response = create_password(client, S1)
    assert response.url == f"/{S1}/phone/"
    text = page_text(client.get(f"/{S1}/phone/"))
    assert "Enter a number below that we can send a code via SMS or phone" in text
    assert "United States (+1)" in text
    assert "Send Code" in text and "Call Me" in text


def test_abandoned_after_password_leaves_a_verified_but_unregistered_user(
    client: Client, legacy: User
) -> None:
    """The state "Having trouble logging in?" is for."""
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "phone")
    verify_email(client, S1, "legacy@old.example")
    create_password(client, S1)
    legacy.refresh_from_db()
    assert legacy.mfa_method == User.MfaMethod.NONE
    assert legacy.email_verified_at is not None
    assert legacy.check_password(NEW_PASSWORD)
    assert signed_in_as(client) is None


# --- Section 2: the same enrollment from the emailed link -----------------------------


def test_section2_phone_registration_end_to_end(client: Client, org) -> None:
    TermsVersion.objects.create(version="v1", text="Terms.", published_at="2020-01-01T00:00Z")
    register(client, org)
    response = open_link(client, registration_link("dana@clinic.example"))
    assert response.url == f"/{LINKED}/method/"
    response = enroll(client, LINKED, "phone", "dana@clinic.example", phone="601-555-0199")
    assert response.status_code == 302 and response.url == "/home/"
    user = User.objects.get(username="dana.provider")
    assert user.mfa_method == User.MfaMethod.PHONE
    assert user.phone_number == "+16015550199"
    assert user.mfa_registered_at is not None
    assert user.email_verified_at is not None
    assert user.has_usable_password() and user.password.startswith("argon2")
    assert user.check_password(NEW_PASSWORD)
    # As a new user, the Terms of Use come before the home page.
    home = client.get("/home/")
    assert home.status_code == 302 and home.url == "/terms/"
    events = set(
        AuditEvent.objects.filter(user_id_snapshot=user.pk).values_list("event", flat=True)
    )
    assert {"registration.account", "registration.link", "password.set", "mfa.registered"} <= (
        events
    )


def test_section2_email_registration_may_change_the_work_email(client: Client, org) -> None:
    register(client, org)
    open_link(client, registration_link("dana@clinic.example"))
    response = enroll(client, LINKED, "email", "dana.work@clinic.example")
    assert response.url == "/home/"
    user = User.objects.get(username="dana.provider")
    assert user.mfa_method == User.MfaMethod.EMAIL
    assert user.email == "dana.work@clinic.example"


def test_sms_code_is_bound_to_the_number_it_was_sent_to(client: Client, legacy: User) -> None:
    section1_login(client, "legacy.user", PASSWORD)
    choose(client, S1, "phone")
    verify_email(client, S1, "legacy@old.example")
    create_password(client, S1)
    client.post(
        f"/{S1}/phone/", {"action": "sms", "country_code": "1", "phone_number": "2025550161"}
    )
    code = sms_code("+12025550161")
    response = client.post(f"/{S1}/phone/", {"action": "change-number"})
    assert response.status_code == 200
    client.post(
        f"/{S1}/phone/", {"action": "sms", "country_code": "1", "phone_number": "2025550162"}
    )
    response = client.post(f"/{S1}/phone/", {"action": "verify-sms", "code": code})
    assert response.status_code == 200
    legacy.refresh_from_db()
    assert legacy.mfa_method == User.MfaMethod.NONE


def test_a_spare_link_stops_working_once_registration_is_complete(client: Client, org) -> None:
    """A second link (Reset) asked for during enrollment must not re-open it afterwards."""
    register(client, org)
    open_link(client, registration_link("dana@clinic.example"))
    client.post("/registration-error/reset/", {"username": "dana.provider"})
    spare = registration_link("dana@clinic.example")
    assert EmailLink.objects.filter(used_at__isnull=True).count() == 1
    enroll(client, LINKED, "email", "dana@clinic.example")
    user = User.objects.get(username="dana.provider")
    assert user.mfa_method == User.MfaMethod.EMAIL
    password = user.password
    other = Client()
    response = open_link(other, spare)
    assert response.status_code == 302 and response.url == "/"
    assert "registration is already complete" in page_text(other.get("/"))
    assert other.get(f"/{LINKED}/method/").status_code == 302
    user.refresh_from_db()
    assert user.password == password and user.mfa_method == User.MfaMethod.EMAIL
