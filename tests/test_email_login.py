"""Section 4 – Email Login, through the Django test client."""

from __future__ import annotations

import re
import smtplib
from contextlib import contextmanager
from importlib import import_module
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.test import Client

from caregate.accounts.hashers import ConfiguredArgon2PasswordHasher
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.verification.models import VerificationCode
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

CREDENTIALS = "/email-login/credentials/"
EMAIL_CODE = "/email-login/email-code/"
SIGNIN_FAILED = "We could not sign you in with that email address and password."
SEND_FAILED = "We could not send the email just now. Please try again in a moment."
CSRF_INPUT = re.compile(r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]*">')


def start(client: Client) -> None:
    response = client.post("/login/start/", {"method": "email"})
    assert response.status_code == 302 and response.url == CREDENTIALS


def sign_in_step(client: Client, email: str, password: str = PASSWORD):
    return client.post(CREDENTIALS, {"email": email, "password": password})


def to_code_stage(client: Client, user) -> None:
    start(client)
    response = sign_in_step(client, user.email)
    assert response.status_code == 302 and response.url == EMAIL_CODE


def session_cookie(client: Client) -> str:
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def is_signed_in(client: Client) -> bool:
    return SESSION_KEY in client.session


def normalized(response, email: str) -> str:
    """The page without what legitimately differs: the CSRF token and the echoed email."""
    body = CSRF_INPUT.sub("<csrf>", response.content.decode())
    assert body.count(email) == 1, "the typed email is echoed once, in its input"
    return body.replace(email, "<email>")


@contextmanager
def counted_hashing():
    """Count every Argon2 hash computed (make_password's encode and check's verify)."""
    encode = ConfiguredArgon2PasswordHasher.encode
    verify = ConfiguredArgon2PasswordHasher.verify
    with (
        mock.patch.object(
            ConfiguredArgon2PasswordHasher, "encode", autospec=True, side_effect=encode
        ) as enc,
        mock.patch.object(
            ConfiguredArgon2PasswordHasher, "verify", autospec=True, side_effect=verify
        ) as ver,
    ):
        calls = {"encode": enc, "verify": ver}
        yield calls


class FailingBackend(BaseEmailBackend):
    """A mail server that is down."""

    def send_messages(self, email_messages):
        raise smtplib.SMTPException("451 the mail server is resting")


FAILING_BACKEND = f"{__name__}.FailingBackend"


# --- success ----------------------------------------------------------------------------


def test_full_sign_in(client, email_user, outbox_code):
    start(client)
    page = client.get(CREDENTIALS)
    assert "Sign in with your email address" in page.content.decode()
    response = sign_in_step(client, email_user.email)
    assert response.status_code == 302 and response.url == EMAIL_CODE
    page = client.get(EMAIL_CODE).content.decode()
    assert "Verification is necessary. Please click Send button." in page
    assert email_user.email in page
    page = client.post(EMAIL_CODE, {"action": "send"}).content.decode()
    assert "Verification code has been sent to your inbox." in page
    code = outbox_code(email_user.email)
    page = client.post(EMAIL_CODE, {"action": "verify", "code": code}).content.decode()
    assert "E-mail address verified. You can now continue." in page
    assert not is_signed_in(client)
    response = client.post(EMAIL_CODE, {"action": "continue"})
    assert response.status_code == 302 and response.url == "/home/"
    assert client.session[SESSION_KEY] == str(email_user.pk)
    assert client.get("/home/").status_code == 200


def test_session_key_rotates_at_sign_in(client, email_user, outbox_code):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    client.post(EMAIL_CODE, {"action": "verify", "code": outbox_code(email_user.email)})
    before = session_cookie(client)
    client.post(EMAIL_CODE, {"action": "continue"})
    after = session_cookie(client)
    assert before and after and before != after
    store = import_module(django_settings.SESSION_ENGINE).SessionStore()
    assert not store.exists(before), "the pre-sign-in session must be gone"
    assert store.exists(after)
    # A browser (or attacker) still holding the old cookie is not signed in.
    fixated = Client()
    fixated.cookies[django_settings.SESSION_COOKIE_NAME] = before
    response = fixated.get("/home/")
    assert response.status_code == 302 and response.url.startswith("/?next=")


def test_audit_events_for_each_step_without_secrets(client, email_user, outbox_code):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    code = outbox_code(email_user.email)
    typo = f"{(int(code) + 1) % 1_000_000:06d}"
    client.post(EMAIL_CODE, {"action": "verify", "code": typo})
    client.post(EMAIL_CODE, {"action": "verify", "code": code})
    client.post(EMAIL_CODE, {"action": "continue"})
    events = list(AuditEvent.objects.order_by("id"))
    assert [(e.event, e.outcome) for e in events] == [
        ("signin.password", "success"),
        ("code.send", "sent"),
        ("code.verify", "wrong"),
        ("code.verify", "ok"),
        ("signin", "success"),
    ]
    assert events[0].user_id_snapshot == email_user.pk
    assert events[-1].user_id_snapshot == email_user.pk
    assert all(e.flow == "email-login" for e in events)
    assert all(e.client_ip == "127.0.0.1" for e in events)
    for event in AuditEvent.objects.values():
        text = repr(event)
        assert PASSWORD not in text
        assert code not in text
        assert typo not in text


def test_code_email_goes_to_the_user_with_a_six_digit_code(client, email_user):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    message = OutboxMessage.objects.get()
    assert message.channel == "email"
    assert message.to == email_user.email
    assert "verification code" in message.subject.lower()
    codes = re.findall(r"\b\d{6}\b", message.body)
    assert len(codes) == 1
    page = client.post(EMAIL_CODE, {"action": "verify", "code": codes[0]}).content.decode()
    assert "E-mail address verified" in page


def test_code_email_through_djangos_mail_api(client, email_user, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == [email_user.email]
    assert sent.from_email == settings.DEFAULT_FROM_EMAIL
    assert re.search(r"\b\d{6}\b", sent.body)
    assert "30 seconds" in sent.body  # CAREGATE_EMAIL_LOGIN_CODE_SECONDS


def test_wrong_code_then_right_code(client, email_user, outbox_code):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    code = outbox_code(email_user.email)
    typo = f"{(int(code) + 1) % 1_000_000:06d}"
    page = client.post(EMAIL_CODE, {"action": "verify", "code": typo}).content.decode()
    assert "That code is not correct. Please check it and try again (4 attempts left)." in page
    response = client.post(EMAIL_CODE, {"action": "continue"})
    assert response.status_code == 200
    assert "Please verify your email address before you continue." in response.content.decode()
    assert not is_signed_in(client)
    client.post(EMAIL_CODE, {"action": "verify", "code": code})
    assert client.post(EMAIL_CODE, {"action": "continue"}).url == "/home/"


@pytest.mark.parametrize("typed", ["12345", "1234567", "12a456", "١٢٣٤٥٦", "１２３４５６"])
def test_malformed_code_is_refused_without_spending_an_attempt(
    client, email_user, outbox_code, typed
):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    page = client.post(EMAIL_CODE, {"action": "verify", "code": typed}).content.decode()
    assert "The verification code is 6 digits. Please check it and try again." in page
    assert VerificationCode.objects.get().attempts == 0
    assert not AuditEvent.objects.filter(event="code.verify").exists()
    # Spaces inside a pasted code are forgiven.
    code = outbox_code(email_user.email)
    page = client.post(
        EMAIL_CODE, {"action": "verify", "code": f" {code[:3]} {code[3:]} "}
    ).content.decode()
    assert "E-mail address verified" in page


def test_expired_code_through_the_page(client, email_user, outbox_code):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    code = outbox_code(email_user.email)
    row = VerificationCode.objects.get()
    VerificationCode.objects.update(expires_at=row.created_at)
    page = client.post(EMAIL_CODE, {"action": "verify", "code": code}).content.decode()
    assert "This code has expired. Select Send new code to get a new one." in page
    assert client.post(EMAIL_CODE, {"action": "continue"}).status_code == 200
    assert not is_signed_in(client)


def test_five_wrong_codes_lock_it_through_the_page(client, email_user, outbox_code):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    code = outbox_code(email_user.email)
    typo = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(4):
        client.post(EMAIL_CODE, {"action": "verify", "code": typo})
    page = client.post(EMAIL_CODE, {"action": "verify", "code": typo}).content.decode()
    assert "Too many wrong codes: this code can no longer be used." in page
    page = client.post(EMAIL_CODE, {"action": "verify", "code": code}).content.decode()
    assert "Too many wrong codes" in page
    assert client.post(EMAIL_CODE, {"action": "continue"}).status_code == 200
    assert not is_signed_in(client)


def test_verify_before_send(client, email_user):
    to_code_stage(client, email_user)
    page = client.post(EMAIL_CODE, {"action": "verify", "code": "123456"}).content.decode()
    assert "Please select Send verification code first." in page


def test_user_disabled_during_the_flow_is_not_signed_in(client, email_user, outbox_code):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    client.post(EMAIL_CODE, {"action": "verify", "code": outbox_code(email_user.email)})
    email_user.is_active = False
    email_user.save()
    response = client.post(EMAIL_CODE, {"action": "continue"})
    assert response.status_code == 302 and response.url == "/"
    assert not is_signed_in(client)


# --- one answer for every failure -------------------------------------------------------


@pytest.fixture
def failure_pages(make_user, settings):
    """The credentials page after each failure, each in its own browser."""
    settings.CAREGATE_RATE_LIMITS = {**settings.CAREGATE_RATE_LIMITS, "signin:account": (2, 900)}
    wrong = make_user()
    disabled = make_user(is_active=False)
    throttled = make_user()
    pages = {}

    def attempt(name: str, email: str, password: str, warm_up: int = 0):
        client = Client()
        start(client)
        for _ in range(warm_up):
            sign_in_step(client, email, "not-the-password-1")
        with counted_hashing() as calls:
            response = sign_in_step(client, email, password)
        pages[name] = (response, email, calls["encode"].call_count, calls["verify"].call_count)
        assert not is_signed_in(client)

    attempt("wrong password", wrong.email, "Wrong-Password-123")
    attempt("unknown email", "nobody.here@example.com", PASSWORD)
    attempt("disabled user", disabled.email, PASSWORD)
    attempt("throttled", throttled.email, PASSWORD, warm_up=2)
    return pages


def test_every_failure_gives_the_same_message_and_status(failure_pages):
    bodies = {}
    for name, (response, email, _, _) in failure_pages.items():
        assert response.status_code == 200, name
        assert SIGNIN_FAILED in response.content.decode(), name
        bodies[name] = normalized(response, email)
    reference = bodies["wrong password"]
    for name, body in bodies.items():
        assert body == reference, f"{name} page differs from the wrong-password page"


def test_every_failure_runs_the_password_hasher_once(failure_pages):
    for name, (_, _, encodes, verifies) in failure_pages.items():
        assert encodes + verifies == 1, f"{name}: {encodes} encode + {verifies} verify"


def test_success_runs_the_password_hasher_once(client, email_user):
    start(client)
    with counted_hashing() as calls:
        response = sign_in_step(client, email_user.email)
    assert response.url == EMAIL_CODE
    assert calls["verify"].call_count == 1 and calls["encode"].call_count == 0


def test_failures_are_audited_without_the_password(failure_pages):
    outcomes = list(
        AuditEvent.objects.filter(event="signin.password").values_list("outcome", flat=True)
    )
    assert outcomes.count("throttled") == 1
    assert "success" not in outcomes
    for event in AuditEvent.objects.values():
        assert "Wrong-Password-123" not in repr(event)
        assert PASSWORD not in repr(event)
        assert "not-the-password-1" not in repr(event)


def test_per_account_sign_in_limit_locks(client, email_user, make_user, settings):
    settings.CAREGATE_RATE_LIMITS = {**settings.CAREGATE_RATE_LIMITS, "signin:account": (3, 900)}
    start(client)
    for _ in range(3):
        response = sign_in_step(client, email_user.email, "Wrong-Password-123")
        assert SIGNIN_FAILED in response.content.decode()
    # The right password no longer works for this account, in any letter case.
    response = sign_in_step(client, email_user.email)
    assert response.status_code == 200
    assert SIGNIN_FAILED in response.content.decode()
    response = sign_in_step(client, email_user.email.upper())
    assert SIGNIN_FAILED in response.content.decode()
    assert client.get(EMAIL_CODE).url == CREDENTIALS
    assert AuditEvent.objects.filter(event="signin.password", outcome="throttled").count() == 2
    # Another account is not affected.
    other = make_user()
    assert sign_in_step(client, other.email).url == EMAIL_CODE


def test_per_client_sign_in_limit_locks(client, make_user, settings):
    settings.CAREGATE_RATE_LIMITS = {**settings.CAREGATE_RATE_LIMITS, "signin:client": (3, 900)}
    users = [make_user() for _ in range(4)]
    start(client)
    for user in users[:3]:
        sign_in_step(client, user.email, "Wrong-Password-123")
    response = sign_in_step(client, users[3].email)
    assert SIGNIN_FAILED in response.content.decode()


# --- accounts that must use another way -------------------------------------------------


def test_phone_user_is_sent_to_login_with_phone(client, make_user):
    user = make_user(mfa="phone")
    start(client)
    response = sign_in_step(client, user.email)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Please use LOGIN WITH PHONE" in page
    assert not is_signed_in(client)
    assert client.get(EMAIL_CODE).url == CREDENTIALS
    assert not OutboxMessage.objects.exists()


def test_unregistered_user_gets_the_registration_notice(client, make_user):
    user = make_user(mfa="none")
    start(client)
    response = sign_in_step(client, user.email)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Please complete your registration" in page
    assert 'href="/mfa-registration/"' in page
    assert not is_signed_in(client)


def test_wrong_password_of_a_phone_user_does_not_reveal_the_method(client, make_user):
    user = make_user(mfa="phone")
    start(client)
    page = sign_in_step(client, user.email, "Wrong-Password-123").content.decode()
    assert SIGNIN_FAILED in page
    assert "LOGIN WITH PHONE" not in page


# --- sending the code -------------------------------------------------------------------


def test_send_new_code_too_soon_shows_the_cooldown(client, email_user, settings):
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 10
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    page = client.post(EMAIL_CODE, {"action": "resend"}).content.decode()
    match = re.search(r"Please wait (\d+) seconds before asking for a new code\.", page)
    assert match and 1 <= int(match.group(1)) <= 10
    assert OutboxMessage.objects.count() == 1


def test_send_new_code_after_the_cooldown_replaces_the_code(client, email_user, outbox_code):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    first = outbox_code(email_user.email)
    VerificationCode.objects.update(
        created_at=VerificationCode.objects.get().created_at.replace(year=2000)
    )
    page = client.post(EMAIL_CODE, {"action": "resend"}).content.decode()
    # Send new code says that a new one went out, not the first send's words again.
    assert "A new verification code has been sent to your inbox." in page
    assert "The code sent before no longer works." in page
    second = outbox_code(email_user.email)
    assert OutboxMessage.objects.count() == 2
    if first != second:
        page = client.post(EMAIL_CODE, {"action": "verify", "code": first}).content.decode()
        assert "That code is not correct" in page
    page = client.post(EMAIL_CODE, {"action": "verify", "code": second}).content.decode()
    assert "E-mail address verified" in page


def test_failing_mail_server_shows_a_message_and_retry_works(
    client, email_user, settings, outbox_code
):
    to_code_stage(client, email_user)
    settings.EMAIL_BACKEND = FAILING_BACKEND
    response = client.post(EMAIL_CODE, {"action": "send"})
    assert response.status_code == 200
    page = response.content.decode()
    assert SEND_FAILED in page
    assert "Send verification code" in page
    assert not VerificationCode.objects.exists(), "an undelivered code must not linger"
    assert AuditEvent.objects.filter(event="code.send", outcome="failed").count() == 1
    # The mail server is back: the retry is not blocked by a cooldown.
    settings.EMAIL_BACKEND = "caregate.delivery.outbox.OutboxEmailBackend"
    page = client.post(EMAIL_CODE, {"action": "send"}).content.decode()
    assert "Verification code has been sent to your inbox." in page
    client.post(EMAIL_CODE, {"action": "verify", "code": outbox_code(email_user.email)})
    assert client.post(EMAIL_CODE, {"action": "continue"}).url == "/home/"


def test_send_new_code_refused_by_the_cooldown_spends_no_budget(client, email_user, settings):
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 60
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        "code-send:account": (2, 3600),
    }
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    for _ in range(3):
        page = client.post(EMAIL_CODE, {"action": "resend"}).content.decode()
        assert "before asking for a new code" in page
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    page = client.post(EMAIL_CODE, {"action": "resend"}).content.decode()
    assert "Too many codes have been requested." not in page
    assert OutboxMessage.objects.count() == 2


def test_too_many_sends_are_refused(client, email_user, settings):
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        "code-send:account": (2, 3600),
    }
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    client.post(EMAIL_CODE, {"action": "resend"})
    page = client.post(EMAIL_CODE, {"action": "resend"}).content.decode()
    assert "Too many codes have been requested." in page
    assert OutboxMessage.objects.count() == 2


def test_send_new_code_refused_by_the_cooldown_does_not_claim_a_new_code(
    client, email_user, outbox_code
):
    to_code_stage(client, email_user)
    client.post(EMAIL_CODE, {"action": "send"})
    page = client.post(EMAIL_CODE, {"action": "resend"}).content.decode()
    assert "Please wait" in page
    assert "A new verification code has been sent" not in page
    assert OutboxMessage.objects.count() == 1


def test_the_first_send_is_not_called_a_new_code(client, email_user):
    to_code_stage(client, email_user)
    page = client.post(EMAIL_CODE, {"action": "send"}).content.decode()
    assert "Verification code has been sent to your inbox." in page
    assert "A new verification code" not in page
