"""The guide's "Forgot or Reset Password", as a person does it in Chromium: an email-only
user (no phone step, as the guide's note says), a phone user by Send Code and by Call Me
(press #), axe on every page, and the Message Center notice afterwards."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from caregate.accounts.models import User
from tests.browser.test_phone_login import answer, call_me, send_sms, sms_code, verify_sms
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

NEW = "A-Brand-New-Passphrase-77 with spaces, pasted from a password manager"  # 70 chars
HOME_URL = re.compile(r"^https?://[^/]+/home/$")
PHONE_URL = re.compile(r"^https?://[^/]+/forgot-password/phone/$")
PASSWORD_URL = re.compile(r"^https?://[^/]+/forgot-password/password/$")
SENT = "Verification code has been sent. Please copy it to the input box below."
VERIFIED = "E-mail address verified. You can now continue."
PASTE_PREVENTED = """el => {
    const paste = new ClipboardEvent("paste", {
        bubbles: true, cancelable: true, clipboardData: new DataTransfer(),
    });
    el.dispatchEvent(paste);
    return paste.defaultPrevented;
}"""
BY_ITSELF = 15_000  # a call's page moves on by itself: its script polls


@pytest.fixture(autouse=True)
def _no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


def verify_email(page: Page, user: User, outbox_code, axe_check, button: str) -> None:
    """LOGIN WITH ... → Forgot your password? → Email Address → Send verification code →
    Verify code → Continue."""
    page.goto("/")
    page.get_by_role("button", name=button).click()
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    axe_check(page)
    page.get_by_label("Email Address").fill(user.email)
    page.get_by_role("button", name="Send verification code").click()
    expect(page.get_by_text(SENT)).to_be_visible()
    axe_check(page)
    page.get_by_label("Verification code").fill(outbox_code(user.email))
    page.get_by_role("button", name="Verify code").click()
    expect(page.get_by_text(VERIFIED)).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="Continue").click()


def set_new_password(page: Page, user: User, axe_check) -> None:
    """New Password, Confirm New Password (pasted) → Continue → the home page."""
    expect(page).to_have_url(PASSWORD_URL, timeout=BY_ITSELF)
    axe_check(page)
    page.get_by_label("New Password", exact=True).fill(NEW)
    page.get_by_label("Confirm New Password").fill(NEW + "typo")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("The two passwords do not match.")).to_be_visible()
    axe_check(page)
    # Pasting is allowed: nothing on the page cancels a paste into the fields.
    for label in ("New Password", "Confirm New Password"):
        field = page.get_by_label(label, exact=True)
        assert field.evaluate(PASTE_PREVENTED) is False
    page.get_by_label("New Password", exact=True).fill(NEW)
    page.get_by_label("Confirm New Password").fill(NEW)
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(HOME_URL)
    expect(page.get_by_text(user.display_name)).to_be_visible()
    axe_check(page)
    user.refresh_from_db()
    assert user.check_password(NEW) and not user.check_password(PASSWORD)


def message_center_tells(page: Page, axe_check) -> None:
    page.goto("/messages/")
    expect(page.get_by_text("Your password was changed").first).to_be_visible()
    axe_check(page)


def test_email_user_resets_the_password(
    page: Page, email_user: User, outbox_code, axe_check
) -> None:
    verify_email(page, email_user, outbox_code, axe_check, "LOGIN WITH EMAIL")
    set_new_password(page, email_user, axe_check)  # no phone step
    message_center_tells(page, axe_check)


def test_phone_user_resets_the_password_with_send_code(
    page: Page, make_user, outbox_code, axe_check
) -> None:
    user = make_user(mfa="phone")
    verify_email(page, user, outbox_code, axe_check, "LOGIN WITH PHONE")
    expect(page).to_have_url(PHONE_URL)
    expect(page.get_by_label("Phone number")).to_have_text("XXX-XXX-0143")
    axe_check(page)
    send_sms(page)
    axe_check(page)
    verify_sms(page, sms_code(page))
    set_new_password(page, user, axe_check)
    message_center_tells(page, axe_check)


def test_phone_user_resets_the_password_with_call_me(
    page: Page, make_user, outbox_code, axe_check, settings
) -> None:
    settings.CAREGATE_CALL_MODE = "press-pound"  # the guide's: press # on the keypad
    user = make_user(mfa="phone")
    verify_email(page, user, outbox_code, axe_check, "LOGIN WITH PHONE")
    expect(page).to_have_url(PHONE_URL)
    call_me(page)
    axe_check(page)
    assert answer(page, "#")["approved"] is True
    set_new_password(page, user, axe_check)  # the page moved on by itself


def test_the_phone_step_is_not_skipped_by_typing_the_address(
    page: Page, make_user, outbox_code, axe_check
) -> None:
    user = make_user(mfa="phone")
    verify_email(page, user, outbox_code, axe_check, "LOGIN WITH PHONE")
    expect(page).to_have_url(PHONE_URL)
    page.goto("/forgot-password/password/")
    expect(page).to_have_url(PHONE_URL)
    user.refresh_from_db()
    assert user.check_password(PASSWORD)
