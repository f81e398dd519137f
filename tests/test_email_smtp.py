"""The code email through the SMTP backend (caregate/delivery/smtp.py: Django's, its
connection kept open between messages) to a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import email
import re
import smtplib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy

import pytest
from aiosmtpd.controller import Controller
from django.core.mail import EmailMessage

from caregate.audit.models import AuditEvent
from caregate.delivery import smtp
from caregate.verification.models import VerificationCode
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

EMAIL_CODE = "/email-login/email-code/"
SEND_FAILED = "We could not send the email just now. Please try again in a moment."


class Collector:
    """An SMTP handler that keeps every message it is given (or refuses them all)."""

    def __init__(self, refuse: bool = False) -> None:
        self.messages: list[tuple[str, list[str], bytes]] = []
        self.refuse = refuse
        self.sessions = 0  # connections that said EHLO

    async def handle_EHLO(self, server, session, envelope, hostname, responses) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refuse:
            return "554 5.7.1 Message rejected"
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def smtp_settings(settings, port: int) -> None:
    settings.EMAIL_BACKEND = "caregate.delivery.smtp.EmailBackend"  # production's
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5


@contextmanager
def serve(handler: Collector, port: int | None = None) -> Iterator[Controller]:
    controller = Controller(handler, hostname="127.0.0.1", port=port or free_port())
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()


@pytest.fixture(autouse=True)
def no_kept_connection() -> Iterator[None]:
    """Each test starts and ends without this thread's kept SMTP connection."""
    smtp.discard()
    yield
    smtp.discard()


@pytest.fixture
def smtp_server(settings) -> Iterator[Collector]:
    handler = Collector()
    with serve(handler) as controller:
        smtp_settings(settings, controller.port)
        yield handler


@pytest.fixture
def refusing_smtp_server(settings) -> Iterator[Collector]:
    handler = Collector(refuse=True)
    with serve(handler) as controller:
        smtp_settings(settings, controller.port)
        yield handler


def to_code_stage(client, user) -> None:
    client.post("/login/start/", {"method": "email"})
    response = client.post(
        "/email-login/credentials/", {"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 302 and response.url == EMAIL_CODE


def test_code_email_is_delivered_over_smtp(client, email_user, smtp_server, settings):
    to_code_stage(client, email_user)
    response = client.post(EMAIL_CODE, {"action": "send"})
    assert response.status_code == 200
    assert "Verification code has been sent to your inbox." in response.content.decode()
    assert len(smtp_server.messages) == 1
    mail_from, rcpt_tos, raw = smtp_server.messages[0]
    assert rcpt_tos == [email_user.email]
    assert mail_from == "no-reply@caregate.invalid"
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message["To"] == email_user.email
    assert "verification code" in message["Subject"].lower()
    body = message.get_body(preferencelist=("plain",)).get_content()
    codes = re.findall(r"\b\d{6}\b", body)
    assert len(codes) == 1
    # The code that travelled through SMTP is the one that signs in.
    page = client.post(EMAIL_CODE, {"action": "verify", "code": codes[0]}).content.decode()
    assert "E-mail address verified. You can now continue." in page
    response = client.post(EMAIL_CODE, {"action": "continue"})
    assert response.status_code == 302 and response.url == "/home/"


def test_smtp_server_down_gives_a_friendly_error(client, email_user, settings):
    smtp_settings(settings, free_port())  # nothing listens there
    to_code_stage(client, email_user)
    response = client.post(EMAIL_CODE, {"action": "send"})
    assert response.status_code == 200
    assert SEND_FAILED in response.content.decode()
    assert not VerificationCode.objects.exists()
    assert AuditEvent.objects.filter(event="code.send", outcome="failed").exists()


def test_smtp_server_refusing_the_message_gives_a_friendly_error(
    client, email_user, refusing_smtp_server
):
    to_code_stage(client, email_user)
    response = client.post(EMAIL_CODE, {"action": "send"})
    assert response.status_code == 200
    assert SEND_FAILED in response.content.decode()
    assert refusing_smtp_server.messages == []


def test_retry_after_the_smtp_server_comes_back(client, email_user, settings):
    port = free_port()
    smtp_settings(settings, port)
    to_code_stage(client, email_user)
    assert SEND_FAILED in client.post(EMAIL_CODE, {"action": "send"}).content.decode()
    handler = Collector()
    with serve(handler, port):
        page = client.post(EMAIL_CODE, {"action": "send"}).content.decode()
    assert "Verification code has been sent to your inbox." in page
    assert len(handler.messages) == 1


# --- the kept connection (caregate/delivery/smtp.py) ------------------------------------
def mail(to: str = "someone@example.com") -> int:
    return EmailMessage("Code", "Your code is 123456", None, [to]).send(fail_silently=False)


def test_one_connection_carries_message_after_message(smtp_server):
    for n in range(3):
        assert mail(f"user{n}@example.com") == 1
    assert len(smtp_server.messages) == 3
    assert smtp_server.sessions == 1  # Django alone: three connections


def test_a_connection_the_server_dropped_is_replaced_before_the_next_message(settings):
    port = free_port()
    smtp_settings(settings, port)
    first = Collector()
    with serve(first, port):
        mail()
    second = Collector()
    with serve(second, port):  # the server restarted: the kept socket is dead
        assert mail() == 1  # found by NOOP and replaced, not a failed attempt
    assert len(second.messages) == 1
    assert second.sessions == 1


def test_an_idle_connection_is_not_reused(smtp_server, monkeypatch):
    mail()
    monkeypatch.setattr(smtp, "IDLE_SECONDS", 0.0)  # every connection is now too old
    mail()
    assert smtp_server.sessions == 2


def test_other_server_settings_get_their_own_connection(smtp_server, settings):
    mail()
    other = Collector()
    with serve(other) as controller:
        smtp_settings(settings, controller.port)
        mail()
    assert len(other.messages) == 1
    assert len(smtp_server.messages) == 1


def test_a_refused_message_drops_the_connection(settings):
    handler = Collector(refuse=True)
    with serve(handler) as controller:
        smtp_settings(settings, controller.port)
        with pytest.raises(smtplib.SMTPDataError):
            mail()
        handler.refuse = False
        assert mail() == 1
    assert handler.sessions == 2


def test_each_thread_has_its_own_connection(smtp_server):
    mail()
    worker = threading.Thread(target=mail)
    worker.start()
    worker.join()
    mail()
    assert len(smtp_server.messages) == 3
    assert smtp_server.sessions == 2  # this thread's (kept) and the other thread's
