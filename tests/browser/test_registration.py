"""Registration as a person does it in Chromium, by the guide's labels, with axe-core on
every page: Section 2 (phone, email, payer variant), Section 1 (call, email), the expired
link and the Registration Error reset, Having trouble logging in?, and new Terms of Use."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from caregate.accounts.models import TermsAcceptance, TermsVersion, User
from caregate.accounts.terms import accept
from caregate.delivery.models import OutboxMessage
from caregate.verification.models import EmailLink
from tests.browser.helpers import close_tab
from tests.conftest import PASSWORD
from tests.registration_steps import (
    NEW_PASSWORD,
    email_code,
    registration_link,
    sms_code,
)

pytestmark = pytest.mark.django_db(transaction=True)
HOME = re.compile(r"/home/$")
TERMS_TEXT = "THE PORTAL IS SUBJECT TO AND GOVERNED BY TERMS AND CONDITIONS OF USE."


def publish_terms(version: str = "2026-01") -> TermsVersion:
    return TermsVersion.objects.create(
        version=version,
        text=f"{TERMS_TEXT} (version {version})",
        published_at=timezone.now() - timedelta(minutes=1),
    )


# --- steps ----------------------------------------------------------------------------


def register_new_provider(
    page: Page, axe_check, npi: str, code: str, email: str, username: str
) -> None:
    """Section 2, first part: register here → organization → user information."""
    page.goto("/")
    expect(page.get_by_role("heading", name="LOGIN OPTIONS")).to_be_visible()
    axe_check(page)
    page.get_by_role("link", name="register here").click()
    expect(
        page.get_by_role("heading", name="Create a New Account - Specify Your Organization")
    ).to_be_visible()
    axe_check(page)
    page.get_by_label("NPI *").fill(npi)
    page.get_by_label("PROVIDER REGISTRATION CODE *").fill(code)
    page.get_by_role("button", name="NEXT").click()
    expect(
        page.get_by_role("heading", name="Create a New Account - Enter User Information")
    ).to_be_visible()
    axe_check(page)
    page.get_by_label("USERNAME *").fill(username)
    page.get_by_label("FIRST NAME *").fill("Daniyel")
    page.get_by_label("LAST NAME *").fill("Bezaury")
    page.get_by_label("ADDRESS 1").fill("200 State Street")
    page.get_by_label("CITY").fill("Jackson")
    page.get_by_label("STATE").select_option(label="Mississippi")
    page.get_by_label("ZIP CODE").fill("39201-1234")
    page.get_by_label("EMAIL *", exact=True).fill(email)
    page.get_by_label("CONFIRM EMAIL *").fill("x" + email)
    page.get_by_label("PHONE", exact=True).fill("601-555-0110")
    page.get_by_label("FAX *").fill("601-555-0111")
    page.get_by_role("button", name="NEXT").click()
    # A typo in CONFIRM EMAIL is shown beside the field; the rest is kept.
    expect(page.get_by_text("The two email addresses do not match.")).to_be_visible()
    expect(page.get_by_label("USERNAME *")).to_have_value(username)
    axe_check(page)
    page.get_by_label("CONFIRM EMAIL *").fill(email)
    page.get_by_role("button", name="NEXT").click()
    expect(page.get_by_role("heading", name="Registration complete")).to_be_visible()
    expect(
        page.get_by_text("you must click the link in your email within 20 minutes")
    ).to_be_visible()
    axe_check(page)


def follow_link(page: Page, axe_check, email: str, fax: str = "") -> None:
    """Open the emailed link; the token leaves the address bar; Continue. ``fax``: the
    number the page must show among the details the account was registered with."""
    path = registration_link(email)
    page.goto(path)
    expect(page).to_have_url(re.compile(r"/registration-link/$"))
    expect(page.get_by_role("heading", name="Complete your registration")).to_be_visible()
    if fax:
        expect(page.locator("dt:text-is('FAX') + dd")).to_have_text(fax)
        expect(page.get_by_text("If any of them is not right, do not continue")).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="LOGIN METHOD")).to_be_visible()
    axe_check(page)


def verify_work_email(page: Page, axe_check, email: str) -> None:
    """Email Address → Send verification code → Verification code → Verify code."""
    expect(page.get_by_role("button", name="Send verification code")).to_be_visible()
    axe_check(page)
    page.get_by_label("Email Address").fill(email)
    page.get_by_role("button", name="Send verification code").click()
    expect(
        page.get_by_text("Verification code has been sent. Please copy it to the input box below.")
    ).to_be_visible()
    axe_check(page)
    page.get_by_label("Verification code").fill(email_code(email))
    page.get_by_role("button", name="Verify code").click()
    expect(page.get_by_text("The code has been verified. You can now continue.")).to_be_visible()
    axe_check(page)


def create_password(page: Page) -> None:
    page.get_by_label("New Password", exact=True).fill(NEW_PASSWORD)
    page.get_by_label("Confirm New Password").fill(NEW_PASSWORD)
    page.get_by_role("button", name="Create").click()


def enroll_by_email(page: Page, axe_check, email: str) -> None:
    page.get_by_role("button", name="EMAIL", exact=True).click()
    verify_work_email(page, axe_check, email)
    create_password(page)


def enroll_by_sms(page: Page, axe_check, email: str, phone: str, e164: str) -> None:
    page.get_by_role("button", name="PHONE", exact=True).click()
    verify_work_email(page, axe_check, email)
    create_password(page)
    expect(
        page.get_by_text("Enter a number below that we can send a code via SMS or phone")
    ).to_be_visible()
    axe_check(page)
    page.get_by_label("Country Code").select_option(label="United States (+1)")
    page.get_by_label("Phone Number").fill(phone)
    page.get_by_role("button", name="Send Code").click()
    expect(page.get_by_text("Enter your verification code below, or")).to_be_visible()
    axe_check(page)
    page.get_by_label("Verification code").fill(sms_code(e164))
    page.get_by_role("button", name="Verify Code", exact=True).click()


def accept_terms(page: Page, axe_check) -> None:
    expect(page).to_have_url(re.compile(r"/terms/$"))
    expect(page.get_by_text(TERMS_TEXT)).to_be_visible()
    axe_check(page)
    page.get_by_role("button", name="CONTINUE").click()
    expect(page.get_by_text("Please check the box to agree to the terms of use")).to_be_visible()
    axe_check(page)
    page.get_by_label("I have read and agree to these terms of use.").check()
    page.get_by_role("button", name="CONTINUE").click()


def expect_home(page: Page, axe_check) -> None:
    expect(page).to_have_url(HOME)
    expect(page.get_by_text("Request Saved But Not Submitted")).to_be_visible()
    axe_check(page)


def section1_sign_in(page: Page, axe_check, username: str) -> None:
    page.goto("/")
    axe_check(page)
    page.get_by_role("link", name="click here", exact=True).click()
    expect(
        page.get_by_role("heading", name="Complete your multi-factor authentication registration")
    ).to_be_visible()
    axe_check(page)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_role("heading", name="LOGIN METHOD")).to_be_visible()
    expect(page.get_by_text("cannot use an extension")).to_be_visible()
    axe_check(page)


# --- Section 2 ------------------------------------------------------------------------


def test_section2_with_phone_sms(page: Page, make_org, axe_check) -> None:
    organization = make_org(code="REG-7781")
    publish_terms()
    register_new_provider(
        page, axe_check, organization.npi, "REG-7781", "daniyel@clinic.example", "dbezaury"
    )
    follow_link(page, axe_check, "daniyel@clinic.example", fax="(601) 555-0111")
    enroll_by_sms(page, axe_check, "daniyel@clinic.example", "(601) 555-0123", "+16015550123")
    accept_terms(page, axe_check)
    expect_home(page, axe_check)
    user = User.objects.get(username="dbezaury")
    assert user.mfa_method == User.MfaMethod.PHONE
    assert user.phone_number == "+16015550123"
    assert (user.state, user.zip_code, user.fax) == ("MS", "39201-1234", "+16015550111")
    assert user.check_password(NEW_PASSWORD)
    assert TermsAcceptance.objects.filter(user=user).exists()


def test_section2_with_email(page: Page, make_org, axe_check) -> None:
    organization = make_org(code="REG-5150")
    publish_terms()
    register_new_provider(
        page, axe_check, organization.npi, "REG-5150", "emailonly@clinic.example", "emailonly"
    )
    follow_link(page, axe_check, "emailonly@clinic.example")
    enroll_by_email(page, axe_check, "emailonly@clinic.example")
    accept_terms(page, axe_check)
    expect_home(page, axe_check)
    user = User.objects.get(username="emailonly")
    assert user.mfa_method == User.MfaMethod.EMAIL
    assert user.email_verified_at is not None


def test_section2_payer_variant_without_npi(page: Page, make_org, axe_check) -> None:
    organization = make_org(without_npi=True, payer_id="BCBS12345", code="BCBS12345")
    publish_terms()
    # "If you do not have an NPI, utilize the BCBS ID in both the NPI field and
    # Registration Code field."
    register_new_provider(
        page, axe_check, "BCBS12345", "BCBS12345", "ms.provider@clinic.example", "msprovider"
    )
    follow_link(page, axe_check, "ms.provider@clinic.example")
    enroll_by_email(page, axe_check, "ms.provider@clinic.example")
    accept_terms(page, axe_check)
    expect_home(page, axe_check)
    assert User.objects.get(username="msprovider").organization == organization


def test_section2_wrong_registration_code_is_one_message(page: Page, make_org, axe_check) -> None:
    organization = make_org(code="REG-0001")
    page.goto("/register/")
    page.get_by_label("NPI *").fill(organization.npi)
    page.get_by_label("PROVIDER REGISTRATION CODE *").fill("REG-0002")
    page.get_by_role("button", name="NEXT").click()
    expect(
        page.get_by_text("The NPI and registration code do not match our records.")
    ).to_be_visible()
    axe_check(page)


def test_section2_enter_means_next_and_login_goes_back_for_good(
    page: Page, make_org, axe_check
) -> None:
    """Enter in a field is NEXT, though "< LOGIN" comes first on the page; "< LOGIN"
    (a POST, like Cancel) forgets the attempt."""
    organization = make_org(code="REG-0001")
    page.goto("/register/")
    page.get_by_label("NPI *").fill(organization.npi)
    page.get_by_label("PROVIDER REGISTRATION CODE *").fill("REG-0001")
    page.get_by_label("PROVIDER REGISTRATION CODE *").press("Enter")
    expect(
        page.get_by_role("heading", name="Create a New Account - Enter User Information")
    ).to_be_visible()
    page.get_by_role("button", name="< LOGIN").click()
    expect(page.get_by_role("heading", name="LOGIN OPTIONS")).to_be_visible()
    axe_check(page)
    page.goto("/register/user-info/")
    expect(page.get_by_text("Please start again from the login page.")).to_be_visible()


# --- Section 1 ------------------------------------------------------------------------


def test_section1_with_phone_call(page: Page, make_user, axe_check) -> None:
    terms = publish_terms()
    user = make_user(mfa="none", username="current.user", password=PASSWORD)
    accept(user, terms, "192.0.2.1")
    section1_sign_in(page, axe_check, "current.user")
    page.get_by_role("button", name="PHONE", exact=True).click()
    verify_work_email(page, axe_check, "current.user@clinic.example")
    create_password(page)
    expect(page.get_by_label("Phone Number")).to_be_visible()
    axe_check(page)
    page.get_by_label("Phone Number").fill("202-555-0166")
    page.get_by_role("button", name="Call Me").click()
    number = page.get_by_label("Number to key in")
    expect(number).to_have_text(re.compile(r"^\d{6}$"))
    axe_check(page)
    digits = number.inner_text()
    call = OutboxMessage.objects.get(channel="voice", to="+12025550166")
    # The callee answers on the outbox page and keys in the number followed by #.
    outbox = page.context.new_page()
    outbox.goto("/dev/outbox/")
    outbox.get_by_label(f"Keys to press for call #{call.pk}").fill(f"{digits}#")
    outbox.get_by_role("button", name=f"Answer call #{call.pk}").click()
    close_tab(outbox)
    # The registration page moves on by itself.
    expect_home(page, axe_check)
    user.refresh_from_db()
    assert user.mfa_method == User.MfaMethod.PHONE
    assert user.phone_number == "+12025550166"
    assert user.email == "current.user@clinic.example"


def test_section1_with_email(page: Page, make_user, axe_check) -> None:
    user = make_user(mfa="none", username="email.user", password=PASSWORD)
    section1_sign_in(page, axe_check, "email.user")
    enroll_by_email(page, axe_check, "email.user@clinic.example")
    expect_home(page, axe_check)
    user.refresh_from_db()
    assert user.mfa_method == User.MfaMethod.EMAIL
    assert user.check_password(NEW_PASSWORD)


# --- Registration Error and Having trouble logging in? --------------------------------


def test_expired_link_then_registration_error_reset(page: Page, make_org, axe_check) -> None:
    organization = make_org(code="REG-4242")
    publish_terms()
    register_new_provider(
        page, axe_check, organization.npi, "REG-4242", "late@clinic.example", "late.reader"
    )
    EmailLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    page.goto(registration_link("late@clinic.example"))
    # The page checks the link before offering Continue: an expired one says so at once.
    expect(page.get_by_role("heading", name="Registration Error")).to_be_visible()
    expect(
        page.get_by_text("This link has expired: registration links last 20 minutes.")
    ).to_be_visible()
    expect(page.get_by_text("enter your username and select Submit")).to_be_visible()
    axe_check(page)
    page.get_by_role("link", name="Reset").click()
    expect(page.get_by_role("heading", name="Reset Registration")).to_be_visible()
    axe_check(page)
    page.get_by_label("Username").fill("late.reader")
    page.get_by_role("button", name="Submit").click()
    expect(page.get_by_text("has been sent to its registered email address")).to_be_visible()
    axe_check(page)
    follow_link(page, axe_check, "late@clinic.example")
    enroll_by_email(page, axe_check, "late@clinic.example")
    accept_terms(page, axe_check)
    expect_home(page, axe_check)
    assert User.objects.get(username="late.reader").mfa_method == User.MfaMethod.EMAIL


def test_having_trouble_logging_in(page: Page, make_user, axe_check) -> None:
    user = make_user(
        mfa="none",
        username="halfway",
        email="halfway@clinic.example",
        email_verified_at=timezone.now(),
    )
    page.goto("/")
    page.get_by_role("link", name="Click here", exact=True).click()
    expect(page.get_by_role("heading", name="Having trouble logging in?")).to_be_visible()
    axe_check(page)
    page.get_by_label("Email Address").fill("halfway@clinic.example")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Send link").click()
    expect(page.get_by_text("we have sent a link to that email address")).to_be_visible()
    axe_check(page)
    page.get_by_role("link", name="Multi-Factor Authentication Help").click()
    expect(page.get_by_role("heading", name="Multi-Factor Authentication Help")).to_be_visible()
    axe_check(page)
    follow_link(page, axe_check, "halfway@clinic.example")
    enroll_by_sms(page, axe_check, "halfway@clinic.example", "2025550155", "+12025550155")
    expect_home(page, axe_check)
    user.refresh_from_db()
    assert user.mfa_method == User.MfaMethod.PHONE


# --- Terms of Use ---------------------------------------------------------------------


def test_new_terms_version_is_accepted_again_at_next_sign_in(
    page: Page, make_user, outbox_code, axe_check
) -> None:
    user = make_user(mfa="email", email="returning@clinic.example")
    accept(user, publish_terms("2025-06"), "192.0.2.1")
    publish_terms("2026-02")
    page.goto("/")
    page.get_by_role("button", name="LOGIN WITH EMAIL").click()
    page.get_by_label("Email Address").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Send verification code").click()
    expect(page.get_by_text("Verification code has been sent to your inbox.")).to_be_visible()
    page.get_by_label("Verification code").fill(outbox_code(user.email))
    page.get_by_role("button", name="Verify code").click()
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_text("Version 2026-02", exact=True)).to_be_visible()
    accept_terms(page, axe_check)
    expect_home(page, axe_check)
    versions = set(
        TermsAcceptance.objects.filter(user=user).values_list("terms__version", flat=True)
    )
    assert versions == {"2025-06", "2026-02"}
