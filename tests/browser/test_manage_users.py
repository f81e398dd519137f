"""The guide's "Provider Administrator Reset Registration" in Chromium, by the guide's
labels, with axe-core on every page: SETUP → Manage Users → search → expand the user → the
pencil icon → ACCOUNT INFORMATION → RESET REGISTRATION → the confirmation naming the user;
then the user registers again from the emailed link. A standard user has no Manage Users."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from caregate.accounts.models import User
from tests.browser.helpers import HOME_URL
from tests.registration_steps import NEW_PASSWORD, email_code, registration_link

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin(make_user) -> User:
    user = make_user(username="daisy.admin", email="daisy.admin@clinic.example", is_org_admin=True)
    user.first_name, user.last_name = "Daisy", "Admin"
    user.save()
    return user


@pytest.fixture
def member(make_user) -> User:
    """The guide's example user, registered with a phone."""
    user = make_user(username="dduck2021", email="daisey@clinic.example", mfa="phone")
    user.first_name, user.last_name = "Daisey", "Duck"
    user.save()
    return user


def open_manage_users(page: Page, axe_check) -> None:
    page.get_by_role("link", name="SETUP", exact=True).click()
    expect(page.get_by_role("heading", name="Setup")).to_be_visible()
    axe_check(page)
    page.get_by_role("link", name="Manage Users").click()
    expect(page.get_by_role("heading", name=re.compile(r"^Manage Users \(\d+\)$"))).to_be_visible()
    axe_check(page)


def register_again_from_link(browser: Browser, base_url: str, member: User, axe_check) -> None:
    """The user, in a browser of their own, follows the emailed link and registers again
    (by email), then finds the reset notice in the Message Center."""
    context = browser.new_context(base_url=base_url)
    context.set_default_timeout(10_000)
    user_page = context.new_page()
    try:
        user_page.goto(registration_link(member.email))
        expect(user_page.get_by_text("dduck2021")).to_be_visible()
        axe_check(user_page)
        user_page.get_by_role("button", name="Continue").click()
        expect(user_page.get_by_role("heading", name="LOGIN METHOD")).to_be_visible()
        axe_check(user_page)
        user_page.get_by_role("button", name="EMAIL", exact=True).click()
        user_page.get_by_label("Email Address").fill(member.email)
        axe_check(user_page)
        user_page.get_by_role("button", name="Send verification code").click()
        user_page.get_by_label("Verification code").fill(email_code(member.email))
        axe_check(user_page)
        user_page.get_by_role("button", name="Verify code").click()
        expect(user_page.get_by_label("New Password", exact=True)).to_be_visible()
        axe_check(user_page)
        user_page.get_by_label("New Password", exact=True).fill(NEW_PASSWORD)
        user_page.get_by_label("Confirm New Password").fill(NEW_PASSWORD)
        user_page.get_by_role("button", name="Create").click()
        expect(user_page).to_have_url(HOME_URL)
        axe_check(user_page)
        user_page.get_by_role("link", name="MESSAGE CENTER", exact=True).click()
        expect(
            user_page.get_by_role("heading", name="Your registration was reset")
        ).to_be_visible()
        axe_check(user_page)
    finally:
        user_page.wait_for_load_state("load")
        context.close()


def test_admin_resets_registration_and_the_user_registers_again(
    page: Page, browser, live_server, admin, member, sign_in, axe_check
) -> None:
    sign_in(page, admin)
    open_manage_users(page, axe_check)

    page.get_by_label("Search by name, username or email").fill("duck")
    page.get_by_role("button", name="SEARCH", exact=True).last.click()
    expect(page.get_by_role("heading", name="Manage Users (1)")).to_be_visible()
    axe_check(page)
    pencil = page.get_by_role("link", name="Edit Daisey Duck (dduck2021)")
    expect(pencil).to_be_hidden()  # until the user's section is expanded
    page.get_by_text("Daisey Duck (dduck2021)", exact=True).click()  # expand the user
    expect(page.get_by_text("XXX-XXX-0143")).to_be_visible()
    axe_check(page)
    pencil.click()  # the pencil icon

    expect(page.get_by_role("heading", name="Daisey Duck (dduck2021)")).to_be_visible()
    expect(page.get_by_role("heading", name="ACCOUNT INFORMATION")).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="RESET REGISTRATION").click()
    expect(
        page.get_by_role("heading", name="Reset the registration of Daisey Duck (dduck2021)?")
    ).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="RESET REGISTRATION").click()
    expect(
        page.get_by_text("The registration of Daisey Duck (dduck2021) was reset.")
    ).to_be_visible()
    expect(page.get_by_text("Not registered")).to_be_visible()
    axe_check(page)
    member.refresh_from_db()
    assert member.mfa_method == User.MfaMethod.NONE and member.phone_number == ""

    register_again_from_link(browser, live_server.url, member, axe_check)
    member.refresh_from_db()
    assert member.mfa_method == User.MfaMethod.EMAIL


def test_admin_deactivates_a_user_after_a_confirmation_naming_them(
    page: Page, admin, member, sign_in, axe_check
) -> None:
    sign_in(page, admin)
    page.goto(f"/setup/users/{member.pk}/")
    page.get_by_role("button", name="DEACTIVATE USER").click()
    expect(page.get_by_role("heading", name="Deactivate Daisey Duck (dduck2021)?")).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="DEACTIVATE USER").click()
    expect(page.get_by_text("Daisey Duck (dduck2021) was deactivated.")).to_be_visible()
    expect(page.get_by_role("button", name="REACTIVATE USER")).to_be_visible()
    axe_check(page)
    assert not User.objects.get(pk=member.pk).is_active


def test_the_last_admin_is_told_why_the_role_cannot_be_removed(
    page: Page, admin, sign_in, axe_check
) -> None:
    sign_in(page, admin)
    page.goto(f"/setup/users/{admin.pk}/")
    page.get_by_role("button", name="REMOVE ADMINISTRATOR").click()
    expect(page.get_by_role("alert")).to_contain_text("is the last provider administrator")
    expect(page.get_by_role("button", name="REMOVE ADMINISTRATOR")).to_have_count(0)
    axe_check(page)


def test_a_standard_user_has_no_manage_users(page: Page, member, sign_in, axe_check) -> None:
    User.objects.filter(pk=member.pk).update(mfa_method="email", phone_number="")
    sign_in(page, member)
    page.get_by_role("link", name="SETUP", exact=True).click()
    expect(page.get_by_role("heading", name="Setup")).to_be_visible()
    expect(page.get_by_role("link", name="Manage Users")).to_have_count(0)
    axe_check(page)
    response = page.goto("/setup/users/")
    assert response is not None and response.status == 403
    expect(page.get_by_text("Manage Users is for provider administrators.")).to_be_visible()
    expect(page.get_by_text("Daisey Duck (dduck2021)")).to_have_count(0)
    axe_check(page)


def test_another_organizations_user_is_not_found(
    page: Page, admin, make_user, make_org, sign_in, axe_check
) -> None:
    stranger = make_user(username="stranger", organization=make_org(name="Other Clinic"))
    sign_in(page, admin)
    response = page.goto(f"/setup/users/{stranger.pk}/")
    assert response is not None and response.status == 404
    expect(page.get_by_text("stranger")).to_have_count(0)
    axe_check(page)
    response = page.goto(f"/setup/users/{stranger.pk}/reset-registration/")
    assert response is not None and response.status == 404
