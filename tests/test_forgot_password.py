"""The guide's "Forgot or Reset Password", through the Django test client."""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from caregate.accounts.models import SignedInSession
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.flows.forgot_password import NOTICE_SUBJECT
from caregate.portal.models import Message
from caregate.verification.models import EmailLink, RememberedBrowser, VerificationCode
from tests.conftest import PASSWORD
from tests.phone_steps import answer, email_login, newest_call, shown_call_code, sms_code, text

pytestmark = pytest.mark.django_db

START = "/forgot-password/"
EMAIL_CODE = "/forgot-password/email-code/"
PHONE = "/forgot-password/phone/"
NEW_PASSWORD = "/forgot-password/password/"
NEW = "A-Brand-New-Passphrase-77"
SENT = "Verification code has been sent. Please copy it to the input box below."
VERIFIED = "E-mail address verified. You can now continue."


@pytest.fixture
def no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


def begin(client: Client) -> None:
    response = client.get(START)
    assert response.status_code == 302 and response.url == EMAIL_CODE


def email_code(to: str) -> str:
    message = OutboxMessage.objects.filter(channel="email", to=to).order_by("-id").first()
    assert message is not None, f"no email to {to}"
    return message.body.split("verification code is: ")[1][:6]


def send(client: Client, email: str):
    return client.post(EMAIL_CODE, {"action": "send", "email": email})


def verify_email(client: Client, user):
    """Forgot your password? → Email Address → Send → Verify code → Continue."""
    begin(client)
    send(client, user.email)
    client.post(EMAIL_CODE, {"action": "verify", "code": email_code(user.email)})
    return client.post(EMAIL_CODE, {"action": "continue"})


def new_password(client: Client, password: str = NEW, confirm: str | None = None):
    return client.post(
        NEW_PASSWORD,
        {"new_password": password, "confirm_password": password if confirm is None else confirm},
    )


def is_signed_in(client: Client) -> bool:
    return SESSION_KEY in client.session


# --- the guide's walk-throughs ----------------------------------------------------------


def test_the_link_on_the_sign_in_page_starts_the_flow(client: Client) -> None:
    client.post("/login/start/", {"method": "email"})
    page = client.get("/email-login/credentials/")
    assert 'href="/forgot-password/"' in page.content.decode()
    begin(client)
    page = client.get(EMAIL_CODE)
    assert "Forgot your password?" in text(page)
    assert "Send verification code" in text(page)


def test_email_user_resets_without_a_phone_step(client: Client, email_user) -> None:
    begin(client)
    page = send(client, email_user.email)
    assert SENT in text(page)
    page = client.post(EMAIL_CODE, {"action": "verify", "code": email_code(email_user.email)})
    assert VERIFIED in text(page)
    response = client.post(EMAIL_CODE, {"action": "continue"})
    assert response.status_code == 302 and response.url == NEW_PASSWORD
    page = client.get(NEW_PASSWORD)
    assert "New Password" in text(page) and "Confirm New Password" in text(page)
    response = new_password(client)
    assert response.status_code == 302 and response.url == "/home/"
    assert is_signed_in(client)
    email_user.refresh_from_db()
    assert email_user.check_password(NEW)
    assert not email_user.check_password(PASSWORD)


def test_phone_user_resets_with_send_code(client: Client, make_user) -> None:
    user = make_user(mfa="phone", phone="+12025559885")
    response = verify_email(client, user)
    assert response.status_code == 302 and response.url == PHONE
    page = client.get(PHONE)
    assert "XXX-XXX-9885" in text(page)
    assert client.get(NEW_PASSWORD).url == PHONE  # not reached yet
    client.post(PHONE, {"action": "sms"})
    response = client.post(PHONE, {"action": "verify-sms", "code": sms_code(user.phone_number)})
    assert response.status_code == 302 and response.url == NEW_PASSWORD
    response = new_password(client)
    assert response.status_code == 302 and response.url == "/home/"
    user.refresh_from_db()
    assert user.check_password(NEW)


def test_phone_user_resets_with_call_me(client: Client, make_user) -> None:
    user = make_user(mfa="phone", phone="+12025559885")
    verify_email(client, user)
    page = client.post(PHONE, {"action": "call"})
    answer(client, newest_call(user.phone_number), shown_call_code(page) + "#")
    response = client.post(PHONE, {"action": "check-call"})
    assert response.status_code == 302 and response.url == NEW_PASSWORD
    assert new_password(client).url == "/home/"
    user.refresh_from_db()
    assert user.check_password(NEW)


def test_a_long_pasted_password_is_accepted(client: Client, email_user) -> None:
    long_password = "correct horse battery staple " * 3  # 87 characters, spaces kept
    verify_email(client, email_user)
    assert new_password(client, long_password).url == "/home/"
    email_user.refresh_from_db()
    assert email_user.check_password(long_password)


def test_nothing_is_saved_before_the_last_continue(client: Client, make_user) -> None:
    user = make_user(mfa="phone")
    before = user.password
    verify_email(client, user)
    client.post(PHONE, {"action": "sms"})
    client.post(PHONE, {"action": "verify-sms", "code": sms_code(user.phone_number)})
    new_password(client, NEW, "Something-Else-Entirely-5")  # refused
    user.refresh_from_db()
    assert user.password == before


# --- what a reset voids and tells ----------------------------------------------------------


def test_other_sessions_end_and_remembered_browsers_are_voided(client: Client, email_user) -> None:
    other = Client()
    email_login(other, email_user, remember=True)
    assert is_signed_in(other)
    assert RememberedBrowser.objects.filter(user=email_user).exists()
    verify_email(client, email_user)
    assert new_password(client).url == "/home/"
    assert not RememberedBrowser.objects.filter(user=email_user).exists()
    assert not is_signed_in(other)
    assert other.get("/home/").status_code == 302
    assert client.get("/home/").status_code == 200  # this one stays
    kept = SignedInSession.objects.filter(user=email_user).values_list("session_key", flat=True)
    assert set(kept) == {client.session.session_key}


def test_the_user_is_told_by_email_and_in_the_message_center(
    client: Client, email_user, settings
) -> None:
    verify_email(client, email_user)
    new_password(client)
    notice = OutboxMessage.objects.filter(to__icontains=email_user.email).order_by("-id")[0]
    assert NOTICE_SUBJECT in notice.subject
    assert "Forgot your password?" in notice.body
    assert settings.CAREGATE_SUPPORT_PHONE in notice.body  # what to do if it was not them
    assert Message.objects.filter(recipient=email_user, subject=NOTICE_SUBJECT).count() == 1


def test_audit_events_for_each_step(client: Client, make_user) -> None:
    user = make_user(mfa="phone")
    verify_email(client, user)
    client.post(PHONE, {"action": "sms"})
    client.post(PHONE, {"action": "verify-sms", "code": sms_code(user.phone_number)})
    new_password(client)
    events = list(
        AuditEvent.objects.filter(user_id_snapshot=user.pk).values_list("event", "outcome")
    )
    for expected in [
        ("code.send", "sent"),
        ("code.verify", "ok"),
        ("phone.send", "sent"),
        ("password.reset", "success"),
        ("remember.voided", "success"),
        ("signin", "success"),
        ("sessions.ended", "success"),
        ("password.notice", "sent"),
    ]:
        assert expected in events, expected
    forgot = AuditEvent.objects.filter(user_id_snapshot=user.pk, event="code.send").first()
    assert forgot.flow == "forgot-password"


# --- accounts that cannot reset here -------------------------------------------------------


def test_unregistered_user_is_sent_to_complete_registration(client: Client, make_user) -> None:
    user = make_user(mfa="none")
    before = user.password
    begin(client)
    assert SENT in text(send(client, user.email))
    client.post(EMAIL_CODE, {"action": "verify", "code": email_code(user.email)})
    page = client.post(EMAIL_CODE, {"action": "continue"})
    assert page.status_code == 200
    assert "Please complete your registration" in text(page)
    assert EmailLink.objects.filter(user=user).count() == 1
    client.post(EMAIL_CODE, {"action": "continue"})  # again: no second link
    assert EmailLink.objects.filter(user=user).count() == 1
    assert client.get(NEW_PASSWORD).url == EMAIL_CODE
    user.refresh_from_db()
    assert user.password == before and not is_signed_in(client)


def test_unknown_and_disabled_emails_get_no_email(client: Client, make_user) -> None:
    disabled = make_user(is_active=False)
    for email in ["nobody@clinic.example", disabled.email]:
        begin(client)
        assert SENT in text(send(client, email))
        assert not OutboxMessage.objects.filter(to__icontains=email).exists()
        page = client.post(EMAIL_CODE, {"action": "verify", "code": "123456"})
        assert "That code is not correct" in text(page)
        assert client.post(EMAIL_CODE, {"action": "continue"}).status_code == 200


def test_a_withheld_code_never_verifies_even_with_its_own_digits(client: Client, monkeypatch):
    """The code issued for an address without an account is written without a hash (in
    the same statements as an account's): not even its own six digits verify it."""
    monkeypatch.setattr("caregate.verification.codes.generate_code", lambda: "424242")
    begin(client)
    send(client, "nobody@clinic.example")
    page = client.post(EMAIL_CODE, {"action": "verify", "code": "424242"})
    assert "That code is not correct" in text(page)
    assert VerificationCode.objects.get().code_hash == ""
    assert AuditEvent.objects.filter(event="code.send").get().outcome == "withheld"


def test_an_accounts_code_is_audited_as_sent(client: Client, email_user, monkeypatch) -> None:
    monkeypatch.setattr("caregate.verification.codes.generate_code", lambda: "424242")
    begin(client)
    send(client, email_user.email)
    assert AuditEvent.objects.filter(event="code.send").get().outcome == "sent"
    # The same digits that never verify a withheld code verify an account's (the control
    # of the test above).
    client.post(EMAIL_CODE, {"action": "verify", "code": "424242"})
    assert client.post(EMAIL_CODE, {"action": "continue"}).url == NEW_PASSWORD


def test_change_looks_the_new_address_up(client: Client, email_user, no_cooldown) -> None:
    begin(client)
    send(client, "nobody@clinic.example")
    client.post(EMAIL_CODE, {"action": "change"})
    send(client, email_user.email)
    client.post(EMAIL_CODE, {"action": "verify", "code": email_code(email_user.email)})
    assert client.post(EMAIL_CODE, {"action": "continue"}).url == NEW_PASSWORD


def test_an_account_disabled_meanwhile_cannot_finish(client: Client, email_user) -> None:
    verify_email(client, email_user)
    email_user.is_active = False
    email_user.save()
    response = new_password(client)
    assert response.status_code == 302 and response.url == "/"
    assert not is_signed_in(client)


# --- bad input for every form --------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", "Please enter your Email Address."),
        ("not-an-email", "Enter a valid email address."),
        ("a@" + "b" * 260 + ".com", "Ensure this value has at most 254 characters"),
    ],
)
def test_bad_email_address(client: Client, email: str, message: str) -> None:
    begin(client)
    page = send(client, email)
    assert page.status_code == 200 and message in text(page)
    assert SENT not in text(page)


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("", "Please enter the verification code."),
        ("12ab56", "The verification code is 6 digits."),
        ("1234567", "The verification code is 6 digits."),
        ("000000", "That code is not correct"),
    ],
)
def test_bad_email_code(client: Client, email_user, code: str, message: str) -> None:
    begin(client)
    send(client, email_user.email)
    page = client.post(EMAIL_CODE, {"action": "verify", "code": code})
    assert message in text(page)


def test_verify_and_continue_before_send(client: Client) -> None:
    begin(client)
    page = client.post(EMAIL_CODE, {"action": "verify", "code": "123456"})
    assert "Please select Send verification code first." in text(page)
    page = client.post(EMAIL_CODE, {"action": "continue"})
    assert "Please verify your email address before you continue." in text(page)


@pytest.mark.parametrize(
    ("password", "confirm", "message"),
    [
        ("", "", "Please enter a New Password."),
        (NEW, "", "Please confirm the New Password."),
        (NEW, NEW + "x", "The two passwords do not match."),
        ("short-1", "short-1", "This password is too short."),
        ("password123456", "password123456", "This password is too common."),
        ("84736291047362", "84736291047362", "This password is entirely numeric."),
        ("x" * 257, "x" * 257, "Ensure this value has at most 256 characters"),
        (PASSWORD, PASSWORD, "Your new password must be different from your current password."),
    ],
)
def test_bad_new_password(client: Client, email_user, password, confirm, message) -> None:
    verify_email(client, email_user)
    page = new_password(client, password, confirm)
    assert page.status_code == 200 and message in text(page)
    email_user.refresh_from_db()
    assert email_user.check_password(PASSWORD)


def test_bad_phone_step_input(client: Client, make_user) -> None:
    user = make_user(mfa="phone")
    verify_email(client, user)
    client.post(PHONE, {"action": "sms"})
    page = client.post(PHONE, {"action": "verify-sms", "code": "12"})
    assert "The verification code is 6 digits." in text(page)
    page = client.post(PHONE, {"action": "verify-sms", "code": "000000"})
    assert "That code is not correct" in text(page)
    assert client.post(PHONE, {"action": "nonsense"}).status_code == 200
    assert client.get(NEW_PASSWORD).url == PHONE


def test_the_same_password_is_refused_and_the_flow_goes_on(client: Client, email_user) -> None:
    verify_email(client, email_user)
    page = new_password(client, PASSWORD, PASSWORD)
    assert "must be different from your current password" in text(page)
    assert not is_signed_in(client)
    response = new_password(client)  # a new one, on the same page: the reset completes
    assert response.status_code == 302 and response.url == "/home/"
    email_user.refresh_from_db()
    assert email_user.check_password(NEW)


def test_past_the_budget_the_current_password_is_not_compared(
    client: Client, email_user, settings
) -> None:
    """The check compares a typed password with the current one: past the account's
    sign-in budget it is not made, so it cannot be used to try passwords."""
    settings.CAREGATE_RATE_LIMITS = {**settings.CAREGATE_RATE_LIMITS, "signin:account": (2, 900)}
    verify_email(client, email_user)
    for _ in range(2):
        page = new_password(client, PASSWORD, PASSWORD)
        assert "must be different from your current password" in text(page)
    # The budget is spent: the same answer for the current password as for any other.
    response = new_password(client, PASSWORD, PASSWORD)
    assert response.status_code == 302 and response.url == "/home/"
