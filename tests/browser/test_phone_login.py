"""Section 3 – Phone Login, as a person does it in Chromium: Send Code (SMS) and Call Me
in both call modes (``code``: key the number shown on screen then #; ``press-pound``: #
alone), a wrong code, a declined and an unanswered call. The call is answered on the dev
outbox page or by posting to its answer URL, as the phone would; the sign-in page must
then move on by itself (its script polls the call's status), without any click."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from caregate.accounts.models import User
from caregate.delivery.models import OutboxMessage
from caregate.verification.models import PhoneCall
from tests.browser.helpers import HOME_URL, alert, close_tab, wrong_code
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db(transaction=True)

PHONE = "+12025550143"  # make_user(mfa="phone")
MASKED = "XXX-XXX-0143"
PHONE_URL = re.compile(r"^https?://[^/]+/phone-login/phone/$")
ON_RECORD = (
    "We have the following number on record for you. "
    "We can send a code via SMS or phone to authenticate you."
)
SMS_SENT = "Enter your verification code below, or"
CALLING = "Calling your phone now…"
WAITING_FOR_KEYS = "The call was answered. Waiting for you to key in the number…"
DECLINED = "The call ended without verifying you."
NOT_IN_TIME = "The call was not completed in time."
# A call's page moves on by itself: the script polls every 1.5 s.
BY_ITSELF = 15_000


@pytest.fixture
def phone_user(make_user) -> User:
    return make_user(mfa="phone")


@pytest.fixture(autouse=True)
def _no_cooldown(settings) -> None:
    """Switching between Send Code and Call Me is each test's subject, not the cooldown."""
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


# --- steps ----------------------------------------------------------------------------


def reach_phone_challenge(page: Page, user: User, axe_check=None) -> None:
    """LOGIN WITH PHONE → Sign in: up to "We have the following number on record"."""
    page.goto("/")
    expect(page.get_by_role("heading", name="LOGIN OPTIONS")).to_be_visible()
    page.get_by_role("button", name="LOGIN WITH PHONE").click()
    expect(page.get_by_role("heading", name="Sign in with your email address")).to_be_visible()
    if axe_check:
        axe_check(page)
    page.get_by_label("Email Address").fill(user.email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(PHONE_URL)
    expect(page.get_by_text(ON_RECORD)).to_be_visible()
    expect(page.get_by_label("Phone number")).to_have_text(MASKED)
    # The full number is never on the page.
    expect(page.get_by_text("555-0143")).to_have_count(0)


def outbox(page: Page) -> list[dict]:
    """/dev/outbox.json as a developer's script reads it (same browser, same cookies)."""
    response = page.request.get("/dev/outbox.json")
    assert response.ok, response.status
    return response.json()


def newest(page: Page, channel: str, to: str = PHONE) -> dict:
    found = [m for m in outbox(page) if m["channel"] == channel and m["to"] == to]
    assert found, f"no {channel} to {to} in the outbox"
    return max(found, key=lambda m: m["id"])


def sms_code(page: Page) -> str:
    body = newest(page, "sms")["body"]
    match = re.search(r"your verification code is (\d{6})\b", body)
    assert match, body
    return match.group(1)


def send_sms(page: Page) -> None:
    page.get_by_role("button", name="Send Code").click()
    expect(page.get_by_text(SMS_SENT)).to_be_visible()


def verify_sms(page: Page, code: str) -> None:
    page.get_by_label("Verification code").fill(code)
    page.get_by_role("button", name="Verify Code", exact=True).click()


def call_me(page: Page) -> None:
    page.get_by_role("button", name="Call Me").click()
    expect(page.locator("#call-message")).to_have_text(CALLING)


def answer(page: Page, keys: str) -> dict:
    """The callee answers the newest call and keys ``keys`` (POST …/answer, as JSON)."""
    call = newest(page, "voice")
    response = page.request.post(
        f"/dev/outbox/{call['id']}/answer",
        form={"digits": keys},
        headers={"Accept": "application/json"},
    )
    assert response.ok, response.status
    return response.json()


def expect_home(page: Page, user: User) -> None:
    expect(page).to_have_url(HOME_URL, timeout=BY_ITSELF)
    expect(page.get_by_role("heading", name="HOME")).to_be_visible()
    expect(page.get_by_text(user.display_name)).to_be_visible()


def expect_try_again(page: Page) -> None:
    """A call that ended unapproved offers Send Code and Call Me again, and no Continue."""
    expect(page.get_by_text("You can try again:")).to_be_visible()
    expect(page.get_by_role("button", name="Send Code")).to_be_visible()
    expect(page.get_by_role("button", name="Call Me")).to_be_visible()
    expect(page.get_by_role("button", name="Continue")).to_have_count(0)
    expect(page.get_by_label("Number to key in")).to_have_count(0)


# --- Send Code (SMS) ------------------------------------------------------------------


def test_phone_login_by_sms_end_to_end(page: Page, phone_user: User, axe_check) -> None:
    page.goto("/")
    axe_check(page)
    reach_phone_challenge(page, phone_user, axe_check)
    expect(page.get_by_role("button", name="Send Code")).to_be_visible()
    expect(page.get_by_role("button", name="Call Me")).to_be_visible()
    axe_check(page)
    send_sms(page)
    expect(page.get_by_role("button", name="send a new code")).to_be_visible()
    axe_check(page)
    sms = newest(page, "sms")
    assert "Do not share it with anyone." in sms["body"]
    verify_sms(page, sms_code(page))
    expect_home(page, phone_user)
    axe_check(page)
    assert OutboxMessage.objects.filter(channel="sms", to=PHONE).count() == 1


def test_wrong_sms_code_is_told_and_the_right_one_then_signs_in(
    page: Page, phone_user: User, axe_check
) -> None:
    reach_phone_challenge(page, phone_user)
    send_sms(page)
    right = sms_code(page)
    verify_sms(page, wrong_code(right))
    expect(alert(page)).to_have_text(
        "That code is not correct. Please check it and try again (4 attempts left)."
    )
    expect(page).to_have_url(PHONE_URL)
    axe_check(page)
    # Not a 6-digit code: explained, and no attempt spent.
    verify_sms(page, "12ab")
    expect(page.get_by_text("The verification code is 6 digits.")).to_be_visible()
    verify_sms(page, wrong_code(right))
    expect(alert(page)).to_have_text(re.compile(r"\(3 attempts left\)\.$"))
    verify_sms(page, right)
    expect_home(page, phone_user)


def test_send_a_new_code_voids_the_old_one(page: Page, phone_user: User) -> None:
    reach_phone_challenge(page, phone_user)
    send_sms(page)
    old = sms_code(page)
    page.get_by_role("button", name="send a new code").click()
    expect(page.get_by_text(SMS_SENT)).to_be_visible()
    assert OutboxMessage.objects.filter(channel="sms", to=PHONE).count() == 2
    new = sms_code(page)
    if new != old:  # the digits may repeat by chance; then there is nothing to refuse
        verify_sms(page, old)
        expect(alert(page)).to_be_visible()
        expect(page).to_have_url(PHONE_URL)
    verify_sms(page, new)
    expect_home(page, phone_user)


def test_enter_in_the_code_field_verifies_and_sends_nothing(page: Page, phone_user: User) -> None:
    """ "send a new code" comes first on the page but belongs to a side form: Enter in the
    code field is Verify Code, not another text message (the attacker review of session 16)."""
    reach_phone_challenge(page, phone_user)
    send_sms(page)
    page.get_by_label("Verification code").fill(sms_code(page))
    page.get_by_label("Verification code").press("Enter")
    expect_home(page, phone_user)
    assert OutboxMessage.objects.filter(channel="sms", to=PHONE).count() == 1


# --- Call Me, code mode (the default) -------------------------------------------------


def test_call_me_answered_on_the_outbox_page_moves_on_by_itself(
    page: Page, phone_user: User, axe_check
) -> None:
    reach_phone_challenge(page, phone_user)
    call_me(page)
    number = page.get_by_label("Number to key in")
    expect(number).to_have_text(re.compile(r"^\d{6}$"))
    expect(page.get_by_text(f"Answer the call to {MASKED}.")).to_be_visible()
    axe_check(page)
    digits = number.inner_text()
    call = OutboxMessage.objects.get(channel="voice", to=PHONE)
    # The number is shown on the sign-in page only: the call does not say it.
    assert digits not in call.body
    # The callee answers on the dev outbox page (another tab) and keys the number, then #.
    tab = page.context.new_page()
    tab.goto("/dev/outbox/")
    expect(tab.get_by_role("heading", name=f"#{call.pk} Voice call to {PHONE}")).to_be_visible()
    axe_check(tab)
    tab.get_by_label(f"Keys to press for call #{call.pk}").fill(f"{digits}#")
    with tab.expect_response(re.compile(r"/answer$")):
        tab.get_by_role("button", name=f"Answer call #{call.pk}").click()
    close_tab(tab)
    # Nobody touches the sign-in page: its script sees the approval and goes on.
    expect_home(page, phone_user)
    axe_check(page)
    assert PhoneCall.objects.get().status == PhoneCall.Status.USED


def test_call_me_code_mode_a_bare_pound_or_wrong_number_approves_nothing(
    page: Page, phone_user: User
) -> None:
    reach_phone_challenge(page, phone_user)
    call_me(page)
    digits = page.get_by_label("Number to key in").inner_text()
    # The guide's "press #" out of habit: refused, the call asks again.
    result = answer(page, "#")
    assert result["approved"] is False
    assert "Enter the number shown on your screen" in result["say"]
    expect(page.locator("#call-message")).to_have_text(WAITING_FOR_KEYS, timeout=BY_ITSELF)
    result = answer(page, f"{wrong_code(digits)}#")
    assert result["approved"] is False
    # Still waiting on this page, still showing the number, not signed in.
    page.wait_for_timeout(2_000)
    expect(page).to_have_url(PHONE_URL)
    expect(page.get_by_label("Number to key in")).to_have_text(digits)
    # The right number (third try) signs in, by itself.
    result = answer(page, f"{digits}#")
    assert result == {"approved": True, "say": "Thank you. Your sign-in is verified. Goodbye."}
    expect_home(page, phone_user)


def test_call_me_without_javascript_continue_finishes_the_sign_in(
    nojs_page: Page, phone_user: User
) -> None:
    page = nojs_page
    reach_phone_challenge(page, phone_user)
    page.get_by_role("button", name="Call Me").click()
    expect(page.get_by_text(CALLING)).to_be_visible()
    digits = page.get_by_label("Number to key in").inner_text()
    # Continue before the call approved: the page stays and says how the call is going.
    page.get_by_role("button", name="Continue").click()
    expect(page).to_have_url(PHONE_URL)
    expect(page.get_by_text(CALLING)).to_be_visible()
    assert answer(page, f"{digits}#")["approved"] is True
    page.get_by_role("button", name="Continue").click()
    expect_home(page, phone_user)


# --- Call Me, press-pound mode (the guide's) ------------------------------------------


def test_call_me_press_pound_mode_answered_by_post_moves_on_by_itself(
    page: Page, phone_user: User, settings, axe_check
) -> None:
    settings.CAREGATE_CALL_MODE = "press-pound"
    reach_phone_challenge(page, phone_user)
    call_me(page)
    expect(
        page.get_by_text(
            f"Answer the call to {MASKED} and press the # key to complete verification."
        )
    ).to_be_visible()
    expect(page.get_by_label("Number to key in")).to_have_count(0)
    axe_check(page)
    assert "press the pound key" in newest(page, "voice")["body"]
    # Something else than # is not an approval.
    assert answer(page, "1")["approved"] is False
    expect(page.locator("#call-message")).to_have_text(WAITING_FOR_KEYS, timeout=BY_ITSELF)
    assert answer(page, "#")["approved"] is True
    expect_home(page, phone_user)
    axe_check(page)


def test_call_me_press_pound_mode_answered_on_the_outbox_page(
    page: Page, phone_user: User, settings
) -> None:
    settings.CAREGATE_CALL_MODE = "press-pound"
    reach_phone_challenge(page, phone_user)
    call_me(page)
    call = OutboxMessage.objects.get(channel="voice", to=PHONE)
    tab = page.context.new_page()
    tab.goto("/dev/outbox/")
    keys = tab.get_by_label(f"Keys to press for call #{call.pk}")
    expect(keys).to_have_value("#")  # the outbox page's default: press #
    with tab.expect_response(re.compile(r"/answer$")):
        tab.get_by_role("button", name=f"Answer call #{call.pk}").click()
    close_tab(tab)
    expect_home(page, phone_user)


# --- calls that end without verifying -------------------------------------------------


def test_declined_call_is_told_and_send_code_or_call_me_can_be_chosen_again(
    page: Page, phone_user: User, axe_check
) -> None:
    reach_phone_challenge(page, phone_user)
    call_me(page)
    call = OutboxMessage.objects.get(channel="voice", to=PHONE)
    tab = page.context.new_page()
    tab.goto("/dev/outbox/")
    with tab.expect_response(re.compile(r"/decline$")):
        tab.get_by_role("button", name=f"Decline call #{call.pk}").click()
    close_tab(tab)
    # The page notices by itself that the call ended.
    expect(page.get_by_text(DECLINED)).to_be_visible(timeout=BY_ITSELF)
    expect_try_again(page)
    # Telling it placed no second call: calling again is the user's choice.
    assert OutboxMessage.objects.filter(channel="voice").count() == 1
    expect(page).to_have_url(PHONE_URL)
    axe_check(page)
    # Keys pressed on the ended call do nothing.
    assert answer(page, "#")["approved"] is False
    # Call Me again: a new call, a new number, and this one is answered.
    call_me(page)
    digits = page.get_by_label("Number to key in").inner_text()
    assert OutboxMessage.objects.filter(channel="voice", to=PHONE).count() == 2
    assert answer(page, f"{digits}#")["approved"] is True
    expect_home(page, phone_user)


def test_unanswered_call_is_told_and_send_code_then_signs_in(
    page: Page, phone_user: User, settings, axe_check
) -> None:
    settings.CAREGATE_CALL_TIMEOUT_SECONDS = 2
    reach_phone_challenge(page, phone_user)
    call_me(page)
    expect(page.get_by_text(NOT_IN_TIME)).to_be_visible(timeout=BY_ITSELF)
    expect_try_again(page)
    assert OutboxMessage.objects.filter(channel="voice").count() == 1
    axe_check(page)
    # Answering too late approves nothing.
    assert answer(page, "#")["approved"] is False
    send_sms(page)
    verify_sms(page, sms_code(page))
    expect_home(page, phone_user)
