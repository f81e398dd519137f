"""The authenticator app, recovery codes and Try another way in Chromium (issue #11), with
axe on every new page: set up the app from My Account and sign in with it (a reused code
refused); recovery codes shown once and used to sign in; Reset Registration clears both."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from caregate.accounts.models import User
from caregate.factors import recovery, totp
from caregate.factors.models import AuthenticatorApp, RecoveryCode
from tests.browser.helpers import HOME_URL, reach_email_code, send_code, type_code
from tests.browser.test_manage_users import open_manage_users
from tests.factor_steps import give_app, give_codes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


def open_my_account(page: Page, axe_check) -> None:
    page.goto("/setup/my-account/")
    expect(page.get_by_role("heading", name="Sign-in methods")).to_be_visible()
    axe_check(page)


def prove_email_again(page: Page, user: User, outbox_code, axe_check) -> None:
    expect(page.get_by_text("first verify your email address")).to_be_visible()
    axe_check(page)
    send_code(page)
    type_code(page, outbox_code(user.email))
    page.get_by_role("button", name="Continue").click()


def try_another_way(page: Page, choice: str, axe_check) -> None:
    page.get_by_role("link", name="Try another way").click()
    expect(page.get_by_role("heading", name="Try another way")).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name=choice).click()


def new_page(browser: Browser, base_url: str) -> Page:
    context = browser.new_context(base_url=base_url)
    context.set_default_timeout(10_000)
    return context.new_page()


def test_set_up_the_app_and_sign_in_with_it_a_reused_code_refused(
    page: Page, browser, live_server, email_user, sign_in, outbox_code, axe_check
) -> None:
    sign_in(page, email_user)
    open_my_account(page, axe_check)
    page.get_by_role("button", name="Set up authenticator app").click()
    prove_email_again(page, email_user, outbox_code, axe_check)
    expect(page.get_by_role("heading", name="Set up an authenticator app")).to_be_visible()
    expect(
        page.get_by_role("img", name="QR code to scan with your authenticator app")
    ).to_be_visible()
    axe_check(page)
    secret = page.locator("#totp-secret").inner_text().replace(" ", "")
    page.get_by_label("Code from your authenticator app").fill(
        totp.code_at(secret, totp.current_step())
    )
    page.get_by_role("button", name="Verify code").click()
    expect(page.get_by_role("heading", name="Save your recovery codes")).to_be_visible()
    axe_check(page)
    page.get_by_role("link", name=re.compile("Not now")).click()
    expect(page.locator("#authenticator-status")).to_contain_text("Set up")
    assert AuthenticatorApp.objects.filter(user=email_user).exists()

    code = totp.code_at(secret, totp.current_step() + 1)  # the confirming step is used up
    for attempt in range(2):
        other = new_page(browser, live_server.url)
        try:
            reach_email_code(other, email_user)
            try_another_way(other, "Enter a code from my authenticator app", axe_check)
            expect(other.get_by_role("heading", name="Authenticator app")).to_be_visible()
            axe_check(other)
            other.get_by_label("Code from your authenticator app").fill(code)
            other.get_by_role("button", name="Verify code").click()
            if attempt == 0:
                expect(other).to_have_url(HOME_URL)
            else:
                expect(other.get_by_role("alert")).to_have_text(
                    "That code was already used. Wait for the app to show a new code and "
                    "enter that one."
                )
                axe_check(other)
        finally:
            other.context.close()


def test_recovery_codes_shown_once_and_one_signs_in(
    page: Page, browser, live_server, email_user, sign_in, outbox_code, axe_check
) -> None:
    sign_in(page, email_user)
    open_my_account(page, axe_check)
    page.get_by_role("button", name="Create recovery codes").click()
    prove_email_again(page, email_user, outbox_code, axe_check)
    expect(page.get_by_role("heading", name="Your recovery codes")).to_be_visible()
    axe_check(page)
    codes = page.get_by_role("list", name="Recovery codes").locator("code").all_inner_texts()
    assert len(codes) == 10
    page.get_by_role("link", name="I have saved my codes").click()
    expect(page.locator("#recovery-status")).to_have_text("10 of 10 left")
    page.goto("/account/recovery-codes/")  # nothing shows them again
    expect(page).to_have_url(re.compile(r"/setup/my-account/$"))
    expect(page.get_by_text(codes[0])).to_have_count(0)

    other = new_page(browser, live_server.url)
    try:
        reach_email_code(other, email_user)
        try_another_way(other, "Enter a recovery code", axe_check)
        expect(other.get_by_role("heading", name="Recovery code")).to_be_visible()
        axe_check(other)
        other.get_by_label("Recovery code").fill(codes[0])
        other.get_by_role("button", name="Verify code").click()
        expect(other).to_have_url(HOME_URL)
        other.get_by_role("link", name="MESSAGE CENTER", exact=True).click()
        expect(other.get_by_role("heading", name="A recovery code was used")).to_be_visible()
        axe_check(other)
    finally:
        other.context.close()
    assert recovery.remaining(email_user) == 9


def test_reset_registration_clears_the_app_and_the_codes(
    page: Page, make_user, sign_in, axe_check
) -> None:
    admin = make_user(username="daisy.admin", is_org_admin=True)
    member = make_user(username="dduck2021", mfa="phone")
    member.first_name, member.last_name = "Daisey", "Duck"
    member.save()
    give_app(member)
    give_codes(member)
    sign_in(page, admin)
    open_manage_users(page, axe_check)
    page.goto(f"/setup/users/{member.pk}/")
    page.get_by_role("button", name="RESET REGISTRATION").click()
    page.get_by_role("button", name="RESET REGISTRATION").click()
    expect(
        page.get_by_text("The registration of Daisey Duck (dduck2021) was reset.")
    ).to_be_visible()
    axe_check(page)
    assert not AuthenticatorApp.objects.filter(user=member).exists()
    assert not RecoveryCode.objects.filter(user=member).exists()
