"""The support console in Chromium, by its labels, with axe-core on every page: a support
staff member (signed in through a session cookie; staff LOGIN itself is tested with a real
identity provider in the staff sign-in tests) finds a user of another organization by NPI,
opens their details, and resets their registration with a reason."""

from __future__ import annotations

import re

import pytest
from django.conf import settings
from django.test import Client
from playwright.sync_api import Page, expect

from caregate.accounts.models import User
from caregate.audit.models import AuditEvent
from tests.conftest import sign_in_as

pytestmark = pytest.mark.django_db(transaction=True)


def sign_in_with_cookie(page: Page, user: User, base_url: str) -> None:
    """Give the browser the cookie of a signed-in session of ``user``."""
    client = sign_in_as(Client(), user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base_url}]
    )


def test_support_finds_a_user_and_resets_their_registration(
    page: Page, live_server, make_staff, make_org, make_user, axe_check
) -> None:
    riverside = make_org(name="Riverside Family Clinic", npi="1234567893")
    member = make_user(
        username="dduck2021", email="daisey@clinic.example", mfa="phone", organization=riverside
    )
    member.first_name, member.last_name = "Daisey", "Duck"
    member.save()
    support = make_staff(roles=("support",))
    sign_in_with_cookie(page, support, live_server.url)

    page.goto("/home/")
    page.get_by_role("link", name="SUPPORT", exact=True).click()
    expect(page.get_by_role("heading", name="Support", exact=True)).to_be_visible()
    axe_check(page)
    page.get_by_label("Name, username, email or NPI").fill("1234567893")
    page.get_by_role("button", name="SEARCH", exact=True).last.click()
    expect(page.get_by_role("heading", name="Users found: 1")).to_be_visible()
    row = page.get_by_role("row").filter(has_text="dduck2021")
    expect(row).to_contain_text("Riverside Family Clinic (NPI 1234567893)")
    expect(row).to_contain_text("Phone (XXX-XXX-0143)")
    axe_check(page)
    row.get_by_role("link", name="Daisey Duck").click()

    expect(page.get_by_role("heading", name="Daisey Duck (dduck2021)")).to_be_visible()
    expect(page.get_by_role("heading", name="ACCOUNT INFORMATION")).to_be_visible()
    expect(page.get_by_role("heading", name="Recent events")).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="RESET REGISTRATION").click()

    expect(
        page.get_by_role("heading", name="Reset the registration of Daisey Duck (dduck2021)?")
    ).to_be_visible()
    axe_check(page)
    page.get_by_label("Reason").fill("short")
    page.get_by_role("button", name="RESET REGISTRATION").click()
    # The browser's own check (minlength) or the server's: either way, not reset yet.
    expect(page.get_by_label("Reason")).to_be_visible()
    assert User.objects.get(pk=member.pk).mfa_method == User.MfaMethod.PHONE
    page.get_by_label("Reason").fill("Caller verified by callback; new phone.")
    page.get_by_role("button", name="RESET REGISTRATION").click()

    expect(
        page.get_by_text("The registration of Daisey Duck (dduck2021) was reset.")
    ).to_be_visible()
    expect(
        page.get_by_text(re.compile(r"They were emailed a link to register again"))
    ).to_be_visible()
    expect(page.get_by_role("definition").filter(has_text="Not registered")).to_be_visible()
    axe_check(page)
    member.refresh_from_db()
    assert member.mfa_method == User.MfaMethod.NONE and member.phone_number == ""
    event = AuditEvent.objects.get(event="support.reset-registration", outcome="success")
    assert event.detail["staff_username"] == support.username
    assert event.detail["reason"] == "Caller verified by callback; new phone."
