"""The login page ("LOGIN OPTIONS"), by the guide's "Customer or Provider Login"."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.browser.helpers import visible_text

pytestmark = pytest.mark.django_db(transaction=True)


def provider_column(page: Page) -> Locator:
    return page.get_by_role("region", name="Customer/Provider")


def test_login_options_for_customers_and_providers(page: Page, axe_check) -> None:
    page.goto("/")
    expect(page.get_by_role("heading", name="LOGIN OPTIONS", level=1)).to_be_visible()
    column = provider_column(page)
    expect(column.get_by_role("heading", name="Customer/Provider")).to_be_visible()
    expect(
        column.get_by_text("Use this login button if you are a customer or provider user.")
    ).to_be_visible()
    expect(column.get_by_role("button")).to_have_text(["LOGIN WITH PHONE", "LOGIN WITH EMAIL"])
    remember = column.get_by_role("checkbox", name="Remember Me")
    expect(remember).not_to_be_checked()
    page.get_by_text("Remember Me").click()  # the label toggles the box
    expect(remember).to_be_checked()
    axe_check(page)


def test_the_three_links_under_the_login_options(page: Page) -> None:
    page.goto("/")
    expect(page.get_by_text("If you don't already have a Caregate account, you can")).to_have_text(
        "If you don't already have a Caregate account, you can register here."
    )
    expect(
        page.get_by_text("If this is your first login with multi-factor authentication")
    ).to_have_text(
        "If this is your first login with multi-factor authentication, click here to "
        "complete your registration."
    )
    expect(page.get_by_text("Having trouble logging in?")).to_have_text(
        "Having trouble logging in? Click here."
    )


@pytest.mark.parametrize(
    ("link", "heading"),
    [
        ("register here", "Create a New Account - Specify Your Organization"),
        ("click here", "Complete your multi-factor authentication registration"),
        ("Click here", "Having trouble logging in?"),
    ],
)
def test_each_link_opens_its_page(page: Page, link: str, heading: str) -> None:
    page.goto("/")
    page.get_by_role("link", name=link, exact=True).click()
    expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()


def test_without_single_sign_on_there_is_no_staff_column(page: Page, settings) -> None:
    settings.CAREGATE_OIDC_ISSUER = ""
    page.goto("/")
    expect(page.get_by_role("region")).to_have_count(1)
    expect(page.get_by_role("button", name="LOGIN", exact=True)).to_have_count(0)
    expect(page.get_by_text("domain account")).to_have_count(0)


def test_with_single_sign_on_the_staff_column_comes_first(page: Page, settings, axe_check) -> None:
    # An issuer that cannot be reached: the column shows, and LOGIN says the provider is
    # down (the real provider's sign-in is tests/browser/test_staff_login.py).
    settings.CAREGATE_OIDC_ISSUER = "http://127.0.0.1:9"
    settings.CAREGATE_OIDC_CLIENT_ID = "caregate"
    settings.CAREGATE_BRAND_NAME = "Kepro"
    page.goto("/")
    regions = page.get_by_role("region")
    expect(regions).to_have_count(2)
    staff = regions.first
    expect(staff.get_by_role("heading")).to_have_text("Kepro")
    assert visible_text(staff) == (
        "Kepro Use this login button if you have a Kepro domain account. LOGIN"
    )
    # The brand setting names the account everywhere on the page.
    expect(page.get_by_text("If you don't already have a Kepro account")).to_be_visible()
    axe_check(page)
    staff.get_by_role("button", name="LOGIN", exact=True).click()
    expect(page.get_by_role("heading", name="Staff sign-in is not available")).to_be_visible()
    expect(page.get_by_role("alert")).to_contain_text("Kepro identity provider cannot be reached")
    axe_check(page)
    page.get_by_role("link", name="Back to the login page").click()
    expect(page.get_by_role("heading", name="LOGIN OPTIONS")).to_be_visible()


def test_a_signed_in_user_opening_the_login_page_lands_home(
    page: Page, email_user, sign_in
) -> None:
    sign_in(page, email_user)
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/home/$"))


def test_forgot_your_password_link_on_the_sign_in_page(page: Page, axe_check) -> None:
    page.goto("/")
    page.get_by_role("button", name="LOGIN WITH EMAIL").click()
    page.get_by_role("link", name="Forgot your password?").click()
    expect(page.get_by_role("heading", name="Forgot your password?")).to_be_visible()
    axe_check(page)
