"""Sign out and the automatic logoff (idle timeout, absolute lifetime), end to end.

Each test first shows what it then takes away works (the same cookie in another browser
gives access; activity keeps an idle session alive), so a passing test means the server
really ended the session, not that the test's way of looking was broken.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from caregate.accounts.models import User
from tests.browser.helpers import HOME_URL, LOGIN_URL, close_tab, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)

IDLE_MESSAGE = re.compile(r"For your security you were signed out after .* without activity\.")
ENDED_MESSAGE = "Your session has ended. Please sign in again."


def opens_home(context: BrowserContext, cookie: dict) -> bool:
    """Does a different browser, given only this session cookie, get the home page?"""
    context.clear_cookies()
    context.add_cookies([cookie])
    page = context.new_page()
    try:
        page.goto("/home/")
        return HOME_URL.search(page.url) is not None
    finally:
        close_tab(page)


def assert_refused(page: Page) -> None:
    page.goto("/home/")
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_role("heading", name="LOGIN OPTIONS")).to_be_visible()


def test_sign_out_ends_the_session_on_the_server(
    page: Page, email_user: User, sign_in, fresh_context: BrowserContext, axe_check
) -> None:
    sign_in(page, email_user)
    cookie = session_cookie(page.context)
    assert opens_home(fresh_context, cookie), "a live session cookie should give access"
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    axe_check(page)
    assert_refused(page)
    # The old cookie, replayed (as from a copied cookie jar), no longer opens anything.
    assert not opens_home(fresh_context, cookie)


def test_after_sign_out_back_shows_no_portal_page(page: Page, email_user: User, sign_in) -> None:
    sign_in(page, email_user)
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    # Pages are no-store: going back asks the server again, which sends to the login page.
    page.go_back()
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_text("Request Saved But Not Submitted")).to_have_count(0)


def test_portal_pages_need_a_sign_in(page: Page) -> None:
    for path in ("/home/", "/cases/", "/messages/", "/help/"):
        page.goto(path)
        expect(page).to_have_url(LOGIN_URL)
        expect(page.get_by_role("heading", name="LOGIN OPTIONS")).to_be_visible()


def test_idle_session_is_signed_out_automatically(
    page: Page, email_user: User, sign_in, settings, fresh_context: BrowserContext
) -> None:
    settings.CAREGATE_IDLE_TIMEOUT_SECONDS = 2
    sign_in(page, email_user)
    cookie = session_cookie(page.context)
    page.wait_for_timeout(3_000)
    page.reload()
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_text(IDLE_MESSAGE)).to_be_visible()
    assert_refused(page)
    assert not opens_home(fresh_context, cookie)


def test_activity_keeps_a_session_alive_until_it_goes_idle(
    page: Page, email_user: User, sign_in, settings
) -> None:
    settings.CAREGATE_IDLE_TIMEOUT_SECONDS = 4
    sign_in(page, email_user)
    # Clicking about every second for longer than the idle timeout: still signed in.
    start = time.monotonic()
    while time.monotonic() - start < 6:
        page.wait_for_timeout(1_000)
        page.get_by_role("link", name="HOME", exact=True).click()
        expect(page).to_have_url(HOME_URL)
    page.wait_for_timeout(5_000)
    page.reload()
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_text(IDLE_MESSAGE)).to_be_visible()


def test_session_ends_at_its_absolute_lifetime_despite_activity(
    page: Page, email_user: User, sign_in, settings, fresh_context: BrowserContext
) -> None:
    settings.CAREGATE_SESSION_MAX_SECONDS = 4
    sign_in(page, email_user)
    cookie = session_cookie(page.context)
    signed_in_at = time.monotonic()
    # Active all along (idle timeout is the default 30 minutes), yet the session ends.
    while HOME_URL.search(page.url) and time.monotonic() - signed_in_at < 30:
        page.wait_for_timeout(1_000)
        page.reload()
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_text(ENDED_MESSAGE)).to_be_visible()
    assert_refused(page)
    assert not opens_home(fresh_context, cookie)
