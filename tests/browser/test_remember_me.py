"""Section 5 – Remember Me, in one browser (one Playwright context, its cookies kept).

"Closing and reopening the browser" with the guide's "continue where you left off" keeps
the browser's cookies: here the tab is closed and a new one opened in the same context.
The second sign-on then skips the credentials and MFA only with the same button, with the
box still checked, within four hours of the sign-in that set it, and while the password
is unchanged. The session before it ended by time (the idle logoff, the user having left
the PC): Sign out instead ends Remember Me, and the same button then asks for the
password. Four hours pass by moving the server's clocks (it reads ``time.time`` and
``django.utils.timezone.now``, and the live server runs in this process)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import Page, expect

from caregate.accounts.models import User
from caregate.delivery.models import OutboxMessage
from caregate.verification.models import RememberedBrowser
from tests.browser.helpers import (
    HOME_URL,
    LOGIN_URL,
    VERIFIED,
    close_tab,
    enter_credentials,
    send_code,
    type_code,
)
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

BUTTON = {"phone": "LOGIN WITH PHONE", "email": "LOGIN WITH EMAIL"}
CREDENTIALS_URL = re.compile(r"^https?://[^/]+/(phone|email)-login/credentials/$")
NEW_PASSWORD = "Another-Long-Passphrase-77"
ENDED = "Your session has ended. Please sign in again."


class Clock:
    """The server's clocks, moved forward; every reader of time in caregate sees it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = 0.0
        real_time, real_now = time.time, timezone.now
        monkeypatch.setattr(time, "time", lambda: real_time() + self.offset)
        monkeypatch.setattr(timezone, "now", lambda: real_now() + timedelta(seconds=self.offset))

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta).total_seconds()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    return Clock(monkeypatch)


@pytest.fixture
def user_for(make_user) -> Callable[[str], User]:
    """A user whose MFA matches the button: phone for LOGIN WITH PHONE, email for EMAIL."""
    return lambda method: make_user(mfa=method)


# --- steps ----------------------------------------------------------------------------


def remember_box(page: Page):
    return page.get_by_label("Remember Me")


def press(page: Page, method: str, *, remember: bool) -> None:
    """On the login page: set the Remember Me box, then LOGIN WITH PHONE/EMAIL."""
    expect(page.get_by_role("heading", name="LOGIN OPTIONS")).to_be_visible()
    remember_box(page).set_checked(remember)
    page.get_by_role("button", name=BUTTON[method]).click()


def newest_code(to: str) -> str:
    message = OutboxMessage.objects.filter(to=to).order_by("-id").first()
    assert message is not None, f"nothing sent to {to}"
    match = re.search(r"\b(\d{6})\b", message.body)
    assert match, message.body
    return match.group(1)


def complete_sign_in(page: Page, user: User, method: str, password: str = PASSWORD) -> None:
    """From the credentials page prompted by the button: password, MFA, home page."""
    expect(page.get_by_role("heading", name="Sign in with your email address")).to_be_visible()
    enter_credentials(page, user.email, password)
    if method == "phone":
        page.get_by_role("button", name="Send Code").click()
        expect(page.get_by_text("Enter your verification code below, or")).to_be_visible()
        page.get_by_label("Verification code").fill(newest_code(user.phone_number))
        page.get_by_role("button", name="Verify Code", exact=True).click()
    else:
        send_code(page)
        type_code(page, newest_code(user.email))
        expect(page.get_by_text(VERIFIED)).to_be_visible()
        page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(HOME_URL)


def sign_in_remembered(page: Page, user: User, method: str) -> None:
    """The first sign-on: Remember Me checked, then the whole sign-in."""
    page.goto("/")
    press(page, method, remember=True)
    complete_sign_in(page, user, method)


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You have signed out.")).to_be_visible()


def left_idle(page: Page, clock: Clock) -> Page:
    """The user walks away without signing out; back after lunch, the idle logoff."""
    clock.advance(minutes=45)
    page = reopen(page)
    expect(page.get_by_text("without activity")).to_be_visible()
    return page


def reopen(page: Page) -> Page:
    """Close the tab and open the portal again in the same browser (cookies kept)."""
    context = page.context
    close_tab(page)
    page = context.new_page()
    page.goto("/")
    expect(page).to_have_url(LOGIN_URL)
    return page


def sends() -> int:
    return OutboxMessage.objects.count()


def expect_prompted(page: Page) -> None:
    """Asked for the credentials again: not signed in, no code or call sent."""
    expect(page).to_have_url(CREDENTIALS_URL)
    expect(page.get_by_role("heading", name="Sign in with your email address")).to_be_visible()
    expect(page.get_by_label("Password")).to_have_value("")


# --- the same button: no prompts ------------------------------------------------------


@pytest.mark.parametrize("method", ["phone", "email"])
def test_same_button_signs_on_again_without_prompts(
    page: Page, user_for, method: str, axe_check, clock: Clock
) -> None:
    user = user_for(method)
    sign_in_remembered(page, user, method)
    cookie = next(
        c for c in page.context.cookies() if c["name"] == settings.CAREGATE_REMEMBER_COOKIE
    )
    # A browser-session cookie (as the guide says: it lives while the browser keeps its
    # session), out of reach of scripts.
    assert cookie["expires"] == -1
    assert cookie["httpOnly"] is True
    assert RememberedBrowser.objects.filter(user=user, method=method).count() == 1
    page = left_idle(page, clock)
    # The box shows that this browser is remembered; the user only clicks the button.
    expect(remember_box(page)).to_be_checked()
    axe_check(page)
    sent = sends()
    page.get_by_role("button", name=BUTTON[method]).click()
    expect(page).to_have_url(HOME_URL)
    expect(page.get_by_role("heading", name="HOME")).to_be_visible()
    expect(page.get_by_text(user.display_name)).to_be_visible()
    axe_check(page)
    assert sends() == sent, "no code, SMS or call for a remembered sign-on"
    # It is a real session: the portal pages open.
    page.goto("/cases/")
    expect(page.get_by_role("heading", name="CASES")).to_be_visible()


def test_remembered_after_the_browser_was_left_open_and_signed_out_for_idleness(
    page: Page, user_for, clock: Clock
) -> None:
    """Closed without signing out; back after lunch: the idle logoff, then one click."""
    user = user_for("phone")
    sign_in_remembered(page, user, "phone")
    clock.advance(minutes=45)
    page = reopen(page)
    expect(page.get_by_text("without activity")).to_be_visible()
    expect(remember_box(page)).to_be_checked()
    page.get_by_role("button", name="LOGIN WITH PHONE").click()
    expect(page).to_have_url(HOME_URL)


# --- prompts ---------------------------------------------------------------------------


def test_the_other_button_prompts(page: Page, user_for, axe_check, clock: Clock) -> None:
    user = user_for("phone")
    sign_in_remembered(page, user, "phone")
    page = left_idle(page, clock)
    sent = sends()
    press(page, "email", remember=True)
    expect_prompted(page)
    axe_check(page)
    page.goto("/home/")
    expect(page).to_have_url(LOGIN_URL)
    assert sends() == sent
    # The remembered button still works: the other one was only not remembered.
    press(page, "phone", remember=True)
    expect(page).to_have_url(HOME_URL)


def test_unchecked_box_prompts_and_turns_the_feature_off(
    page: Page, user_for, axe_check, clock: Clock
) -> None:
    user = user_for("email")
    sign_in_remembered(page, user, "email")
    page = left_idle(page, clock)
    expect(remember_box(page)).to_be_checked()
    press(page, "email", remember=False)
    expect_prompted(page)
    axe_check(page)
    assert not RememberedBrowser.objects.filter(user=user).exists()
    names = [c["name"] for c in page.context.cookies()]
    assert settings.CAREGATE_REMEMBER_COOKIE not in names
    # Turned off, not skipped once: checking the box again at the next sign-on prompts.
    page.get_by_role("button", name="Cancel").click()
    page = reopen(page)
    expect(remember_box(page)).not_to_be_checked()
    press(page, "email", remember=True)
    expect_prompted(page)
    complete_sign_in(page, user, "email")


def test_after_four_hours_it_prompts(page: Page, user_for, clock: Clock, axe_check) -> None:
    user = user_for("email")
    sign_in_remembered(page, user, "email")
    # Just inside the four hours (counted from the sign-in that set it): no prompts.
    clock.advance(hours=3, minutes=58)
    page = reopen(page)
    expect(page.get_by_text("without activity")).to_be_visible()
    press(page, "email", remember=True)
    expect(page).to_have_url(HOME_URL)
    # Past them, although this browser was used since: that session ends with the token,
    # the box is no longer checked, and checking it again prompts.
    clock.advance(minutes=3)
    page.reload()
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_text(ENDED)).to_be_visible()
    expect(remember_box(page)).not_to_be_checked()
    press(page, "email", remember=True)
    expect_prompted(page)
    axe_check(page)
    assert not RememberedBrowser.objects.filter(user=user).exists()
    # Signing in again remembers the browser for another four hours.
    complete_sign_in(page, user, "email")
    assert RememberedBrowser.objects.filter(user=user).count() == 1


def test_a_password_change_prompts(page: Page, user_for, axe_check, clock: Clock) -> None:
    user = user_for("phone")
    sign_in_remembered(page, user, "phone")
    page = left_idle(page, clock)
    press(page, "phone", remember=True)
    expect(page).to_have_url(HOME_URL)
    page = left_idle(page, clock)
    # The password is changed (e.g. Forgot or Reset Password, or by the help desk).
    user.refresh_from_db()
    user.set_password(NEW_PASSWORD)
    user.save()
    page = reopen(page)
    press(page, "phone", remember=True)
    expect_prompted(page)
    axe_check(page)
    # The old password no longer signs in; the new one does, with MFA.
    enter_credentials(page, user.email, PASSWORD)
    expect(page.get_by_role("alert")).to_be_visible()
    page.get_by_role("button", name="Cancel").click()
    press(page, "phone", remember=True)
    complete_sign_in(page, user, "phone", NEW_PASSWORD)


# --- Sign out ends it -------------------------------------------------------------------


@pytest.mark.parametrize("method", ["phone", "email"])
def test_sign_out_then_the_same_button_asks_for_the_password(
    page: Page, user_for, method: str, axe_check
) -> None:
    """The shared front-desk PC: after Sign out the next person is not let in."""
    user = user_for(method)
    sign_in_remembered(page, user, method)
    sign_out(page)
    expect(remember_box(page)).not_to_be_checked()
    axe_check(page)
    names = [c["name"] for c in page.context.cookies()]
    assert settings.CAREGATE_REMEMBER_COOKIE not in names
    assert not RememberedBrowser.objects.filter(user=user).exists()
    # The next person ticks the box and clicks the same button: asked for the password.
    page = reopen(page)
    expect(remember_box(page)).not_to_be_checked()
    sent = sends()
    press(page, method, remember=True)
    expect_prompted(page)
    page.goto("/home/")
    expect(page).to_have_url(LOGIN_URL)
    assert sends() == sent


def test_sign_out_of_a_remembered_session_asks_for_the_password(
    page: Page, user_for, clock: Clock
) -> None:
    """Back in by one click after the idle logoff, then signed out: that ends it too."""
    user = user_for("email")
    sign_in_remembered(page, user, "email")
    page = left_idle(page, clock)
    expect(remember_box(page)).to_be_checked()
    page.get_by_role("button", name="LOGIN WITH EMAIL").click()
    expect(page).to_have_url(HOME_URL)
    sign_out(page)
    expect(remember_box(page)).not_to_be_checked()
    press(page, "email", remember=True)
    expect_prompted(page)


def test_a_copied_cookie_is_refused_after_sign_out(
    page: Page, user_for, fresh_context, clock: Clock
) -> None:
    """A cookie copied off the shared PC is worthless once its user signed out."""
    user = user_for("email")
    sign_in_remembered(page, user, "email")
    cookie = next(
        c for c in page.context.cookies() if c["name"] == settings.CAREGATE_REMEMBER_COOKIE
    )
    sign_out(page)
    fresh_context.add_cookies([cookie])
    thief = fresh_context.new_page()
    thief.goto("/")
    expect(remember_box(thief)).not_to_be_checked()
    press(thief, "email", remember=True)
    expect_prompted(thief)


def test_a_remembered_session_ends_at_the_tokens_four_hours(
    page: Page, user_for, clock: Clock
) -> None:
    """Active all along, the session opened by the token ends when the token does."""
    user = user_for("phone")
    sign_in_remembered(page, user, "phone")
    clock.advance(hours=3)
    page = reopen(page)
    press(page, "phone", remember=True)
    expect(page).to_have_url(HOME_URL)
    for _ in range(2):  # 3:20, 3:40: busy, never idle
        clock.advance(minutes=20)
        page.get_by_role("link", name="HOME", exact=True).click()
        expect(page).to_have_url(HOME_URL)
    clock.advance(minutes=20, seconds=1)  # 4:00:01 after the sign-in that set the token
    page.get_by_role("link", name="HOME", exact=True).click()
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_text(ENDED)).to_be_visible()
    expect(remember_box(page)).not_to_be_checked()
