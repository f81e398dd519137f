"""The portal around the sign-in: home, cases, messages, headers, CSRF, dev outbox, health,
sign-out and the automatic logoff."""

from __future__ import annotations

import re
import time
from datetime import date
from importlib import import_module

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from caregate.accounts.models import TermsVersion
from caregate.audit.models import AuditEvent
from caregate.delivery.email import describe_seconds
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
    return {
        "everyone": everyone,
        "already": already,
        "personal": personal,
        "mine": mine,
        "other_org": other_org,
    }


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


def test_new_messages_counter_says_one_message_and_two_messages(signed_in, email_user):
    organization = email_user.organization
    Message.objects.create(organization=organization, subject="First", body="a")
    page = signed_in.get("/home/").content.decode()
    assert "1 NEW MESSAGE<" in page and "1 NEW MESSAGES" not in page
    Message.objects.create(organization=organization, subject="Second", body="b")
    assert "2 NEW MESSAGES<" in signed_in.get("/home/").content.decode()


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
        ("100202", ["C-100202"]),  # the number without its prefix
        ("c-100202", ["C-100202"]),
        ("C100202", []),  # a prefix that is not the case's is not guessed at
        ("5502", ["C-100202"]),  # a program number without its prefix
        ("10020", []),  # still whole numbers only
        ("00202", []),
        ("900900", []),  # another organization's case, by its digits
        (".*", []),  # not a pattern
        ("1|2", []),
    ],
)
def test_case_search_by_case_or_program_number(signed_in, portal_data, query, found):
    add_case(portal_data["mine"], "C-100202", "wip", program="P-5502")
    add_case(portal_data["other_org"], "X-900900", "wip", name="Foreign Digits")
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


# --- the portal shell (issue #8's loose ends) ------------------------------------------

GUIDE_MENU = [
    "HOME",
    "CASES",
    "CREATE CASE",
    "CONSUMERS",
    "SETUP",
    "MESSAGE CENTER",
    "REPORTS",
    "Help",
]
NAV = re.compile(r'<nav class="portal-nav" aria-label="Portal">(.*?)</nav>', re.S)
NAV_LINK = re.compile(r'<a href="([^"]*)"[^>]*>([^<]+)</a>')
MODULE_SETTINGS = {
    "create-case": "CAREGATE_CREATE_CASE_URL",
    "consumers": "CAREGATE_CONSUMERS_URL",
    "reports": "CAREGATE_REPORTS_URL",
}


def nav_links(page: str) -> list[tuple[str, str]]:
    match = NAV.search(page)
    assert match, "no portal navigation"
    return [(label, href) for href, label in NAV_LINK.findall(match.group(1))]


def in_shell(page: str, user) -> bool:
    """Rendered inside the portal: the navigation, the user's name, Sign out."""
    return bool(NAV.search(page)) and user.display_name in page and "Sign out" in page


@pytest.mark.parametrize("configured", [False, True])
def test_navigation_shows_the_guides_whole_menu(signed_in, settings, configured):
    for setting in MODULE_SETTINGS.values():
        setattr(settings, setting, "https://modules.example/x" if configured else "")
    for path in ["/home/", "/cases/", "/messages/", "/help/", "/setup/"]:
        page = signed_in.get(path).content.decode()
        assert [label for label, _ in nav_links(page)] == GUIDE_MENU, path


def test_unconfigured_module_opens_a_page_inside_the_shell_that_says_so(
    signed_in, email_user, settings
):
    for setting in MODULE_SETTINGS.values():
        setattr(settings, setting, "")
    links = dict(nav_links(signed_in.get("/home/").content.decode()))
    for label, slug in [("CREATE CASE", "create-case"), ("CONSUMERS", "consumers")]:
        assert links[label] == f"/modules/{slug}/"
    assert links["REPORTS"] == "/modules/reports/"
    response = signed_in.get("/modules/reports/")
    page = response.content.decode()
    assert response.status_code == 200
    assert "REPORTS is not configured at this portal" in page
    assert in_shell(page, email_user)
    assert '<a href="/modules/reports/" aria-current="page">REPORTS</a>' in page


def test_configured_module_links_to_its_address(signed_in, settings):
    settings.CAREGATE_CREATE_CASE_URL = "https://cases.example/new"
    settings.CAREGATE_CONSUMERS_URL = ""
    links = dict(nav_links(signed_in.get("/home/").content.decode()))
    assert links["CREATE CASE"] == "https://cases.example/new"
    assert links["CONSUMERS"] == "/modules/consumers/"
    # An old bookmark of the placeholder goes on to the configured address.
    response = signed_in.get("/modules/create-case/")
    assert response.status_code == 302 and response.url == "https://cases.example/new"


def test_module_pages_cannot_be_made_to_redirect_anywhere(signed_in, settings):
    """Open-redirect attempts: only the three configured modules exist."""
    settings.CAREGATE_REPORTS_URL = "https://reports.example/"
    for path in [
        "/modules/evil/",
        "/modules/https:--evil.example/",
        "/modules/reports/?next=https://evil.example/",
    ]:
        response = signed_in.get(path)
        if response.status_code == 302:
            assert response.url == "https://reports.example/"
        else:
            assert response.status_code == 404


def test_module_pages_and_setup_require_sign_in(client):
    for path in ["/setup/", "/modules/reports/", "/modules/create-case/"]:
        response = client.get(path)
        assert response.status_code == 302 and response.url.startswith("/?next="), path


def test_setup_opens_inside_the_portal_with_my_account(signed_in, email_user):
    response = signed_in.get("/setup/")
    page = response.content.decode()
    assert response.status_code == 200
    assert in_shell(page, email_user)
    assert "<h1>Setup</h1>" in page
    assert '<a href="/setup/my-account/">My Account</a>' in page
    assert "Manage Users" not in page  # a standard user has no Manage Users
    assert '<a href="/setup/" aria-current="page">SETUP</a>' in page
    assert "Back to the login page" not in page


def test_setup_shows_manage_users_to_the_provider_administrator(signed_in, email_user):
    email_user.is_org_admin = True
    email_user.save(update_fields=["is_org_admin"])
    page = signed_in.get("/setup/").content.decode()
    assert '<a href="/setup/users/">Manage Users</a>' in page
    assert '<a href="/setup/my-account/">My Account</a>' in page


def test_setup_needs_the_terms_first(signed_in):
    TermsVersion.objects.create(version="v1", text="Be nice.", published_at=timezone.now())
    response = signed_in.get("/setup/")
    assert response.status_code == 302 and response.url == "/terms/"


def test_not_yet_available_setup_pages_stay_inside_the_portal(signed_in, email_user):
    # The placeholder a Setup page shows until its own view exists.
    for path in ["/unavailable/my-account/", "/unavailable/manage-users/"]:
        page = signed_in.get(path).content.decode()
        assert in_shell(page, email_user), path
        assert "Back to Setup" in page and "Back to the login page" not in page


def test_not_available_pages_outside_the_portal_lead_to_the_login_page(client):
    page = client.get("/unavailable/setup/").content.decode()
    assert 'href="/">Back to the login page</a>' in page
    assert "portal-nav" not in page


BRAND_LINK = re.compile(r'<a class="brand" href="([^"]+)"')


def test_header_logo_links_home_or_to_the_login_page(client, signed_in):
    assert BRAND_LINK.search(Client().get("/trouble-logging-in/").content.decode()).group(1) == "/"
    for path in ["/home/", "/setup/", "/cases/"]:
        assert BRAND_LINK.search(signed_in.get(path).content.decode()).group(1) == "/home/"


@pytest.mark.parametrize(
    "path",
    [
        "/trouble-logging-in/",
        "/trouble-logging-in/help/",
        "/registration-error/",
        "/registration-error/reset/",
        "/unavailable/setup/",
    ],
)
def test_every_page_outside_the_portal_has_a_way_back_to_the_login_page(client, db, path):
    response = client.get(path)
    assert response.status_code == 200
    page = response.content.decode()
    assert '<a href="/">Back to the login page</a>' in page
    assert BRAND_LINK.search(page).group(1) == "/"


def test_pages_after_sending_keep_the_way_back(client, email_user):
    page = client.post("/registration-error/reset/", {"username": "nobody"}).content.decode()
    assert '<a href="/">Back to the login page</a>' in page
    page = client.post(
        "/trouble-logging-in/", {"email": email_user.email, "password": "Wrong-pass-1"}
    ).content.decode()
    assert '<a href="/">Back to the login page</a>' in page


def test_flow_pages_have_cancel_back_to_the_login_page(client, db):
    client.post("/login/start/", {"method": "email"})
    page = client.get("/email-login/credentials/").content.decode()
    assert 'action="/email-login/cancel/"' in page
    assert BRAND_LINK.search(page).group(1) == "/"
    response = client.post("/email-login/cancel/")
    assert response.status_code == 302 and response.url == "/"


# --- lifetimes, as people say them -----------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "said"),
    [
        (1, "1 second"),
        (30, "30 seconds"),
        (60, "1 minute"),
        (90, "1 minute and 30 seconds"),
        (600, "10 minutes"),
        (1200, "20 minutes"),
        (3600, "1 hour"),
        (5400, "1 hour and 30 minutes"),
        (3661, "1 hour, 1 minute and 1 second"),
        (14400, "4 hours"),
        (0, "0 seconds"),
        (-5, "0 seconds"),
    ],
)
def test_lifetimes_are_said_the_way_people_say_them(seconds, said):
    assert describe_seconds(seconds) == said


def test_code_page_and_email_say_the_lifetime_alike(client, email_user, settings):
    """A 10-minute code: "10 minutes" in the email, minutes (not 600 seconds) on the page."""
    settings.CAREGATE_EMAIL_LOGIN_CODE_SECONDS = 600
    client.post("/login/start/", {"method": "email"})
    client.post("/email-login/credentials/", {"email": email_user.email, "password": PASSWORD})
    page = client.post("/email-login/email-code/", {"action": "send"}).content.decode()
    email = OutboxMessage.objects.get(to=email_user.email)
    assert "The code expires in 10 minutes" in email.body
    assert re.search(r"This code expires in (10 minutes|9 minutes and \d+ seconds) \(at ", page)
    assert "600 seconds" not in page and "599 seconds" not in page


def orm_counters(user) -> tuple[int, int, int, int]:
    """The counters as the ORM counts them (what queries.counters() did before its SQL)."""
    from django.db.models import Count, Q

    from caregate.portal import queries

    totals = queries.cases_for(user).aggregate(
        wip=Count("id", filter=Q(status=Case.Status.WORK_IN_PROGRESS)),
        not_submitted=Count("id", filter=Q(status=Case.Status.NOT_SUBMITTED)),
        submitted=Count("id", filter=Q(status=Case.Status.SUBMITTED)),
    )
    unread = queries.messages_for(user).exclude(read_by=user).count()
    return unread, totals["wip"], totals["not_submitted"], totals["submitted"]


def test_the_counters_statement_counts_what_the_orm_counts(
    make_user, make_org, email_user, portal_data
):
    from caregate.portal import queries

    organization = email_user.organization
    colleague = make_user(organization=organization)
    stranger_org = make_org(name="Elsewhere")
    stranger = make_user(organization=stranger_org)
    to_me = Message.objects.create(organization=organization, recipient=email_user, subject="m")
    Message.objects.create(organization=organization, recipient=colleague, subject="theirs")
    everyone = Message.objects.create(organization=organization, subject="all")
    everyone.read_by.add(colleague)  # read by someone else: still unread for me
    Message.objects.create(organization=stranger_org, subject="other org")
    add_case(stranger_org, "C-999", Case.Status.SUBMITTED)
    for user in (email_user, colleague, stranger):
        got = queries.counters(user)
        as_tuple = (got.new_messages, got.work_in_progress, got.not_submitted, got.submitted)
        assert as_tuple == orm_counters(user), user.username
    before = queries.counters(email_user).new_messages
    to_me.read_by.add(email_user)
    everyone.read_by.add(email_user)
    assert queries.counters(email_user).new_messages == before - 2 == orm_counters(email_user)[0]
