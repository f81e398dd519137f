"""Section 4 – Email Login, as a person does it in Chromium."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace
from unittest import mock

import pytest
from django.test import Client
from playwright.sync_api import Page, expect

from caregate.accounts.models import User
from caregate.delivery.models import OutboxMessage
from caregate.verification import ratelimit
from tests.browser.helpers import (
    CREDENTIALS_URL,
    EMAIL_CODE_URL,
    EXPIRED,
    HOME_URL,
    INTRO,
    LOCKED,
    LOGIN_URL,
    SIGNIN_FAILED,
    VERIFIED,
    alert,
    close_tab,
    code_from_outbox_page,
    enter_credentials,
    open_email_login,
    reach_email_code,
    send_code,
    sign_in_by_email,
    timer,
    type_code,
    wrong_code,
)
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

# The server's wording when JavaScript is off: seconds left and the clock time.
SERVER_TIME_LEFT = re.compile(
    r"^\s*This code expires in \d+ seconds? \(at \d{1,2}:\d{2}:\d{2} [AP]M\)\.\s*$"
)


@pytest.fixture
def roomy_code(settings) -> None:
    """Tests that take many steps with one code give it time; expiry has its own test."""
    settings.CAREGATE_EMAIL_LOGIN_CODE_SECONDS = 300
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


def test_email_login_end_to_end(page: Page, email_user, outbox_code, axe_check) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="LOGIN OPTIONS")).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="LOGIN WITH EMAIL").click()
    expect(page.get_by_text("Sign in with your email address")).to_be_visible()
    axe_check(page)
    page.get_by_label("Email Address").fill(email_user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    intro = "Verification is necessary. Please click Send button."
    expect(page.get_by_text(intro)).to_be_visible()
    email_box = page.get_by_label("Email Address")
    expect(email_box).to_have_value(email_user.email)
    expect(email_box).not_to_be_editable()
    axe_check(page)
    page.get_by_role("button", name="Send verification code").click()
    expect(page.get_by_text("Verification code has been sent to your inbox.")).to_be_visible()
    expect(page.locator("#code-timer")).to_contain_text(re.compile(r"expires in \d+ second"))
    axe_check(page)
    page.get_by_label("Verification code").fill(outbox_code(email_user.email))
    page.get_by_role("button", name="Verify code").click()
    expect(page.get_by_text("E-mail address verified. You can now continue.")).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(re.compile(r"/home/$"))
    expect(page.get_by_text("Request Saved But Not Submitted")).to_be_visible()
    axe_check(page)


def test_email_login_reading_the_code_off_the_dev_outbox_page(
    page: Page, email_user: User, axe_check
) -> None:
    """The developer's way: the code is read in a second tab, from /dev/outbox/."""
    reach_email_code(page, email_user)
    send_code(page)
    tab = page.context.new_page()
    tab.goto("/dev/outbox/")
    expect(tab.get_by_role("heading", name=f"Email to {email_user.email}")).to_be_visible()
    axe_check(tab)
    close_tab(tab)
    type_code(page, code_from_outbox_page(page.context, email_user.email))
    expect(page.get_by_text(VERIFIED)).to_be_visible()
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(HOME_URL)
    expect(page.get_by_text(email_user.display_name)).to_be_visible()


def test_email_login_without_javascript(nojs_page: Page, email_user: User) -> None:
    """Every step is a plain form post; the time left is written by the server."""
    page = nojs_page
    reach_email_code(page, email_user)
    expect(page.get_by_label("Email Address")).to_have_value(email_user.email)
    send_code(page)
    # No script ran: this is the server's sentence (with the clock time), not the countdown.
    expect(timer(page)).to_have_text(SERVER_TIME_LEFT)
    type_code(page, code_from_outbox_page(page.context, email_user.email))
    expect(page.get_by_text(VERIFIED)).to_be_visible()
    expect(timer(page)).to_have_count(0)
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(HOME_URL)
    expect(page.get_by_role("heading", name="HOME")).to_be_visible()


def test_javascript_counts_the_time_left_down(page: Page, email_user: User) -> None:
    reach_email_code(page, email_user)
    send_code(page)
    expect(timer(page)).to_have_text(re.compile(r"^\s*This code expires in \d+ seconds?\.\s*$"))
    first = int(re.search(r"\d+", timer(page).inner_text()).group())
    expect(timer(page)).not_to_have_text(f"This code expires in {first} seconds.")
    later = int(re.search(r"\d+", timer(page).inner_text()).group())
    assert later < first


@pytest.mark.parametrize("skew_seconds", [300, -300], ids=["pc-clock-fast", "pc-clock-slow"])
def test_countdown_is_right_when_the_pc_clock_is_wrong(
    page: Page, email_user: User, skew_seconds: int
) -> None:
    """Many office PCs keep a wrong clock; the 30 seconds must still read as 30 seconds."""
    page.clock.install(time=time.time() + skew_seconds)  # the browser's clock only
    reach_email_code(page, email_user)
    send_code(page)
    expect(timer(page)).to_have_text(re.compile(r"^\s*This code expires in \d+ seconds?\.\s*$"))
    left = int(re.search(r"\d+", timer(page).inner_text()).group())
    assert 0 < left <= 30, timer(page).inner_text()


def test_expired_code_is_refused_and_send_new_code_gives_one_that_works(
    page: Page, email_user: User, outbox_code, settings, axe_check
) -> None:
    settings.CAREGATE_EMAIL_LOGIN_CODE_SECONDS = 2
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    reach_email_code(page, email_user)
    send_code(page)
    old = outbox_code(email_user.email)
    # The countdown says so plainly once the two seconds are over, without a reload.
    expect(timer(page)).to_have_text(EXPIRED, timeout=15_000)
    axe_check(page)
    type_code(page, old)
    expect(alert(page)).to_have_text(EXPIRED)
    expect(page.get_by_text(VERIFIED)).to_have_count(0)
    expect(timer(page)).to_have_text(EXPIRED)
    # A longer life for the new code, so that typing it cannot race the clock.
    settings.CAREGATE_EMAIL_LOGIN_CODE_SECONDS = 300
    page.get_by_role("button", name="Send new code").click()
    # Said the way people say it: "4 minutes and 59 seconds", not "299 seconds".
    expect(timer(page)).to_have_text(
        re.compile(r"^\s*This code expires in \d minutes? and \d+ seconds?\.\s*$")
    )
    # A second email went out (its digits may repeat the old ones by chance).
    assert OutboxMessage.objects.filter(to=email_user.email).count() == 2
    type_code(page, outbox_code(email_user.email))
    expect(page.get_by_text(VERIFIED)).to_be_visible()
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(HOME_URL)


def test_expired_code_is_told_without_javascript(
    nojs_page: Page, email_user: User, outbox_code, settings
) -> None:
    settings.CAREGATE_EMAIL_LOGIN_CODE_SECONDS = 2
    page = nojs_page
    reach_email_code(page, email_user)
    send_code(page)
    old = outbox_code(email_user.email)
    page.wait_for_timeout(3_000)
    page.reload()
    expect(timer(page)).to_have_text(EXPIRED)
    type_code(page, old)
    expect(alert(page)).to_have_text(EXPIRED)


@pytest.mark.usefixtures("roomy_code")
def test_five_wrong_codes_void_the_code_until_send_new_code(
    page: Page, email_user: User, outbox_code, axe_check
) -> None:
    reach_email_code(page, email_user)
    send_code(page)
    right = outbox_code(email_user.email)
    for left in (4, 3, 2, 1):
        type_code(page, wrong_code(right))
        plural = "s" if left != 1 else ""
        expect(alert(page)).to_have_text(
            "That code is not correct. Please check it and try again "
            f"({left} attempt{plural} left)."
        )
    axe_check(page)
    type_code(page, wrong_code(right))
    expect(alert(page)).to_have_text(LOCKED)
    # The voided code must not be announced as still running by the countdown.
    expect(timer(page)).not_to_have_text(re.compile("expires in"))
    type_code(page, right)
    expect(alert(page)).to_have_text(LOCKED)
    expect(page.get_by_text(VERIFIED)).to_have_count(0)
    page.get_by_role("button", name="Continue").click()
    expect(alert(page)).to_have_text("Please verify your email address before you continue.")
    expect(page).to_have_url(EMAIL_CODE_URL)
    page.get_by_role("button", name="Send new code").click()
    expect(timer(page)).to_have_text(re.compile("expires in"))
    type_code(page, outbox_code(email_user.email))
    expect(page.get_by_text(VERIFIED)).to_be_visible()
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(HOME_URL)


def test_a_badly_formed_code_is_explained_and_costs_no_attempt(
    page: Page, email_user: User, outbox_code, settings
) -> None:
    settings.CAREGATE_EMAIL_LOGIN_CODE_SECONDS = 300
    reach_email_code(page, email_user)
    send_code(page)
    right = outbox_code(email_user.email)
    type_code(page, "12ab")
    expect(page.get_by_text("The verification code is 6 digits.")).to_be_visible()
    type_code(page, wrong_code(right))
    expect(alert(page)).to_have_text(re.compile(r"\(4 attempts left\)\.$"))


def test_failed_sign_in_reads_the_same_whatever_the_reason(
    page: Page, make_user, axe_check
) -> None:
    """Wrong password, unknown email, disabled account: one message, one page."""
    known = make_user(mfa="email")
    disabled = make_user(mfa="email", is_active=False)
    shown: list[tuple[str, str, str]] = []
    for email, password in [
        (known.email, PASSWORD + "x"),
        ("nobody-here@example.com", PASSWORD),
        (disabled.email, PASSWORD),
    ]:
        open_email_login(page)
        enter_credentials(page, email, password)
        expect(alert(page)).to_have_text(SIGNIN_FAILED)
        expect(page).to_have_url(CREDENTIALS_URL)
        heading = page.get_by_role("heading", level=1).inner_text()
        shown.append((page.url, heading, alert(page).inner_text()))
        # The typed email stays, the password does not.
        expect(page.get_by_label("Email Address")).to_have_value(email)
        expect(page.get_by_label("Password")).to_have_value("")
    axe_check(page)
    assert shown[0] == shown[1] == shown[2], shown


def test_empty_sign_in_names_the_missing_fields(page: Page) -> None:
    open_email_login(page)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_text("Please enter your Email Address.")).to_be_visible()
    expect(page.get_by_text("Please enter your Password.")).to_be_visible()
    expect(page).to_have_url(CREDENTIALS_URL)


def test_phone_user_is_told_to_use_login_with_phone(page: Page, make_user, axe_check) -> None:
    user = make_user(mfa="phone")
    open_email_login(page)
    enter_credentials(page, user.email)
    expect(page.get_by_role("heading", name="Please use LOGIN WITH PHONE")).to_be_visible()
    expect(page.get_by_text(INTRO)).to_have_count(0)
    axe_check(page)
    page.get_by_role("button", name="Back to the login page").click()
    expect(page).to_have_url(LOGIN_URL)
    page.get_by_role("button", name="LOGIN WITH PHONE").click()
    expect(page.get_by_role("heading", name="Sign in with your email address")).to_be_visible()


def test_unregistered_user_is_sent_to_complete_registration(
    page: Page, make_user, axe_check
) -> None:
    user = make_user(mfa="none")
    open_email_login(page)
    enter_credentials(page, user.email)
    expect(page.get_by_role("heading", name="Please complete your registration")).to_be_visible()
    axe_check(page)
    page.get_by_role("link", name="Complete your registration").click()
    expect(
        page.get_by_role("heading", name="Complete your multi-factor authentication registration")
    ).to_be_visible()
    expect(page.get_by_label("Username")).to_be_visible()


def test_a_later_stage_cannot_be_reached_by_url(page: Page, email_user: User) -> None:
    open_email_login(page)
    page.goto("/email-login/email-code/")
    expect(page).to_have_url(CREDENTIALS_URL)
    expect(page.get_by_text(INTRO)).to_have_count(0)
    # And after the password, going back by URL returns to the stage reached.
    enter_credentials(page, email_user.email)
    expect(page.get_by_text(INTRO)).to_be_visible()
    page.goto("/email-login/credentials/")
    expect(page).to_have_url(EMAIL_CODE_URL)


def test_a_stage_url_without_a_started_login_goes_to_the_login_page(page: Page) -> None:
    page.goto("/email-login/email-code/")
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_text("Please start again from the login page.")).to_be_visible()


def test_cancel_forgets_the_sign_in(page: Page, email_user: User) -> None:
    reach_email_code(page, email_user)
    page.get_by_role("button", name="Cancel").click()
    expect(page).to_have_url(LOGIN_URL)
    page.goto("/email-login/email-code/")
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_text("Please start again from the login page.")).to_be_visible()


def test_a_finished_login_cannot_be_replayed(page: Page, email_user: User, sign_in) -> None:
    sign_in(page, email_user)
    page.goto("/email-login/email-code/")
    # The finished flow is gone; the login page sends a signed-in user home.
    expect(page).to_have_url(HOME_URL)
    expect(page.get_by_text(VERIFIED)).to_have_count(0)


def test_send_new_code_too_soon_asks_to_wait_and_keeps_the_code(
    page: Page, email_user: User, outbox_code, settings
) -> None:
    settings.CAREGATE_EMAIL_LOGIN_CODE_SECONDS = 300
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 60
    reach_email_code(page, email_user)
    send_code(page)
    page.get_by_role("button", name="Send new code").click()
    expect(alert(page)).to_have_text(
        re.compile(r"^\s*Please wait \d+ seconds before asking for a new code\.\s*$")
    )
    assert OutboxMessage.objects.filter(to=email_user.email).count() == 1
    type_code(page, outbox_code(email_user.email))
    expect(page.get_by_text(VERIFIED)).to_be_visible()


def test_continue_before_verifying_is_refused(page: Page, email_user: User) -> None:
    reach_email_code(page, email_user)
    page.get_by_role("button", name="Continue").click()
    expect(alert(page)).to_have_text("Please verify your email address before you continue.")
    expect(page).to_have_url(EMAIL_CODE_URL)


def test_a_sign_in_left_too_long_expires(
    page: Page, email_user: User, settings, monkeypatch
) -> None:
    settings.CAREGATE_FLOW_TIMEOUT_SECONDS = 60
    reach_email_code(page, email_user)
    # A minute later, as the flow engine (in the live server's thread) sees it. (A real
    # two-second timeout made the test depend on how fast the machine reached the page.)
    later = time.time() + 61
    monkeypatch.setattr("caregate.flows.engine.time", SimpleNamespace(time=lambda: later))
    page.get_by_role("button", name="Send verification code").click()
    expect(page).to_have_url(LOGIN_URL)
    expect(
        page.get_by_text("Your sign-in took too long and has expired. Please start again.")
    ).to_be_visible()
    assert not OutboxMessage.objects.filter(to=email_user.email).exists()


def test_an_account_disabled_during_the_sign_in_is_not_signed_in(
    page: Page, email_user: User, outbox_code, settings
) -> None:
    settings.CAREGATE_EMAIL_LOGIN_CODE_SECONDS = 300
    reach_email_code(page, email_user)
    send_code(page)
    type_code(page, outbox_code(email_user.email))
    expect(page.get_by_text(VERIFIED)).to_be_visible()
    User.objects.filter(pk=email_user.pk).update(is_active=False)
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(LOGIN_URL)
    expect(page.get_by_text("Please sign in again.")).to_be_visible()
    page.goto("/home/")
    expect(page).to_have_url(LOGIN_URL)


def test_a_stranger_spending_the_budget_does_not_lock_the_owners_browser(
    page: Page, email_user: User, outbox_code, settings
) -> None:
    """Device cookies (security/devices.py): after a stranger's ten wrong passwords from
    elsewhere, the browser where the user signed in before still signs in; a fresh one
    is told it could not."""
    with mock.patch.object(ratelimit, "time", mock.Mock(time=lambda: 1_800_000_000.0)):
        sign_in_by_email(page, email_user, outbox_code)
        page.get_by_role("button", name="Sign out").click()
        for n in range(settings.CAREGATE_RATE_LIMITS["signin:account"][0] + 1):
            stranger = Client(REMOTE_ADDR=f"203.0.113.{n + 1}")
            stranger.post("/login/start/", {"method": "email"})
            stranger.post(
                "/email-login/credentials/", {"email": email_user.email, "password": "Wrong-1x"}
            )
        sign_in_by_email(page, email_user, outbox_code)
        fresh = page.context.browser.new_context(base_url=page.url.split("/home")[0])
        other = fresh.new_page()
        try:
            open_email_login(other)
            enter_credentials(other, email_user.email)
            expect(other.get_by_text("We could not sign you in")).to_be_visible()
        finally:
            fresh.close()
