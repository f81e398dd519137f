"""The portal shell's loose ends (issue #8), walked as a new user walks the guides.

SETUP inside the portal, the guide's whole menu (an unconfigured module says so inside the
shell), the logo leading home, a way back to the login page from every page outside the
portal, case search without the prefix, "1 NEW MESSAGE", lifetimes in minutes, toll-free
numbers refused saying so, "send a new code" confirmed, a digits-only payer ID, and
"Organizational Information". axe runs on every page.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from caregate.accounts.models import User
from caregate.portal.models import Message
from tests.browser.helpers import (
    HOME_URL,
    LOGIN_URL,
    add_case,
    reach_email_code,
    send_code,
)
from tests.browser.test_phone_login import MASKED, reach_phone_challenge

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
MODULE_SETTINGS = ["CAREGATE_CREATE_CASE_URL", "CAREGATE_CONSUMERS_URL", "CAREGATE_REPORTS_URL"]


@pytest.fixture(autouse=True)
def _no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


@pytest.fixture
def no_modules(settings) -> None:
    for name in MODULE_SETTINGS:
        setattr(settings, name, "")


def nav(page: Page):
    return page.get_by_role("navigation", name="Portal")


def expect_in_shell(page: Page, user: User) -> None:
    """Header, navigation and the user's name: the page is inside the portal."""
    header = page.get_by_role("banner")
    expect(header.get_by_text(user.display_name, exact=True)).to_be_visible()
    expect(header.get_by_role("button", name="Sign out")).to_be_visible()
    assert nav(page).get_by_role("link").all_inner_texts() == GUIDE_MENU


# --- SETUP ------------------------------------------------------------------------------


def test_setup_opens_inside_the_portal(
    page: Page, email_user: User, sign_in, axe_check, no_modules
) -> None:
    sign_in(page, email_user)
    nav(page).get_by_role("link", name="SETUP").click()
    expect(page.get_by_role("heading", name="Setup", level=1)).to_be_visible()
    expect_in_shell(page, email_user)
    expect(nav(page).get_by_role("link", name="SETUP")).to_have_attribute("aria-current", "page")
    expect(page.get_by_role("link", name="My Account")).to_be_visible()
    # A standard user has no Manage Users.
    expect(page.get_by_role("link", name="Manage Users")).to_have_count(0)
    expect(page.get_by_role("link", name="Back to the login page")).to_have_count(0)
    axe_check(page)
    page.get_by_role("link", name="My Account").click()
    expect_in_shell(page, email_user)
    axe_check(page)


def test_setup_offers_manage_users_to_the_provider_administrator(
    page: Page, make_user, sign_in, axe_check
) -> None:
    admin = make_user(is_org_admin=True)
    sign_in(page, admin)
    nav(page).get_by_role("link", name="SETUP").click()
    expect(page.get_by_role("link", name="My Account")).to_be_visible()
    expect(page.get_by_role("link", name="Manage Users")).to_be_visible()
    axe_check(page)
    page.get_by_role("link", name="Manage Users").click()
    expect_in_shell(page, admin)
    axe_check(page)


# --- the whole menu -----------------------------------------------------------------------


@pytest.mark.parametrize("label", ["CREATE CASE", "CONSUMERS", "REPORTS"])
def test_unconfigured_module_keeps_its_menu_item_and_says_so(
    page: Page, email_user: User, sign_in, axe_check, no_modules, label: str
) -> None:
    sign_in(page, email_user)
    expect_in_shell(page, email_user)
    nav(page).get_by_role("link", name=label).click()
    expect(page.get_by_role("heading", name=label, level=1)).to_be_visible()
    expect(page.get_by_text(f"{label} is not configured at this portal")).to_be_visible()
    expect_in_shell(page, email_user)
    expect(nav(page).get_by_role("link", name=label)).to_have_attribute("aria-current", "page")
    axe_check(page)
    page.get_by_role("link", name="Back to HOME").click()
    expect(page).to_have_url(HOME_URL)


def test_configured_module_links_to_its_address(
    page: Page, email_user: User, sign_in, settings
) -> None:
    settings.CAREGATE_REPORTS_URL = "https://reports.example/portal"
    settings.CAREGATE_CREATE_CASE_URL = ""
    settings.CAREGATE_CONSUMERS_URL = ""
    sign_in(page, email_user)
    assert nav(page).get_by_role("link").all_inner_texts() == GUIDE_MENU
    expect(nav(page).get_by_role("link", name="REPORTS")).to_have_attribute(
        "href", "https://reports.example/portal"
    )
    expect(nav(page).get_by_role("link", name="CONSUMERS")).to_have_attribute(
        "href", "/modules/consumers/"
    )


# --- the logo and the way back ------------------------------------------------------------


def test_header_logo_links_home(page: Page, email_user: User, sign_in, axe_check) -> None:
    page.goto("/trouble-logging-in/")
    page.get_by_role("banner").get_by_role("link", name=re.compile("home")).click()
    expect(page).to_have_url(LOGIN_URL)
    sign_in(page, email_user)
    nav(page).get_by_role("link", name="Help").click()
    page.get_by_role("banner").get_by_role("link", name=re.compile("home")).click()
    expect(page).to_have_url(HOME_URL)
    axe_check(page)


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        ("/trouble-logging-in/", "Having trouble logging in?"),
        ("/trouble-logging-in/help/", "Multi-Factor Authentication Help"),
        ("/registration-error/", "Registration Error"),
        ("/registration-error/reset/", "Reset Registration"),
    ],
)
def test_every_page_outside_the_portal_leads_back_to_the_login_page(
    page: Page, db, axe_check, path: str, heading: str
) -> None:
    page.goto(path)
    expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
    axe_check(page)
    page.get_by_role("link", name="Back to the login page").click()
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_role("heading", name="LOGIN OPTIONS")).to_be_visible()


def test_reset_keeps_the_way_back_after_submit(page: Page, db, axe_check) -> None:
    page.goto("/registration-error/reset/")
    page.get_by_label("Username").fill("nobody.here")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_role("status")).to_be_visible()
    axe_check(page)
    page.get_by_role("link", name="Back to the login page").click()
    expect(page).to_have_url(LOGIN_URL)


# --- case search and counters -------------------------------------------------------------


def test_case_search_finds_the_number_without_its_prefix(
    page: Page, email_user: User, sign_in, axe_check
) -> None:
    add_case(email_user.organization, "C-100202", "wip", name="Sam Rivera", program="P-5502")
    add_case(email_user.organization, "C-100203", "wip", name="Alex Kim")
    sign_in(page, email_user)
    search = page.get_by_role("search")
    search.get_by_label("Search for Case # or Program #").fill("100202")
    search.get_by_role("button", name="SEARCH").click()
    rows = page.get_by_role("table").get_by_role("row")
    expect(rows).to_have_count(2)  # the header and the one case
    expect(rows.nth(1)).to_contain_text("C-100202")
    expect(rows.nth(1)).to_contain_text("Sam Rivera")
    axe_check(page)


def test_counter_reads_one_new_message_then_two(page: Page, email_user: User, sign_in) -> None:
    Message.objects.create(organization=email_user.organization, subject="One", body="a")
    sign_in(page, email_user)
    expect(page.get_by_text("1 NEW MESSAGE", exact=True)).to_be_visible()
    Message.objects.create(organization=email_user.organization, subject="Two", body="b")
    page.reload()
    expect(page.get_by_text("2 NEW MESSAGES", exact=True)).to_be_visible()


# --- codes: lifetimes and "send a new code" --------------------------------------------------


def test_a_ten_minute_code_is_said_in_minutes(nojs_page: Page, email_user: User, settings) -> None:
    """Without the countdown script, the server's words: minutes, not 600 seconds.
    (No axe here: axe runs as page script, and this browser runs none.)"""
    settings.CAREGATE_EMAIL_LOGIN_CODE_SECONDS = 600
    reach_email_code(nojs_page, email_user)
    send_code(nojs_page)
    expect(
        nojs_page.get_by_text(
            re.compile(r"This code expires in (10 minutes|9 minutes and \d+ sec)")
        )
    ).to_be_visible()


def test_send_new_code_confirms_a_new_email_code(page: Page, email_user: User, axe_check) -> None:
    reach_email_code(page, email_user)
    send_code(page)
    page.get_by_role("button", name="Send new code").click()
    expect(
        page.get_by_role("status").filter(has_text="A new verification code has been sent")
    ).to_be_visible()
    axe_check(page)


def test_send_a_new_code_confirms_a_new_sms(page: Page, make_user, axe_check) -> None:
    phone_user = make_user(mfa="phone")
    reach_phone_challenge(page, phone_user)
    page.get_by_role("button", name="Send Code").click()
    expect(page.get_by_text("Enter your verification code below, or")).to_be_visible()
    expect(page.get_by_text("A new code has been sent")).to_have_count(0)
    page.get_by_role("button", name="send a new code").click()
    expect(page.get_by_role("status")).to_have_text(
        f"A new code has been sent to {MASKED}. The code sent before no longer works."
    )
    axe_check(page)


# --- Section 2: a digits-only payer ID, Organizational Information, a toll-free fax ----------


def test_digits_only_payer_id_registers_and_shows_the_organization(
    page: Page, make_org, axe_check
) -> None:
    make_org(name="Delta Rural Health", without_npi=True, payer_id="40012345", code="40012345")
    page.goto("/")
    page.get_by_role("link", name="register here").click()
    page.get_by_label("NPI *").fill("40012345")
    page.get_by_label("PROVIDER REGISTRATION CODE *").fill("40012345")
    page.get_by_role("button", name="NEXT").click()
    expect(
        page.get_by_role("heading", name="Create a New Account - Enter User Information")
    ).to_be_visible()
    section = page.get_by_role("region", name="Organizational Information")
    expect(section).to_contain_text("Delta Rural Health")
    axe_check(page)
    page.get_by_label("FAX *").fill("800-555-0111")
    page.get_by_role("button", name="NEXT").click()
    expect(
        page.get_by_text("Toll-free numbers (such as 800, 888 or 877) cannot be used.")
    ).to_be_visible()
    expect(page.get_by_text("Please enter a 10-digit phone number")).to_have_count(0)
    axe_check(page)
