"""The staff LOGIN in Chromium, through a real OpenID Connect provider (oidc-provider on
loopback, tests/oidc/): the login page's staff column, the provider's own login form and
logout confirmation, the pages a refused or failed sign-in shows, and the support console
reached that way. The Django test-client version of these walks, with the audit details,
is tests/test_staff_login.py.

The provider is started once for the module, its client registered with the live server's
callback and post-logout addresses; the live server runs in a thread of this process, so
the ``settings`` fixture reaches it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, Request, expect

from caregate.accounts.models import User
from caregate.audit.models import AuditEvent
from tests.browser.helpers import HOME_URL, LOGIN_URL, alert, visible_text
from tests.conftest import PASSWORD
from tests.oidc.idp import TestIdentityProvider, ensure_node_modules

pytestmark = pytest.mark.django_db(transaction=True)

BRAND = "Kepro"
DOMAIN = "staff.example.org"
CLIENT_ID = "caregate-browser-tests"
SECRET = "a-client-secret-for-the-browser-tests-only-0123456789"
CALLBACK_PATH = "/staff-login/identity-provider/"
ACCOUNTS: dict[str, dict[str, Any]] = {
    "sam": {
        "sub": "sam-0001",
        "email": f"sam.support@{DOMAIN}",
        "email_verified": True,
        "given_name": "Sam",
        "family_name": "Support",
        "groups": ["caregate-support"],
        "amr": ["pwd", "mfa"],
    },
    "stella": {
        "sub": "stella-0002",
        "email": f"stella.staff@{DOMAIN}",
        "given_name": "Stella",
        "family_name": "Staff",
        "groups": ["caregate-staff"],
        "amr": ["pwd", "mfa"],
    },
    "pat": {  # signed in at the provider with a password only
        "sub": "pat-0004",
        "email": f"pat.password@{DOMAIN}",
        "given_name": "Pat",
        "family_name": "Password",
        "groups": ["caregate-support"],
        "amr": ["pwd"],
    },
}

PROVIDER_TITLE = "Test identity provider"
NOT_SIGNED_IN = "You were not signed in"
NOT_VERIFIED = f"Your sign-in at {BRAND} could not be verified, so you were not signed in."
NO_MFA = (
    f"Your sign-in at {BRAND} did not use multi-factor authentication, which this portal requires."
)
UNAVAILABLE = "Staff sign-in is not available"
CANNOT_BE_REACHED = f"the {BRAND} identity provider cannot be reached"
STAFF_ADDRESS = (
    f"This is a {BRAND} staff email address. {BRAND} staff sign in with the LOGIN button "
    f'under "{BRAND}" on the login page.'
)
SUPPORT_ONLY = "This page is for the support team."


@pytest.fixture(scope="module")
def idp(live_server) -> Iterator[TestIdentityProvider]:
    ensure_node_modules()
    base = live_server.url
    client = {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "redirect_uris": [f"{base}{CALLBACK_PATH}"],
        "post_logout_redirect_uris": [f"{base}/"],
    }
    with TestIdentityProvider.running(clients=[client], accounts=ACCOUNTS) as provider:
        yield provider


@pytest.fixture(autouse=True)
def _configured(settings, idp: TestIdentityProvider, live_server) -> Iterator[None]:
    idp.reset()
    idp.set_accounts(ACCOUNTS)
    settings.CAREGATE_PUBLIC_BASE_URL = live_server.url
    settings.CAREGATE_OIDC_ISSUER = idp.issuer
    settings.CAREGATE_OIDC_CLIENT_ID = CLIENT_ID
    settings.CAREGATE_OIDC_CLIENT_SECRET = SECRET
    settings.CAREGATE_OIDC_ROLE_MAP = "caregate-support=support,caregate-staff=staff"
    settings.CAREGATE_OIDC_REQUIRE_MFA = True
    settings.CAREGATE_INTERNAL_EMAIL_DOMAIN = DOMAIN
    settings.CAREGATE_BRAND_NAME = BRAND
    yield
    idp.reset()


@pytest.fixture(autouse=True)
def _no_csp_violations(page: Page) -> Iterator[None]:
    """Every page on the way (Caregate's and the provider's) loads and submits unblocked:
    a form whose redirects leave for the provider must be allowed by Caregate's CSP
    ``form-action``, or Chromium silently stays on the page."""
    blocked: list[str] = []
    page.on(
        "console",
        lambda message: (
            blocked.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    yield
    assert not blocked, blocked


# --- steps ----------------------------------------------------------------------------


def press_login(page: Page) -> None:
    """The login page's staff column: LOGIN."""
    page.goto("/")
    staff = page.get_by_role("region", name=BRAND)
    staff.get_by_role("button", name="LOGIN", exact=True).click()


def expect_provider_login_form(page: Page) -> None:
    expect(page.get_by_role("heading", name=PROVIDER_TITLE)).to_be_visible()
    expect(page.get_by_label("Username")).to_be_visible()


def sign_in_at_provider(page: Page, login: str) -> None:
    """The provider's own login form (any password: the test provider checks the login)."""
    expect_provider_login_form(page)
    page.get_by_label("Username").fill(login)
    page.get_by_label("Password").fill("anything")
    page.get_by_role("button", name="Sign in").click()


def staff_sign_in(page: Page, login: str) -> None:
    """LOGIN → the provider → back at Caregate's home page."""
    press_login(page)
    sign_in_at_provider(page, login)
    expect(page).to_have_url(HOME_URL)


def sign_out_everywhere(page: Page) -> None:
    """Caregate's Sign out, then "Sign out" at the provider's confirmation."""
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("Sign out of the test identity provider?")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(LOGIN_URL)


def expect_signed_out(page: Page) -> None:
    """No portal session: HOME sends the browser to the login page."""
    page.goto("/home/")
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_role("heading", name="LOGIN OPTIONS")).to_be_visible()


def nav_links(page: Page) -> list[str]:
    return page.get_by_role("navigation", name="Portal").get_by_role("link").all_inner_texts()


def events(name: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event=name).order_by("id"))


def capture_callbacks(page: Page) -> list[str]:
    """Every provider answer the browser brings back to Caregate (URLs with code & state)."""
    seen: list[str] = []

    def on_request(request: Request) -> None:
        if CALLBACK_PATH in request.url and "code=" in request.url:
            seen.append(request.url)

    page.on("request", on_request)
    return seen


# --- success and roles ----------------------------------------------------------------


def test_a_support_member_signs_in_and_gets_support(page: Page, axe_check) -> None:
    page.goto("/")
    staff = page.get_by_role("region", name=BRAND)
    expect(staff.get_by_role("heading", name=BRAND, level=2)).to_be_visible()
    assert visible_text(staff) == (
        f"{BRAND} Use this login button if you have a {BRAND} domain account. LOGIN"
    )
    axe_check(page)
    staff.get_by_role("button", name="LOGIN", exact=True).click()
    sign_in_at_provider(page, "sam")
    expect(page).to_have_url(HOME_URL)
    expect(page.get_by_role("heading", name="HOME", level=1)).to_be_visible()
    expect(page.get_by_role("banner")).to_contain_text("Sam Support")
    assert "SUPPORT" in nav_links(page)
    axe_check(page)
    user = User.objects.get(oidc_subject="sam-0001")
    assert user.staff_roles == ["support"] and user.email == f"sam.support@{DOMAIN}"
    page.get_by_role("navigation", name="Portal").get_by_role("link", name="SUPPORT").click()
    expect(page).to_have_url(re.compile(r"/support/$"))
    expect(page.get_by_role("heading", name="Support", level=1)).to_be_visible()
    expect(page.get_by_label("Name, username, email or NPI")).to_be_visible()


def test_a_staff_only_member_signs_in_without_support(page: Page, axe_check) -> None:
    staff_sign_in(page, "stella")
    expect(page.get_by_role("banner")).to_contain_text("Stella Staff")
    links = nav_links(page)
    assert "HOME" in links and "SUPPORT" not in links
    response = page.goto("/support/")
    assert response is not None and response.status == 403
    expect(page.get_by_text(SUPPORT_ONLY)).to_be_visible()
    expect(page.get_by_label("Name, username, email or NPI")).to_have_count(0)
    axe_check(page)


# --- refusals -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["wrong-audience", "bad-signature", "expired"])
def test_a_refused_id_token_does_not_sign_in(
    page: Page, idp: TestIdentityProvider, axe_check, mode: str
) -> None:
    idp.set_mode(mode)
    press_login(page)
    sign_in_at_provider(page, "sam")
    expect(page.get_by_role("heading", name=NOT_SIGNED_IN, level=1)).to_be_visible()
    expect(alert(page)).to_contain_text(NOT_VERIFIED)
    axe_check(page)
    expect_signed_out(page)
    assert not User.objects.filter(oidc_subject="sam-0001").exists()
    assert events("signin") == []


def test_a_replayed_callback_does_not_sign_in(page: Page, fresh_context: BrowserContext) -> None:
    callbacks = capture_callbacks(page)
    staff_sign_in(page, "sam")
    assert len(callbacks) == 1
    sign_out_everywhere(page)
    # The same browser, then another one, bring the captured answer back.
    page.goto(callbacks[0])
    expect_signed_out(page)
    stranger = fresh_context.new_page()
    stranger.goto(callbacks[0])
    expect_signed_out(stranger)
    assert len(events("signin")) == 1


def test_a_sign_in_without_mfa_is_refused(page: Page) -> None:
    press_login(page)
    sign_in_at_provider(page, "pat")
    expect(page.get_by_role("heading", name=NOT_SIGNED_IN, level=1)).to_be_visible()
    expect(alert(page)).to_contain_text(NO_MFA)
    expect_signed_out(page)
    assert events("staff-login.account")[-1].outcome == "no-mfa"


def test_the_provider_down_gives_a_clear_page_then_try_again_works(
    page: Page, idp: TestIdentityProvider, axe_check
) -> None:
    idp.stop()
    try:
        page.goto("/")
        with page.expect_response(lambda r: CALLBACK_PATH in r.url) as answer:
            page.get_by_role("button", name="LOGIN", exact=True).click()
        assert answer.value.status == 503  # the page below, never a 500
        expect(page.get_by_role("heading", name=UNAVAILABLE, level=1)).to_be_visible()
        expect(alert(page)).to_contain_text(CANNOT_BE_REACHED)
        axe_check(page)
    finally:
        idp.restart()
    page.get_by_role("button", name="Try again").click()
    sign_in_at_provider(page, "sam")
    expect(page).to_have_url(HOME_URL)
    expect(page.get_by_role("banner")).to_contain_text("Sam Support")


# --- the customer buttons ---------------------------------------------------------------


@pytest.mark.parametrize("button", ["LOGIN WITH EMAIL", "LOGIN WITH PHONE"])
@pytest.mark.parametrize("address", [f"sam.support@{DOMAIN}", f"someone@eu.{DOMAIN.upper()}"])
def test_a_staff_address_is_refused_at_the_customer_buttons(
    page: Page, button: str, address: str
) -> None:
    page.goto("/")
    page.get_by_role("button", name=button).click()
    expect(page.get_by_role("heading", name="Sign in with your email address")).to_be_visible()
    page.get_by_label("Email Address").fill(address)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(alert(page).filter(has_text=STAFF_ADDRESS)).to_be_visible()
    expect_signed_out(page)


# --- sign out ---------------------------------------------------------------------------


def test_sign_out_ends_the_session_at_the_provider_too(page: Page) -> None:
    staff_sign_in(page, "sam")
    # Without the provider's Sign out, its session signs the next LOGIN straight in: this
    # browser's Caregate session is dropped, and LOGIN comes back home without a form.
    page.context.clear_cookies(name="caregate_session")
    press_login(page)
    expect(page).to_have_url(HOME_URL)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("Sign out of the test identity provider?")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_role("status")).to_have_text("You have signed out.")
    expect_signed_out(page)
    press_login(page)
    expect_provider_login_form(page)  # asked again, not a silent sign-in


# --- the support console ----------------------------------------------------------------


def test_support_resets_a_registration_with_a_reason(page: Page, make_user, axe_check) -> None:
    member = make_user(mfa="email")
    name = f"{member.display_name} ({member.username})"
    reason = "Caller lost her phone; identity checked by callback."
    staff_sign_in(page, "sam")
    page.get_by_role("navigation", name="Portal").get_by_role("link", name="SUPPORT").click()
    page.get_by_label("Name, username, email or NPI").fill(member.username)
    page.get_by_role("button", name="SEARCH").last.click()
    page.get_by_role("link", name=member.display_name).click()
    expect(page.get_by_role("heading", name=name, level=1)).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="RESET REGISTRATION").click()
    expect(page.get_by_role("heading", name=f"Reset the registration of {name}?")).to_be_visible()
    page.get_by_label("Reason").fill(reason)
    page.get_by_role("button", name="RESET REGISTRATION").click()
    expect(page.get_by_text(f"The registration of {name} was reset.")).to_be_visible()
    axe_check(page)
    member.refresh_from_db()
    assert member.mfa_method == User.MfaMethod.NONE
    event = events("support.reset-registration")[-1]
    assert event.outcome == "success" and event.user_id_snapshot == member.pk
    assert event.detail["staff_username"] == f"sam.support@{DOMAIN}"
    assert event.detail["staff_email"] == f"sam.support@{DOMAIN}"
    assert event.detail["reason"] == reason


def test_a_staff_only_member_cannot_post_a_console_action(page: Page, make_user) -> None:
    member = make_user(mfa="email")
    staff_sign_in(page, "stella")
    # Stella forges the confirmation's form: the home page's CSRF token, the console's
    # address, the member's id and a reason.
    action = f"/support/users/{member.pk}/reset-registration/"
    with page.expect_response(lambda r: r.url.endswith(action)) as answer:
        page.evaluate(
            """([action, user]) => {
                const form = document.createElement('form');
                form.method = 'post';
                form.action = action;
                const fields = {
                    csrfmiddlewaretoken:
                        document.querySelector('input[name=csrfmiddlewaretoken]').value,
                    user: String(user),
                    reason: 'Forged by a staff member without the support role.',
                };
                for (const [name, value] of Object.entries(fields)) {
                    const input = document.createElement('input');
                    input.type = 'hidden';
                    input.name = name;
                    input.value = value;
                    form.append(input);
                }
                document.body.append(form);
                form.submit();
            }""",
            [action, member.pk],
        )
    assert answer.value.status == 403
    expect(page.get_by_text(SUPPORT_ONLY)).to_be_visible()
    member.refresh_from_db()
    assert member.mfa_method == User.MfaMethod.EMAIL
    assert events("support.reset-registration") == []
