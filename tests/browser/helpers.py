"""Steps a person takes in the browser, shared by the browser tests.

Controls are found by the words on the screen (the user guide's wording), never by CSS
classes, so a renamed button or a lost label fails the tests as it would confuse a user.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date

from playwright.sync_api import BrowserContext, Locator, Page, expect

from caregate.accounts.models import Organization, User
from caregate.portal.models import Case
from tests.conftest import PASSWORD

HOME_URL = re.compile(r"^https?://[^/]+/home/$")
# The login page, possibly with Django's ?next=... after a refused portal page.
LOGIN_URL = re.compile(r"^https?://[^/]+/(\?.*)?$")
CREDENTIALS_URL = re.compile(r"^https?://[^/]+/email-login/credentials/$")
EMAIL_CODE_URL = re.compile(r"^https?://[^/]+/email-login/email-code/$")

SIGNIN_FAILED = re.compile(
    r"^\s*We could not sign you in with that email address and password\. .*"
    r"Forgot your password\?"
)
INTRO = "Verification is necessary. Please click Send button."
SENT = "Verification code has been sent to your inbox."
VERIFIED = "E-mail address verified. You can now continue."
EXPIRED = "This code has expired. Select Send new code to get a new one."
LOCKED = (
    "Too many wrong codes: this code can no longer be used. Select Send new code to get a new one."
)

CodeReader = Callable[[str], str]


def open_email_login(page: Page) -> None:
    """From the login page, LOGIN WITH EMAIL (Section 4, first step)."""
    page.goto("/")
    page.get_by_role("button", name="LOGIN WITH EMAIL").click()
    expect(page.get_by_role("heading", name="Sign in with your email address")).to_be_visible()


def enter_credentials(page: Page, email: str, password: str = PASSWORD) -> None:
    page.get_by_label("Email Address").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def send_code(page: Page) -> None:
    page.get_by_role("button", name="Send verification code").click()
    expect(page.get_by_text(SENT)).to_be_visible()


def type_code(page: Page, code: str) -> None:
    page.get_by_label("Verification code").fill(code)
    page.get_by_role("button", name="Verify code").click()


def alert(page: Page) -> Locator:
    """The one error summary a flow page shows (role=alert)."""
    return page.get_by_role("alert")


def timer(page: Page) -> Locator:
    """The line that tells how long the code has left (server text, or the JS countdown)."""
    return page.get_by_role("paragraph").filter(has_text=re.compile(r"This code (expires|has)"))


def reach_email_code(page: Page, user: User) -> None:
    """LOGIN WITH EMAIL → Sign in: up to "Verification is necessary"."""
    open_email_login(page)
    enter_credentials(page, user.email)
    expect(page.get_by_text(INTRO)).to_be_visible()


def sign_in_by_email(page: Page, user: User, read_code: CodeReader) -> None:
    """The whole Section 4 sign-in, ending on the home page."""
    reach_email_code(page, user)
    send_code(page)
    type_code(page, read_code(user.email))
    expect(page.get_by_text(VERIFIED)).to_be_visible()
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(HOME_URL)


def close_tab(tab: Page) -> None:
    """Close a tab once its last navigation has finished.

    Page.close has no timeout, and closing a tab while a navigation (say, the redirect after
    the outbox's Answer button) is still committing can leave it waiting forever with
    Debian's Chromium. Waiting for the load first makes the close an ordinary one.
    """
    tab.wait_for_load_state("load")
    tab.close()


def code_from_outbox_page(context: BrowserContext, email: str) -> str:
    """Read the newest code to ``email`` off the dev outbox page, in a second tab."""
    tab = context.new_page()
    try:
        tab.goto("/dev/outbox/")
        expect(tab.get_by_role("heading", name="Dev outbox")).to_be_visible()
        newest = tab.get_by_role("article").filter(
            has=tab.get_by_role("heading", name=f"Email to {email}")
        )
        body = newest.first.locator("pre").inner_text()
    finally:
        close_tab(tab)
    match = re.search(r"verification code is: (\d{6})\b", body)
    assert match, body
    return match.group(1)


def wrong_code(code: str) -> str:
    """A well-formed code that is certainly not ``code``."""
    return f"{(int(code) + 1) % 1_000_000:06d}"


def session_cookie(context: BrowserContext) -> dict:
    cookies = [c for c in context.cookies() if c["name"] == "caregate_session"]
    assert cookies, "no session cookie"
    return cookies[0]


def add_case(
    org: Organization,
    number: str,
    status: str,
    *,
    name: str = "",
    program: str = "",
) -> Case:
    return Case.objects.create(
        organization=org,
        case_number=number,
        program_number=program,
        contract=f"{org.name} contract",
        case_type="Home Health",
        consumer_id=f"MC-{number}",
        consumer_name=name or f"Consumer {number}",
        consumer_dob=date(1970, 1, 2),
        status=status,
    )


def visible_text(locator: Locator) -> str:
    """The element's text as a person reads it: whitespace collapsed."""
    return " ".join(locator.inner_text().split())
