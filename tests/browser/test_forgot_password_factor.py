"""Forgot or Reset Password for an account with a passkey (issue #11): after the emailed
code, the reset asks for the strongest enrolled factor, here the passkey, through
Chromium's virtual authenticator; axe on the factor's page."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import CDPSession, Page, expect

from tests.browser import test_passkeys as passkeys
from tests.browser.test_forgot_password import set_new_password, verify_email

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _relying_party(settings, live_server) -> None:
    settings.CAREGATE_WEBAUTHN_RP_ID = "localhost"
    settings.CAREGATE_WEBAUTHN_ORIGINS = [live_server.url]
    settings.CAREGATE_PASSKEY_LOGIN = True  # the shared sign-out step looks for its button
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


@pytest.fixture
def authenticator(page: Page) -> Iterator[CDPSession]:
    session = page.context.new_cdp_session(page)
    session.send("WebAuthn.enable", {"enableUI": False})
    passkeys.add_authenticator(session)
    yield session
    session.send("WebAuthn.disable")


def test_a_password_reset_asks_for_the_passkey(
    page, authenticator, email_user, sign_in, axe_check, outbox_code
):
    sign_in(page, email_user)
    passkeys.enrol(page, axe_check, email_user, outbox_code)
    passkeys.sign_out(page)
    verify_email(page, email_user, outbox_code, axe_check, "LOGIN WITH EMAIL")
    heading = page.get_by_role("heading", name="Reset your password with your passkey")
    expect(heading).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="Use passkey").click()
    set_new_password(page, email_user, axe_check)
