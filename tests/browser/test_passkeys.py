"""Passkeys in Chromium with its virtual authenticator (the DevTools protocol's WebAuthn
domain): enrolment from Setup → My Account → Passkeys, then LOGIN WITH PASSKEY; a cloned
authenticator (the same credential with a sign counter that went back) refused; a
browser without passkey support told so. axe on every passkey page."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import CDPSession, Page, expect

from caregate.audit.models import AuditEvent
from caregate.passkeys.models import Passkey
from tests.browser.helpers import HOME_URL, send_code, type_code

pytestmark = pytest.mark.django_db(transaction=True)

PASSKEYS_URL = re.compile(r"^https?://[^/]+/account/passkeys/$")
CLONED = "its security counter went back"


@pytest.fixture(autouse=True)
def _relying_party(settings, live_server) -> None:
    # WebAuthn refuses an IP address as the rp id: the live server is reached as localhost.
    assert live_server.url.startswith("http://localhost:")
    settings.CAREGATE_WEBAUTHN_RP_ID = "localhost"
    settings.CAREGATE_WEBAUTHN_ORIGINS = [live_server.url]
    settings.CAREGATE_PASSKEY_LOGIN = True


def add_authenticator(cdp: CDPSession) -> str:
    """A platform authenticator with resident keys and user verification (a laptop's)."""
    return cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )["authenticatorId"]


@pytest.fixture
def cdp(page: Page) -> Iterator[CDPSession]:
    session = page.context.new_cdp_session(page)
    session.send("WebAuthn.enable", {"enableUI": False})
    yield session
    session.send("WebAuthn.disable")


def verify_first(page: Page, user, outbox_code, axe_check) -> None:
    """Add a passkey's first step: the code to the email on record (flows.ADD_PASSKEY)."""
    expect(page.get_by_text("we first check that it is you")).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("first verify your email address")).to_be_visible()
    axe_check(page)
    send_code(page)
    type_code(page, outbox_code(user.email))
    page.get_by_role("button", name="Continue").click()


def enrol(page: Page, axe_check, user, outbox_code, name: str = "Work laptop") -> None:
    page.goto("/account/passkeys/")
    expect(page.get_by_role("heading", name="PASSKEYS", exact=True)).to_be_visible()
    expect(page.get_by_text("You have no passkeys yet.")).to_be_visible()
    axe_check(page)
    page.get_by_role("link", name="Add a passkey").click()
    verify_first(page, user, outbox_code, axe_check)
    expect(page.get_by_role("heading", name="ADD A PASSKEY")).to_be_visible()
    axe_check(page)
    page.get_by_label("Passkey name").fill(name)
    page.get_by_role("button", name="Create passkey").click()
    # The form's own navigation first (a goto now would abort it), then the list, past
    # the recovery-code offer where there is one.
    expect(page).not_to_have_url(re.compile(r"/account/passkeys/add/$"))
    page.goto("/account/passkeys/")
    expect(page.get_by_role("cell", name=name, exact=True)).to_be_visible()
    axe_check(page)


def login_with_passkey(page: Page, axe_check=None) -> None:
    page.goto("/")
    page.get_by_role("button", name="LOGIN WITH PASSKEY").click()
    expect(page.get_by_role("heading", name="Sign in with a passkey")).to_be_visible()
    if axe_check is not None:
        axe_check(page)
    page.get_by_role("button", name="Use passkey").click()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("button", name="LOGIN WITH PASSKEY")).to_be_visible()


def test_enrol_a_passkey_then_sign_in_with_it(
    page, cdp, email_user, sign_in, axe_check, outbox_code
):
    add_authenticator(cdp)
    sign_in(page, email_user)
    enrol(page, axe_check, email_user, outbox_code)
    passkey = Passkey.objects.get(user=email_user)
    assert passkey.name == "Work laptop"
    # Renamed from the list, then signed out and back in with the passkey alone.
    page.get_by_label("New name for Work laptop").fill("Office laptop")
    page.get_by_role("button", name="Rename passkey: Work laptop").click()
    expect(page.get_by_text("The passkey is now called “Office laptop”.")).to_be_visible()
    sign_out(page)
    axe_check(page)
    login_with_passkey(page, axe_check)
    expect(page).to_have_url(HOME_URL)
    passkey.refresh_from_db()
    assert passkey.last_used_at is not None
    signin = AuditEvent.objects.filter(event="signin", outcome="success").last()
    assert signin.detail["method"] == "passkey"


def test_a_cloned_authenticator_is_refused(page, cdp, email_user, sign_in, axe_check, outbox_code):
    original = add_authenticator(cdp)
    sign_in(page, email_user)
    enrol(page, axe_check, email_user, outbox_code)
    sign_out(page)
    login_with_passkey(page)
    expect(page).to_have_url(HOME_URL)
    sign_out(page)
    # A copy of the credential (its private key) on another device, whose counter lags.
    (credential,) = cdp.send("WebAuthn.getCredentials", {"authenticatorId": original})[
        "credentials"
    ]
    assert credential["signCount"] >= 1
    cdp.send("WebAuthn.removeVirtualAuthenticator", {"authenticatorId": original})
    copy = add_authenticator(cdp)
    cdp.send(
        "WebAuthn.addCredential",
        {"authenticatorId": copy, "credential": {**credential, "signCount": 0}},
    )
    login_with_passkey(page)
    expect(page.get_by_role("alert")).to_contain_text(CLONED)
    axe_check(page)
    assert page.url.endswith("/passkey-login/passkey/")
    event = AuditEvent.objects.filter(event="passkey.verify", outcome="refused").get()
    assert event.detail["reason"] == "cloned-authenticator"


def test_a_browser_without_passkeys_is_told_so(page, email_user, sign_in, axe_check, outbox_code):
    page.add_init_script("delete window.PublicKeyCredential;")
    sign_in(page, email_user)
    page.goto("/account/passkeys/add/")
    verify_first(page, email_user, outbox_code, axe_check)
    expect(page.get_by_text("This browser cannot create passkeys.")).to_be_visible()
    expect(page.get_by_role("button", name="Create passkey")).to_be_disabled()
    axe_check(page)
    sign_out(page)
    page.get_by_role("button", name="LOGIN WITH PASSKEY").click()
    expect(page.get_by_text("This browser cannot use passkeys.")).to_be_visible()
    expect(page.get_by_role("button", name="Use passkey")).to_be_disabled()
