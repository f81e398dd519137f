"""The portal around the sign-in: home, cases, messages, headers, CSRF, dev outbox, health,
sign-out and the automatic logoff."""

from __future__ import annotations

import re
import time
from datetime import date
from importlib import import_module
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from caregate.accounts.models import TermsVersion
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.flows import keys
from caregate.portal.models import Case, Message
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

POST_FORM = re.compile(r"<form\b[^>]*method=\"post\"[^>]*>(.*?)</form>", re.S | re.I)
CSRF_FIELD = re.compile(r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]{20,}">')


def store():
    return import_module(django_settings.SESSION_ENGINE).SessionStore()


def session_key(client: Client) -> str:
    return client.cookies[django_settings.SESSION_COOKIE_NAME].value


def set_session(client: Client, **values) -> None:
    session = client.session
    for key, value in values.items():
        session[key] = value
    session.save()


def add_case(org, number: str, status: str, name: str = "", program: str = "") -> Case:
    return Case.objects.create(
        organization=org,
        case_number=number,
        program_number=program,
        contract=org.name,
        case_type="Home Health",
        consumer_id=f"MC-{number}",
        consumer_name=name or f"Consumer {number}",
        consumer_dob=date(1970, 1, 2),
        status=status,
    )


@pytest.fixture
def portal_data(email_user, make_org, make_user):
    mine = email_user.organization
    other_org = make_org(name="Other Org")
    colleague = make_user(organization=mine)
    for n in range(2):
        add_case(mine, f"C-W{n}", "wip", name=f"Wip Person {n}")
    for n in range(3):
        add_case(mine, f"C-N{n}", "not_submitted", name=f"Saved Person {n}", program=f"P-N{n}")
    add_case(mine, "C-S0", "submitted", name="Submitted Person", program="P-77")
    for n in range(5):
        add_case(other_org, f"X-W{n}", "wip", name=f"Foreign Wip {n}")
    for n in range(4):
        add_case(other_org, f"X-N{n}", "not_submitted", name=f"Foreign Saved {n}")
    everyone = Message.objects.create(organization=mine, subject="To everyone", body="a")
    already = Message.objects.create(organization=mine, subject="Already read", body="b")
    already.read_by.add(email_user)
    personal = Message.objects.create(
        organization=mine, recipient=email_user, subject="Just for you", body="c"
    )
    Message.objects.create(
        organization=mine, recipient=colleague, subject="For a colleague", body="d"
    )
    Message.objects.create(organization=other_org, subject="Foreign news", body="e")
    return {"everyone": everyone, "already": already, "personal": personal}


# --- home, cases, messages --------------------------------------------------------------


def test_home_requires_sign_in(client):
    response = client.get("/home/")
    assert response.status_code == 302 and response.url == "/?next=/home/"
    for path in ["/cases/", "/messages/", "/help/"]:
        assert client.get(path).status_code == 302


def test_home_counters_and_table_are_the_users_organization_only(signed_in, portal_data):
    response = signed_in.get("/home/")
    assert response.status_code == 200
    counters = response.context["counters"]
    assert (
        counters.new_messages,
        counters.work_in_progress,
        counters.not_submitted,
        counters.submitted,
    ) == (2, 2, 3, 1)
    page = response.content.decode()
    assert "2 NEW MESSAGES" in page
    for n in range(3):
        assert f"Saved Person {n}" in page
    assert "Wip Person" not in page and "Submitted Person" not in page  # not in that table
    assert "Foreign" not in page


def test_home_without_data(signed_in):
    page = signed_in.get("/home/").content.decode()
    assert "0 NEW MESSAGES" in page
    assert "No records found." in page


def test_cases_lists_only_the_organizations_cases(signed_in, portal_data):
    page = signed_in.get("/cases/").content.decode()
    assert page.count("<tr><td>C-") == 6
    assert "X-W0" not in page and "Foreign" not in page


@pytest.mark.parametrize(
    ("query", "found"),
    [
        ("C-N1", ["C-N1"]),
        ("c-n1", ["C-N1"]),
        ("  C-N1  ", ["C-N1"]),
        ("P-77", ["C-S0"]),
        ("p-n2", ["C-N2"]),
        ("C-N", []),  # whole numbers only, not prefixes
        ("X-W0", []),  # another organization's case
    ],
)
def test_case_search_by_case_or_program_number(signed_in, portal_data, query, found):
    response = signed_in.get("/cases/", {"q": query})
    assert response.status_code == 200
    assert sorted(c.case_number for c in response.context["cases"]) == found
    page = response.content.decode()
    if not found:
        assert "No records found." in page
    assert "Foreign" not in page


def test_case_search_too_long(signed_in, portal_data):
    page = signed_in.get("/cases/", {"q": "C" * 31}).content.decode()
    assert "A Case # or Program # is at most 30 characters." in page


def test_message_center_marks_messages_read(signed_in, portal_data, email_user):
    response = signed_in.get("/messages/")
    page = response.content.decode()
    assert "To everyone" in page and "Just for you" in page and "Already read" in page
    assert "For a colleague" not in page and "Foreign news" not in page
    assert response.context["unread_ids"] == {
        portal_data["everyone"].pk,
        portal_data["personal"].pk,
    }
    assert page.count('<span class="badge">New</span>') == 2
    for message in ("everyone", "personal"):
        assert portal_data[message].read_by.filter(pk=email_user.pk).exists()
    again = signed_in.get("/messages/")
    assert again.context["unread_ids"] == set()
    assert '<span class="badge">New</span>' not in again.content.decode()
    assert "0 NEW MESSAGES" in signed_in.get("/home/").content.decode()


def test_reading_does_not_mark_for_colleagues(signed_in, portal_data, make_user, email_user):
    colleague = make_user(organization=email_user.organization)
    signed_in.get("/messages/")
    assert not portal_data["everyone"].read_by.filter(pk=colleague.pk).exists()


def test_terms_must_be_accepted_before_home(signed_in):
    TermsVersion.objects.create(version="v1", text="Be nice.", published_at=timezone.now())
    response = signed_in.get("/home/")
    assert response.status_code == 302 and response.url == "/terms/"
    page = signed_in.post("/terms/", {}).content.decode()
    assert "Please check the box to agree" in page
    response = signed_in.post("/terms/", {"agree": "yes"})
    assert response.url == "/home/"
    assert signed_in.get("/home/").status_code == 200


# --- headers ----------------------------------------------------------------------------


def check_headers(response) -> None:
    csp = response.headers.get("Content-Security-Policy", "")
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp
    assert response.headers.get("X-Frame-Options") == "DENY"
    assert response.headers.get("X-Content-Type-Options") == "nosniff"
    assert response.headers.get("Referrer-Policy") == "same-origin"
    assert "no-store" in response.headers.get("Cache-Control", "")


def test_security_headers_on_public_pages(client, email_user):
    check_headers(client.get("/"))
    check_headers(client.get("/healthz"))
    check_headers(client.get("/no-such-page/"))
    client.post("/login/start/", {"method": "email"})
    check_headers(client.get("/email-login/credentials/"))
    check_headers(
        client.post(
            "/email-login/credentials/", {"email": email_user.email, "password": "Wrong-pass-1"}
        )
    )


def test_security_headers_on_portal_pages(signed_in, portal_data):
    for path in ["/home/", "/cases/", "/messages/", "/help/"]:
        check_headers(signed_in.get(path))


def test_no_inline_script_or_style(signed_in, portal_data):
    """The CSP forbids inline code, so the pages must not rely on any."""
    pages = [signed_in.get(path).content.decode() for path in ["/home/", "/cases/"]]
    pages.append(Client().get("/").content.decode())
    for page in pages:
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page)
        assert "<style" not in page
        assert not re.search(r"\sstyle=", page)
        assert not re.search(r"\son[a-z]+=", page)


# --- CSRF -------------------------------------------------------------------------------


def form_pages(client: Client, email_user, make_user) -> dict[str, str]:
    """Every page with a POST form, reached the way a person reaches it."""
    pages = {}

    def get(name: str, path: str) -> None:
        response = client.get(path, follow=True)
        assert response.status_code == 200, name
        pages[name] = response.content.decode()

    get("login", "/")
    get("trouble", "/trouble-logging-in/")
    get("registration reset", "/registration-error/reset/")
    get("register", "/register/")
    get("mfa registration", "/mfa-registration/")
    client.post("/login/start/", {"method": "phone"})
    get("phone credentials", "/phone-login/credentials/")
    client.post("/login/start/", {"method": "email"})
    get("email credentials", "/email-login/credentials/")
    client.post("/email-login/credentials/", {"email": email_user.email, "password": PASSWORD})
    get("email code", "/email-login/email-code/")
    phone_user = make_user(mfa="phone")
    client.post("/login/start/", {"method": "phone"})
    client.post("/phone-login/credentials/", {"email": phone_user.email, "password": PASSWORD})
    get("phone challenge", "/phone-login/phone/")
    return pages


def test_every_form_page_has_a_csrf_token(client, email_user, make_user, signed_in):
    pages = form_pages(Client(), email_user, make_user)
    for path in ["/home/", "/cases/", "/messages/", "/help/"]:
        pages[path] = signed_in.get(path).content.decode()
    TermsVersion.objects.create(version="v1", text="Be nice.", published_at=timezone.now())
    pages["terms"] = signed_in.get("/terms/").content.decode()
    for name, page in pages.items():
        forms = POST_FORM.findall(page)
        assert forms, f"{name}: no POST form found"
        for form in forms:
            assert CSRF_FIELD.search(form), f"{name}: a POST form without a CSRF token"


@pytest.mark.parametrize(
    "path",
    [
        "/login/start/",
        "/email-login/credentials/",
        "/email-login/email-code/",
        "/logout/",
        "/trouble-logging-in/",
        "/registration-error/reset/",
        "/terms/",
    ],
)
def test_post_without_csrf_token_gets_the_friendly_403(path, email_user):
    client = Client(enforce_csrf_checks=True)
    client.get("/")  # the CSRF cookie is there; only the form token is missing
    response = client.post(path, {"method": "email", "email": email_user.email})
    assert response.status_code == 403
    page = response.content.decode()
    assert "Please try again" in page
    assert "This page was open too long or in another tab." in page
    assert 'href="/"' in page
    check_headers(response)


def test_post_with_the_csrf_token_is_accepted(email_user):
    client = Client(enforce_csrf_checks=True)
    page = client.get("/").content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    response = client.post("/login/start/", {"method": "email", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response.url == "/email-login/credentials/"


def test_signed_in_post_without_token_is_refused(email_user, outbox_code):
    client = Client(enforce_csrf_checks=True)
    client.force_login(email_user)
    set_session(client, **{keys.AUTH_TIME: int(time.time()), keys.LAST_SEEN: int(time.time())})
    response = client.post("/logout/")
    assert response.status_code == 403
    assert client.get("/home/").status_code == 200  # still signed in


# --- dev outbox -------------------------------------------------------------------------


def test_dev_outbox_in_development(client, email_user, settings):
    assert settings.CAREGATE_DEV_OUTBOX is True
    OutboxMessage.objects.create(channel="email", to="a@example.com", subject="Hi", body="123456")
    page = client.get("/dev/outbox/")
    assert page.status_code == 200
    assert "a@example.com" in page.content.decode()
    data = client.get("/dev/outbox.json")
    assert data.status_code == 200
    assert data["Content-Type"] == "application/json"
    rows = data.json()
    assert len(rows) == 1
    assert rows[0]["to"] == "a@example.com" and rows[0]["body"] == "123456"
    assert rows[0]["channel"] == "email"


def test_dev_outbox_is_404_when_off(client, settings):
    settings.CAREGATE_DEV_OUTBOX = False
    message = OutboxMessage.objects.create(channel="voice", to="+12025550143", body="call")
    assert client.get("/dev/outbox/").status_code == 404
    assert client.get("/dev/outbox.json").status_code == 404
    assert client.post(f"/dev/outbox/{message.pk}/answer", {"digits": "#"}).status_code == 404
    assert client.post(f"/dev/outbox/{message.pk}/decline").status_code == 404


# --- health -----------------------------------------------------------------------------


def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.content == b"ok"


def test_readyz(client):
    response = client.get("/readyz")
    assert response.status_code == 200 and response.content == b"ready"


def test_readyz_when_the_cache_is_down(client):
    with mock.patch("caregate.portal.views.cache.set", side_effect=ConnectionError("down")):
        response = client.get("/readyz")
    assert response.status_code == 503


# --- sign-out ---------------------------------------------------------------------------


def test_sign_out_deletes_the_server_side_session(signed_in, email_user):
    key = session_key(signed_in)
    assert store().exists(key)
    response = signed_in.post("/logout/")
    assert response.status_code == 302 and response.url == "/"
    assert not store().exists(key)
    assert not Session.objects.filter(session_key=key).exists()
    assert AuditEvent.objects.filter(
        event="signout", outcome="success", user_id_snapshot=email_user.pk
    ).exists()
    assert "You have signed out." in signed_in.get("/").content.decode()
    # The old cookie, replayed, opens nothing.
    replay = Client()
    replay.cookies[django_settings.SESSION_COOKIE_NAME] = key
    assert replay.get("/home/").status_code == 302


def test_sign_out_needs_post(signed_in):
    assert signed_in.get("/logout/").status_code == 405
    assert signed_in.get("/home/").status_code == 200


# --- automatic logoff -------------------------------------------------------------------


def test_idle_timeout_signs_out_with_a_message(signed_in, email_user, settings):
    settings.CAREGATE_IDLE_TIMEOUT_SECONDS = 60
    key = session_key(signed_in)
    set_session(signed_in, **{keys.LAST_SEEN: int(time.time()) - 61})
    response = signed_in.get("/home/")
    assert response.status_code == 302 and response.url == "/"
    assert SESSION_KEY not in signed_in.session
    assert not store().exists(key)
    page = signed_in.get("/").content.decode()
    assert "For your security you were signed out after 1 minute without activity." in page
    assert AuditEvent.objects.filter(
        event="session.timeout", outcome="idle", user_id_snapshot=email_user.pk
    ).exists()
    assert signed_in.get("/home/").status_code == 302


def test_absolute_timeout_signs_out_with_a_message(signed_in, email_user, settings):
    settings.CAREGATE_SESSION_MAX_SECONDS = 3600
    now = int(time.time())
    set_session(signed_in, **{keys.AUTH_TIME: now - 3601, keys.LAST_SEEN: now})
    response = signed_in.get("/home/")
    assert response.status_code == 302 and response.url == "/"
    assert SESSION_KEY not in signed_in.session
    assert "Your session has ended. Please sign in again." in signed_in.get("/").content.decode()
    assert AuditEvent.objects.filter(event="session.timeout", outcome="absolute").exists()


def test_activity_within_the_idle_timeout_keeps_the_session(signed_in, settings):
    settings.CAREGATE_IDLE_TIMEOUT_SECONDS = 60
    stale = int(time.time()) - 40
    set_session(signed_in, **{keys.LAST_SEEN: stale})
    assert signed_in.get("/home/").status_code == 200
    # The visit counted as activity.
    assert signed_in.session[keys.LAST_SEEN] > stale
    assert not AuditEvent.objects.filter(event="session.timeout").exists()


def test_session_without_clocks_is_signed_out(email_user):
    client = Client()
    client.force_login(email_user)  # a session that never went through sign_in()
    response = client.get("/home/")
    assert response.status_code == 302 and response.url == "/"
    assert SESSION_KEY not in client.session
