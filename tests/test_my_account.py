"""Setup → My Account: the login method on record (masked), changing the phone number or
the email address with the current second factor again, the signed-in sessions and the
remembered browsers, and the security notices in the Message Center."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from caregate.accounts.models import SignedInSession, User
from caregate.delivery.models import OutboxMessage
from caregate.portal.models import Message
from caregate.portal.my_account import describe_device, describe_method
from caregate.verification.models import RememberedBrowser
from tests import flowstate
from tests.phone_steps import (
    PHONE,
    answer,
    email_login,
    is_signed_in,
    newest_call,
    phone_login,
    shown_call_code,
    sms_code,
    text,
)
from tests.registration_steps import email_code

pytestmark = pytest.mark.django_db

MY_ACCOUNT = "/setup/my-account/"
CHANGE_PHONE = "/setup/my-account/change/phone/"
CHANGE_EMAIL = "/setup/my-account/change/email/"
PHONE_CURRENT = "/change-phone/current/"
PHONE_NEW = "/change-phone/new-phone/"
EMAIL_CURRENT = "/change-email/current/"
EMAIL_NEW = "/change-email/new-email/"
NEW_PHONE = "+12025550177"
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/120.0 Safari/537.36"
)


@pytest.fixture(autouse=True)
def _no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


@pytest.fixture
def phone_user(make_user) -> User:
    return make_user(mfa="phone", phone=PHONE)


def signed_in_as(user: User, *, remember: bool = False, agent: str = CHROME_WINDOWS) -> Client:
    client = Client(HTTP_USER_AGENT=agent)
    login = phone_login if user.mfa_method == "phone" else email_login
    extra = {"to": user.phone_number} if user.mfa_method == "phone" else {}
    response = login(client, user, remember=remember, **extra)
    assert response.status_code == 302 and response.url == "/home/", response
    return client


def prove_current_phone(client: Client, flow_start: str, stage: str, phone: str) -> None:
    response = client.post(flow_start)
    assert response.status_code == 302 and response.url == stage
    client.post(stage, {"action": "sms"})
    response = client.post(stage, {"action": "verify-sms", "code": sms_code(phone)})
    assert response.status_code == 302, text(response)


def prove_current_email(client: Client, flow_start: str, stage: str, email: str) -> None:
    response = client.post(flow_start)
    assert response.status_code == 302 and response.url == stage
    client.post(stage, {"action": "send"})
    client.post(stage, {"action": "verify", "code": email_code(email)})
    response = client.post(stage, {"action": "continue"})
    assert response.status_code == 302, text(response)


def enroll_new_phone(client: Client, number: str = "202-555-0177") -> object:
    client.post(PHONE_NEW, {"action": "sms", "country_code": "1", "phone_number": number})
    return client.post(PHONE_NEW, {"action": "verify-sms", "code": sms_code(NEW_PHONE)})


def verify_new_email(client: Client, address: str) -> object:
    client.post(EMAIL_NEW, {"action": "send", "email": address})
    return client.post(EMAIL_NEW, {"action": "verify", "code": email_code(address)})


# -- the page ------------------------------------------------------------------------------


def test_page_shows_the_email_method_masked_and_this_session(email_user):
    client = signed_in_as(email_user)
    page = text(client.get(MY_ACCOUNT))
    assert "ACCOUNT INFORMATION" in page
    assert email_user.username in page
    local, _, _ = email_user.email.partition("@")
    assert f"LOGIN METHOD Email ({local[0]}***@e***.com)" in page
    assert email_user.email not in page  # masked, never the whole address
    assert "Chrome on Windows" in page and "LOGIN WITH EMAIL" in page
    assert "This browser (use Sign out to end it)" in page
    assert "Change phone number" not in page and "Use a phone number instead" in page
    assert "Change email address" in page


def test_page_shows_the_phone_method_masked(phone_user):
    client = signed_in_as(phone_user)
    page = text(client.get(MY_ACCOUNT))
    assert "LOGIN METHOD Phone (XXX-XXX-9885)" in page
    assert PHONE not in page and "555-9885" not in page
    assert "Change phone number" in page


def test_page_lists_other_sessions_and_remembered_browsers(email_user):
    signed_in_as(email_user, agent="Mozilla/5.0 (iPhone; CPU iPhone OS 17_0) Safari/604.1")
    client = signed_in_as(email_user, remember=True)
    page = text(client.get(MY_ACCOUNT))
    assert "Safari on iPhone" in page and "End session" in page
    assert "LOGIN WITH EMAIL (this browser)" in page
    entry = RememberedBrowser.objects.get(user=email_user)
    # The page shows local time (TIME_ZONE): near midnight UTC the dates differ.
    assert f"{timezone.localtime(entry.expires_at):%m/%d/%Y}" in page


def test_remembered_browsers_show_their_device_and_address(email_user):
    client = signed_in_as(email_user, remember=True)
    entry = RememberedBrowser.objects.get(user=email_user)
    assert entry.client_ip == "127.0.0.1" and entry.user_agent
    browsers = client.get(MY_ACCOUNT).content.decode().split('id="browsers-heading"')[1]
    row = text_of_html(browsers)
    assert "Chrome on Windows 127.0.0.1 LOGIN WITH EMAIL (this browser)" in row


def text_of_html(html_text: str) -> str:
    import html
    import re

    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", html_text)).split())


def test_page_needs_sign_in(client):
    response = client.get(MY_ACCOUNT)
    assert response.status_code == 302 and response.url.startswith("/?next=")


@pytest.mark.parametrize(
    ("agent", "device"),
    [
        (CHROME_WINDOWS, "Chrome on Windows"),
        ("Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) Safari/605.1", "Safari on Mac"),
        ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Firefox/120.0", "Firefox on Linux"),
        (CHROME_WINDOWS + " Edg/120.0", "Edge on Windows"),
        ("", "Unknown browser"),
        ("curl/8.0", "Unknown browser"),
    ],
)  # fmt: skip
def test_describe_device(agent, device):
    assert describe_device(agent) == device


@pytest.mark.parametrize(
    ("method", "shown"),
    [
        ("email", "LOGIN WITH EMAIL"),
        ("phone", "LOGIN WITH PHONE"),
        ("remembered-phone", "LOGIN WITH PHONE (Remember Me)"),
        ("registration-email", "LOGIN WITH EMAIL"),
        ("staff-sso", "LOGIN (Caregate staff)"),
        ("passkey", "LOGIN WITH PASSKEY"),
        ("something-new", "something-new"),  # an unknown method is shown as recorded
    ],
)
def test_describe_method(method, shown):
    assert describe_method(method) == shown


def test_a_passkey_session_is_listed_as_login_with_passkey(email_user):
    client = signed_in_as(email_user)
    other = signed_in_as(email_user, agent="Other PC")
    SignedInSession.objects.filter(session_key=other.session.session_key).update(method="passkey")
    assert "LOGIN WITH PASSKEY" in text(client.get(MY_ACCOUNT))


@pytest.mark.parametrize("allowed", [True, False])
def test_the_passkeys_link_only_where_the_deployment_offers_passkeys(
    email_user, settings, allowed
):
    client = signed_in_as(email_user)
    keys = ["email", "phone", "authenticator-app", "recovery-code"]
    settings.CAREGATE_SECOND_FACTORS = [*keys, "passkey"] if allowed else keys
    page = client.get(MY_ACCOUNT).content.decode()
    assert ('href="/account/passkeys/"' in page) is allowed
    assert client.get("/account/passkeys/").status_code == (200 if allowed else 404)


@pytest.mark.parametrize("allowed", [True, False])
def test_the_authenticator_app_only_where_the_deployment_offers_it(email_user, settings, allowed):
    client = signed_in_as(email_user)
    keys = ["email", "phone", "recovery-code", "passkey"]
    settings.CAREGATE_SECOND_FACTORS = [*keys, "authenticator-app"] if allowed else keys
    assert ("Set up authenticator app" in text(client.get(MY_ACCOUNT))) is allowed


# -- changing the phone number -----------------------------------------------------------------


def test_phone_user_changes_the_number_with_the_current_phone_again(phone_user, outbox_code):
    other = signed_in_as(phone_user, agent="Other PC")
    client = signed_in_as(phone_user, remember=True)
    assert RememberedBrowser.objects.filter(user=phone_user).exists()
    prove_current_phone(client, CHANGE_PHONE, PHONE_CURRENT, PHONE)
    response = enroll_new_phone(client)
    assert response.status_code == 302 and response.url == MY_ACCOUNT
    phone_user.refresh_from_db()
    assert phone_user.phone_number == NEW_PHONE and phone_user.mfa_method == "phone"
    assert not RememberedBrowser.objects.filter(user=phone_user).exists()
    assert other.get("/home/").status_code == 302  # the other session ended too
    notice = OutboxMessage.objects.filter(channel="email", subject__contains="New phone number")
    assert notice.get().to == phone_user.email
    assert "XXX-XXX-0177" in notice.get().body
    assert Message.objects.filter(recipient=phone_user, subject="New phone number").exists()


def test_a_session_created_from_a_remembered_browser_signs_in_again_after_the_change(
    phone_user,
):
    first = signed_in_as(phone_user, remember=True)
    client = Client(HTTP_USER_AGENT=CHROME_WINDOWS)
    client.cookies = first.cookies  # the same browser, back within the four hours
    client.session  # noqa: B018 - a session of its own for the token sign-in
    response = client.post("/login/start/", {"method": "phone", "remember_me": "on"})
    assert response.url == "/home/" and is_signed_in(client)
    prove_current_phone(client, CHANGE_PHONE, PHONE_CURRENT, PHONE)
    response = enroll_new_phone(client)
    assert response.status_code == 302 and response.url == "/"
    assert not is_signed_in(client)
    assert "Remembered browsers were ended, including this one" in text(client.get("/"))
    phone_user.refresh_from_db()
    assert phone_user.phone_number == NEW_PHONE


def test_a_full_sign_in_session_stays_signed_in_after_the_change(phone_user):
    client = signed_in_as(phone_user)
    other = signed_in_as(phone_user, agent="Other PC")
    prove_current_phone(client, CHANGE_PHONE, PHONE_CURRENT, PHONE)
    response = enroll_new_phone(client)
    assert response.status_code == 302 and response.url == MY_ACCOUNT
    page = text(client.get(MY_ACCOUNT))
    assert "Your phone number is now XXX-XXX-0177." in page
    assert "LOGIN METHOD Phone (XXX-XXX-0177)" in page
    assert is_signed_in(client)
    assert other.get("/home/").status_code == 302
    keys = SignedInSession.objects.filter(user=phone_user).values_list("session_key", flat=True)
    assert list(keys) == [client.session.session_key]


def test_the_current_phone_can_be_proved_by_call_me(phone_user):
    client = signed_in_as(phone_user)
    client.post(CHANGE_PHONE)
    page = client.post(PHONE_CURRENT, {"action": "call"})
    assert "Answer the call to XXX-XXX-9885" in text(page)
    said = answer(Client(), newest_call(PHONE), f"{shown_call_code(page)}#")
    assert said["approved"] is True
    assert client.get("/change-phone/call-status.json").json()["approved"] is True
    response = client.post(PHONE_CURRENT, {"action": "check-call"})
    assert response.status_code == 302 and response.url == PHONE_NEW
    assert enroll_new_phone(client).url == MY_ACCOUNT
    phone_user.refresh_from_db()
    assert phone_user.phone_number == NEW_PHONE


def test_email_user_switches_to_phone_with_an_email_code_first(email_user):
    client = signed_in_as(email_user)
    prove_current_email(client, CHANGE_PHONE, PHONE_CURRENT, email_user.email)
    response = enroll_new_phone(client)
    assert response.url == MY_ACCOUNT
    email_user.refresh_from_db()
    assert email_user.mfa_method == "phone" and email_user.phone_number == NEW_PHONE


def test_the_same_number_again_changes_nothing(phone_user):
    client = signed_in_as(phone_user)
    prove_current_phone(client, CHANGE_PHONE, PHONE_CURRENT, PHONE)
    client.post(PHONE_NEW, {"action": "sms", "country_code": "1", "phone_number": "202-555-9885"})
    response = client.post(PHONE_NEW, {"action": "verify-sms", "code": sms_code(PHONE)})
    assert response.url == MY_ACCOUNT
    assert "That is the number already on record for you" in text(client.get(MY_ACCOUNT))
    assert not Message.objects.filter(subject="New phone number").exists()


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("", "Please enter your Phone Number."),
        ("202-CALL-NOW", "Please enter a 10-digit phone number"),
        ("202-555-01", "Please enter a 10-digit phone number"),
        ("202-555-0177 ext 5", "extensions are not supported"),
        ("x" * 41, "Ensure this value has at most 40 characters"),
    ],
)
def test_a_bad_new_number_is_refused(phone_user, number, message):
    client = signed_in_as(phone_user)
    prove_current_phone(client, CHANGE_PHONE, PHONE_CURRENT, PHONE)
    response = client.post(
        PHONE_NEW, {"action": "sms", "country_code": "1", "phone_number": number}
    )
    assert response.status_code == 200 and message in text(response)
    assert not OutboxMessage.objects.filter(channel="sms").exclude(to=PHONE).exists()


def test_a_wrong_current_code_is_refused(phone_user):
    client = signed_in_as(phone_user)
    client.post(CHANGE_PHONE)
    client.post(PHONE_CURRENT, {"action": "sms"})
    wrong = "000000" if sms_code(PHONE) != "000000" else "111111"
    response = client.post(PHONE_CURRENT, {"action": "verify-sms", "code": wrong})
    assert "That code is not correct" in text(response)
    response = client.post(PHONE_CURRENT, {"action": "verify-sms", "code": "12ab"})
    assert response.status_code == 200
    assert client.get(PHONE_NEW).url == PHONE_CURRENT  # still on the current factor


def test_an_expired_change_starts_again_from_my_account(phone_user):
    client = signed_in_as(phone_user)
    client.post(CHANGE_PHONE)
    flowstate.edit(client.session, "change-phone", lambda raw: raw.update(expires_at=0))
    texts = OutboxMessage.objects.filter(channel="sms").count()
    response = client.post(PHONE_CURRENT, {"action": "sms"})
    assert response.url == MY_ACCOUNT
    assert "This change took too long and has expired" in text(client.get(MY_ACCOUNT))
    assert OutboxMessage.objects.filter(channel="sms").count() == texts  # nothing sent


def test_cancel_returns_to_my_account(phone_user):
    client = signed_in_as(phone_user)
    client.post(CHANGE_PHONE)
    response = client.post("/change-phone/cancel/")
    assert response.url == MY_ACCOUNT
    assert client.get(PHONE_CURRENT).status_code == 302


def test_unknown_change_is_404_and_get_is_not_allowed(email_user):
    client = signed_in_as(email_user)
    assert client.post("/setup/my-account/change/password/").status_code == 404
    assert client.get(CHANGE_PHONE).status_code == 405


# -- changing the email address ------------------------------------------------------------


def test_email_user_changes_the_address_and_both_addresses_are_told(email_user):
    old = email_user.email
    other = signed_in_as(email_user, agent="Other PC")
    client = signed_in_as(email_user)
    prove_current_email(client, CHANGE_EMAIL, EMAIL_CURRENT, old)
    response = verify_new_email(client, "New.Address@Clinic.example")
    assert response.status_code == 302 and response.url == MY_ACCOUNT
    email_user.refresh_from_db()
    assert email_user.email == "new.address@clinic.example"
    assert email_user.email_verified_at is not None
    notice = OutboxMessage.objects.get(channel="email", subject__contains="New email address")
    assert old in notice.to and "new.address@clinic.example" in notice.to
    assert other.get("/home/").status_code == 302
    assert is_signed_in(client)
    assert "Your email address is now new.address@clinic.example." in text(client.get(MY_ACCOUNT))


def test_phone_user_changes_the_email_with_the_phone_first(phone_user):
    client = signed_in_as(phone_user)
    prove_current_phone(client, CHANGE_EMAIL, EMAIL_CURRENT, PHONE)
    assert verify_new_email(client, "fresh@clinic.example").url == MY_ACCOUNT
    phone_user.refresh_from_db()
    assert phone_user.email == "fresh@clinic.example" and phone_user.mfa_method == "phone"


def test_another_accounts_address_is_refused_at_save(email_user, make_user):
    taken = make_user(mfa="email").email
    old = email_user.email
    client = signed_in_as(email_user)
    prove_current_email(client, CHANGE_EMAIL, EMAIL_CURRENT, old)
    response = verify_new_email(client, taken.upper())
    assert response.url == MY_ACCOUNT
    assert "This email address belongs to another account" in text(client.get(MY_ACCOUNT))
    email_user.refresh_from_db()
    assert email_user.email == old
    assert not OutboxMessage.objects.filter(subject__contains="New email address").exists()


@pytest.mark.parametrize(
    "address", ["", "not-an-email", "a@b", "x" * 250 + "@clinic.example", "two@@clinic.example"]
)
def test_a_bad_new_address_is_refused(email_user, address):
    client = signed_in_as(email_user)
    prove_current_email(client, CHANGE_EMAIL, EMAIL_CURRENT, email_user.email)
    sent = OutboxMessage.objects.count()
    response = client.post(EMAIL_NEW, {"action": "send", "email": address})
    assert response.status_code == 200 and "error" in response.content.decode()
    assert OutboxMessage.objects.count() == sent


def test_a_wrong_code_for_the_new_address_is_refused(email_user):
    client = signed_in_as(email_user)
    prove_current_email(client, CHANGE_EMAIL, EMAIL_CURRENT, email_user.email)
    client.post(EMAIL_NEW, {"action": "send", "email": "fresh@clinic.example"})
    wrong = "000000" if email_code("fresh@clinic.example") != "000000" else "111111"
    response = client.post(EMAIL_NEW, {"action": "verify", "code": wrong})
    assert "That code is not correct" in text(response)
    email_user.refresh_from_db()
    assert email_user.email != "fresh@clinic.example"


# -- ending sessions and remembered browsers -------------------------------------------


def test_ending_another_session_signs_that_browser_out(email_user):
    other = signed_in_as(email_user, agent="Other PC")
    client = signed_in_as(email_user)
    row = SignedInSession.objects.get(session_key=other.session.session_key)
    response = client.post("/setup/my-account/end-session/", {"id": row.pk})
    assert response.url == MY_ACCOUNT
    assert "The session was ended" in text(client.get(MY_ACCOUNT))
    assert other.get("/home/").status_code == 302
    assert client.get("/home/").status_code == 200


def test_ending_a_remembered_browser_means_that_browser_is_asked_again(email_user):
    remembered = signed_in_as(email_user, remember=True, agent="Front desk")
    entry = RememberedBrowser.objects.get(user=email_user)
    client = signed_in_as(email_user)
    assert "LOGIN WITH EMAIL" in text(client.get(MY_ACCOUNT))
    response = client.post("/setup/my-account/end-browser/", {"id": entry.pk})
    assert response.url == MY_ACCOUNT
    assert "The remembered browser was ended" in text(client.get(MY_ACCOUNT))
    assert not RememberedBrowser.objects.filter(pk=entry.pk).exists()
    back = Client(HTTP_USER_AGENT="Front desk")
    back.cookies[settings.CAREGATE_REMEMBER_COOKIE] = remembered.cookies[
        settings.CAREGATE_REMEMBER_COOKIE
    ].value
    response = back.post("/login/start/", {"method": "email", "remember_me": "on"})
    assert response.url == "/email-login/credentials/"  # the password again


@pytest.mark.parametrize("value", ["", "abc", "-1", "1.5", "٣", "9" * 30])
@pytest.mark.parametrize(
    "url", ["/setup/my-account/end-session/", "/setup/my-account/end-browser/"]
)
def test_a_bad_id_is_404(email_user, url, value):
    client = signed_in_as(email_user)
    assert client.post(url, {"id": value}).status_code == 404
    assert client.get(url).status_code == 405


# -- notices ----------------------------------------------------------------------------------


def test_a_new_remembered_browser_is_a_notice_in_the_message_center(email_user):
    client = signed_in_as(email_user, remember=True)
    message = Message.objects.get(recipient=email_user, subject="New remembered browser")
    assert "LOGIN WITH EMAIL" in message.body and "4 hours" in message.body
    page = text(client.get("/messages/"))
    assert "New remembered browser" in page
    email = OutboxMessage.objects.get(subject__contains="New remembered browser")
    assert email.to == email_user.email


def test_a_sign_in_without_remember_me_sends_no_notice(email_user):
    signed_in_as(email_user)
    assert not Message.objects.filter(subject="New remembered browser").exists()
