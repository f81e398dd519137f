"""Setup → My Account in Chromium: changing the phone number with the second factor again,
changing the email address, ending another session; axe on every page on the way."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from caregate.accounts.models import User
from tests.browser.helpers import LOGIN_URL
from tests.conftest import PASSWORD
from tests.phone_steps import sms_code
from tests.registration_steps import email_code

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "+12025550143"  # make_user(mfa="phone")
NEW_PHONE = "+12025550177"
MY_ACCOUNT_URL = re.compile(r"^https?://[^/]+/setup/my-account/$")


@pytest.fixture(autouse=True)
def _no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


def sign_in_by_phone(page: Page, user: User) -> None:
    page.goto("/")
    page.get_by_role("button", name="LOGIN WITH PHONE").click()
    page.get_by_label("Email Address").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Send Code").click()
    page.get_by_label("Verification code").fill(sms_code(PHONE))
    page.get_by_role("button", name="Verify Code", exact=True).click()
    expect(page.get_by_role("heading", name="HOME")).to_be_visible()


def open_my_account(page: Page, axe_check) -> None:
    page.goto("/setup/my-account/")
    expect(page.get_by_role("heading", name="MY ACCOUNT")).to_be_visible()
    axe_check(page)


def test_changing_the_phone_number_asks_for_the_current_phone_again(page, make_user, axe_check):
    user = make_user(mfa="phone")
    sign_in_by_phone(page, user)
    open_my_account(page, axe_check)
    expect(page.locator("#login-method")).to_have_text("Phone (XXX-XXX-0143)")
    page.get_by_role("button", name="Change phone number").click()
    expect(page.get_by_text("first verify the number we have on record")).to_be_visible()
    expect(page.get_by_label("Phone number")).to_have_text("XXX-XXX-0143")
    axe_check(page)
    page.get_by_role("button", name="Send Code").click()
    page.get_by_label("Verification code").fill(sms_code(PHONE))
    page.get_by_role("button", name="Verify Code", exact=True).click()
    expect(page.get_by_text("Enter your new phone number below.")).to_be_visible()
    axe_check(page)
    page.get_by_label("Phone Number").fill("202-555-0177")
    page.get_by_role("button", name="Send Code").click()
    expect(page.get_by_label("Phone number")).to_have_text("XXX-XXX-0177")
    axe_check(page)
    page.get_by_label("Verification code").fill(sms_code(NEW_PHONE))
    page.get_by_role("button", name="Verify Code", exact=True).click()
    expect(page).to_have_url(MY_ACCOUNT_URL)
    expect(page.get_by_text("Your phone number is now XXX-XXX-0177.")).to_be_visible()
    expect(page.locator("#login-method")).to_have_text("Phone (XXX-XXX-0177)")
    axe_check(page)
    user.refresh_from_db()
    assert user.phone_number == NEW_PHONE
    page.get_by_role("link", name="MESSAGE CENTER", exact=True).click()
    expect(page.get_by_role("heading", name="New phone number")).to_be_visible()


def test_changing_the_email_address_asks_for_the_current_email_again(
    page, email_user, sign_in, axe_check
):
    sign_in(page, email_user)
    open_my_account(page, axe_check)
    page.get_by_role("button", name="Change email address").click()
    expect(page.get_by_text("first verify your current address")).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="Send verification code").click()
    page.get_by_label("Verification code").fill(email_code(email_user.email))
    page.get_by_role("button", name="Verify code").click()
    page.get_by_role("button", name="Continue").click()
    page.get_by_label("Email Address").fill("new.address@clinic.example")
    axe_check(page)
    page.get_by_role("button", name="Send verification code").click()
    page.get_by_label("Verification code").fill(email_code("new.address@clinic.example"))
    axe_check(page)
    page.get_by_role("button", name="Verify code").click()
    expect(page).to_have_url(MY_ACCOUNT_URL)
    done = "Your email address is now new.address@clinic.example."
    expect(page.get_by_text(done)).to_be_visible()


def test_ending_another_session_from_my_account(
    page, fresh_context, email_user, sign_in, axe_check
):
    other = fresh_context.new_page()
    sign_in(other, email_user)
    sign_in(page, email_user)
    open_my_account(page, axe_check)
    end = page.get_by_role("button", name=re.compile(r"^End session"))
    expect(end).to_have_count(1)  # this browser's own session has none
    end.click()
    expect(page.get_by_text("The session was ended: that browser is signed out.")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile(r"^End session"))).to_have_count(0)
    axe_check(page)
    other.goto("/home/")
    expect(other).to_have_url(LOGIN_URL)
