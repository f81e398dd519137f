"""The "aal2" factor policy in Chromium: an administrator without a passkey is asked to add
one at sign-in during the grace period ("Remind me later" goes home), and after it the
portal stays closed until they add one, with the virtual authenticator (the DevTools
protocol's WebAuthn domain). Email is off as a second factor, so the administrator signs
in with their authenticator app. axe on every new page."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from caregate.factors import totp
from caregate.factors.models import AuthenticatorApp
from caregate.factors.policy_models import FactorPolicyGrace
from caregate.passkeys.models import Passkey
from tests.browser.helpers import (
    HOME_URL,
    enter_credentials,
    open_email_login,
)
from tests.browser.test_passkeys import _relying_party, add_authenticator, cdp  # noqa: F401
from tests.factor_steps import app_code, give_app

pytestmark = pytest.mark.django_db(transaction=True)

REQUIRED_URL = re.compile(r"/account/sign-in-methods/required/$")
WHY = "A passkey is safer than a text message"


def sign_in_with_app(page: Page, user, code: str, axe_check) -> None:
    open_email_login(page)
    enter_credentials(page, user.email)
    # No emailed code under aal2: the page offers the account's other factors.
    expect(page.get_by_role("heading", name="Try another way")).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="Enter a code from my authenticator app").click()
    page.get_by_label("Code from your authenticator app").fill(code)
    page.get_by_role("button", name="Verify code").click()


def test_aal2_makes_an_administrator_add_a_passkey(
    page,
    cdp,  # noqa: F811 (the fixture imported above)
    make_user,
    axe_check,
    settings,
):
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    admin = make_user(mfa="email", is_org_admin=True)
    secret = give_app(admin)
    add_authenticator(cdp)

    # In the grace period: asked, and let in with "Remind me later".
    sign_in_with_app(page, admin, app_code(secret), axe_check)
    expect(page.get_by_role("heading", name="ADD A STRONGER SIGN-IN METHOD")).to_be_visible()
    expect(page.get_by_text(WHY)).to_be_visible()
    axe_check(page)
    page.get_by_role("link", name="Remind me later").click()
    expect(page).to_have_url(HOME_URL)

    # After it: the sign-in ends at enrolment, and the portal stays closed.
    FactorPolicyGrace.objects.filter(user=admin).update(
        started_at=timezone.now() - timedelta(days=15)
    )
    page.get_by_role("button", name="Sign out").click()
    sign_in_with_app(page, admin, app_code(secret, 1), axe_check)
    expect(page).to_have_url(REQUIRED_URL)
    expect(page.get_by_role("alert")).to_contain_text("The time to add one ended on")
    axe_check(page)
    page.goto("/setup/users/")
    expect(page).to_have_url(REQUIRED_URL)

    page.get_by_role("link", name="Add a passkey now").click()
    # Adding a passkey asks for the current factor again (caregate/passkeys/flows.py): under
    # aal2 not the emailed code (no second factor) but the authenticator app.
    expect(page.get_by_role("heading", name="ADD A PASSKEY")).to_be_visible()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_label("Code from your authenticator app")).to_be_visible()
    axe_check(page)
    # As if the app had moved on a step (the two sign-ins used this step's code and the
    # next one's; waiting for a new one would take up to a minute).
    AuthenticatorApp.objects.filter(user=admin).update(last_used_step=totp.current_step() - 5)
    page.get_by_label("Code from your authenticator app").fill(app_code(secret))
    page.get_by_role("button", name="Verify code").click()
    expect(page.get_by_label("Passkey name")).to_be_visible()
    expect(page.get_by_text(WHY)).to_be_visible()
    axe_check(page)
    page.get_by_label("Passkey name").fill("Work laptop")
    page.get_by_role("button", name="Create passkey").click()
    expect(page).not_to_have_url(re.compile(r"/account/passkeys/add/$"))
    assert Passkey.objects.filter(user=admin).count() == 1
    page.goto("/setup/users/")
    expect(page.get_by_role("heading", name=re.compile("MANAGE USERS", re.I))).to_be_visible()
