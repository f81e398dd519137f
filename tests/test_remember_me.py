"""Section 5 – Remember Me: four hours (absolute) without credentials or MFA on this
browser, for the same login button only; unchecking turns it off; Sign out turns it off;
any change to the account's security state voids it. The automatic logoff (idle, absolute)
keeps it: that is what it is for. A session created from the token ends with the token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from contextlib import contextmanager
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from caregate.accounts.models import User
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.flows import keys
from caregate.verification.models import RememberedBrowser
from tests.conftest import PASSWORD
from tests.phone_steps import (
    EMAIL_CREDENTIALS,
    PHONE,
    PHONE_CREDENTIALS,
    email_login,
    is_signed_in,
    phone_login,
    start,
    text,
)

pytestmark = pytest.mark.django_db

COOKIE = django_settings.CAREGATE_REMEMBER_COOKIE
HOUR = 3600


@pytest.fixture
def phone_user(make_user):
    return make_user(mfa="phone", phone=PHONE)


@contextmanager
def clock_moved(seconds: float):
    """Move the server's clocks: remember.py reads timezone.now(), the session lifetimes
    (middleware) read time.time()."""
    moment = timezone.now() + dt.timedelta(seconds=seconds)
    epoch = time.time() + seconds
    with (
        mock.patch("django.utils.timezone.now", return_value=moment),
        mock.patch("time.time", return_value=epoch),
    ):
        yield moment


def sign_out(client: Client) -> None:
    response = client.post("/logout/")
    assert response.status_code == 302
    assert not is_signed_in(client)


def idle_logoff(client: Client) -> None:
    """The session ends by time (the 30-minute idle logoff), not by the user."""
    session = client.session
    session[keys.LAST_SEEN] = int(time.time()) - django_settings.CAREGATE_IDLE_TIMEOUT_SECONDS
    session.save()
    response = client.get("/home/")
    assert response.status_code == 302 and response.url == "/"
    assert not is_signed_in(client)


def remembered(client: Client, user, *, method: str = "phone") -> Client:
    """Sign in fully with Remember Me checked; the session then ends by the idle logoff
    (the user left the PC without signing out): the token stays."""
    login = phone_login if method == "phone" else email_login
    response = login(client, user, remember=True)
    assert response.status_code == 302 and response.url == "/home/"
    assert is_signed_in(client)
    assert COOKIE in response.cookies
    idle_logoff(client)
    return client


def set_last_seen(client: Client) -> None:
    """Activity just now (by the current, possibly moved, clock)."""
    session = client.session
    session[keys.LAST_SEEN] = int(time.time())
    session.save()


def box_checked(client: Client) -> bool:
    """Whether the login page shows Remember Me checked."""
    page = client.get("/").content.decode()
    box = re.search(r'<input type="checkbox" name="remember_me"[^>]*>', page)
    assert box, page
    return " checked" in box.group(0)


def skips(client: Client, method: str = "phone") -> bool:
    """Click the button with Remember Me checked: True if it signed in straight away."""
    response = start(client, method, remember=True)
    assert response.status_code == 302
    if response.url == "/home/":
        assert is_signed_in(client)
        return True
    credentials = PHONE_CREDENTIALS if method == "phone" else EMAIL_CREDENTIALS
    assert response.url == credentials, response.url
    assert not is_signed_in(client)
    return False


def uses() -> list[str]:
    return [e.outcome for e in AuditEvent.objects.filter(event="remember.use").order_by("id")]


def sends() -> int:
    return OutboxMessage.objects.count()


# --- turning it on, and using it --------------------------------------------------------


@pytest.mark.parametrize("method", ["phone", "email"])
def test_checked_login_signs_in_fully_then_the_same_button_skips_everything(
    client, make_user, method
):
    user = make_user(mfa=method, phone=PHONE if method == "phone" else "")
    remembered(client, user, method=method)
    before = sends()
    assert skips(client, method)
    assert client.session["_auth_user_id"] == str(user.pk)
    assert client.session[keys.SIGNIN_METHOD] == f"remembered-{method}"
    assert sends() == before, "no code was sent: MFA was skipped"
    assert client.get("/home/").status_code == 200
    assert uses() == ["success"]
    signin = AuditEvent.objects.filter(event="signin").order_by("-id").first()
    assert signin.user_id_snapshot == user.pk
    assert signin.detail["method"] == f"remembered-{method}"
    # And again after the next idle logoff, as long as the four hours last.
    idle_logoff(client)
    assert skips(client, method)
    assert uses() == ["success", "success"]


@pytest.mark.parametrize(("method", "other"), [("phone", "email"), ("email", "phone")])
def test_the_other_button_asks_for_everything(client, make_user, method, other):
    user = make_user(mfa=method, phone=PHONE if method == "phone" else "")
    remembered(client, user, method=method)
    assert not skips(client, other)
    assert uses() == ["other-method"]
    # The remembered button still works.
    assert skips(client, method)


def test_without_remember_me_nothing_is_remembered(client, phone_user):
    response = phone_login(client, phone_user, remember=False)
    assert response.url == "/home/"
    assert COOKIE not in response.cookies or response.cookies[COOKIE].value == ""
    assert not RememberedBrowser.objects.exists()
    sign_out(client)
    assert not skips(client)


def test_remember_me_set_only_when_the_sign_in_completes(client, phone_user):
    start(client, "phone", remember=True)
    client.post(PHONE_CREDENTIALS, {"email": phone_user.email, "password": PASSWORD})
    assert not RememberedBrowser.objects.exists()
    assert COOKIE not in client.cookies or client.cookies[COOKIE].value == ""


def test_set_and_use_are_audited(client, phone_user):
    remembered(client, phone_user)
    [event] = AuditEvent.objects.filter(event="remember.set")
    assert event.outcome == "success"
    assert event.user_id_snapshot == phone_user.pk
    assert event.detail == {"method": "phone"}
    skips(client)
    [use] = AuditEvent.objects.filter(event="remember.use")
    assert use.outcome == "success" and use.user_id_snapshot == phone_user.pk
    token = client.cookies[COOKIE].value
    assert token not in repr(list(AuditEvent.objects.values()))


# --- the cookie and what the server keeps ------------------------------------------------


def test_cookie_is_a_browser_session_cookie(client, phone_user):
    response = phone_login(client, phone_user, remember=True)
    cookie = response.cookies[COOKIE]
    assert cookie.value
    assert cookie["expires"] == ""
    assert cookie["max-age"] == ""
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"


def test_cookie_is_secure_when_sessions_are(client, phone_user, settings):
    settings.SESSION_COOKIE_SECURE = True
    response = phone_login(client, phone_user, remember=True)
    assert response.cookies[COOKIE]["secure"] is True


def test_only_a_hash_of_the_token_is_stored(client, phone_user):
    response = phone_login(client, phone_user, remember=True)
    token = response.cookies[COOKIE].value
    assert len(token) >= 40
    entry = RememberedBrowser.objects.get()
    assert entry.user == phone_user
    assert entry.method == "phone"
    assert entry.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(RememberedBrowser.objects.values()[0])


def test_a_copy_of_the_hash_is_not_a_token(client, phone_user):
    remembered(client, phone_user)
    stolen = RememberedBrowser.objects.get().token_hash
    thief = Client()
    thief.cookies[COOKIE] = stolen
    assert not skips(thief)
    assert uses() == ["unknown"]


@pytest.mark.parametrize("value", ["", "x", "x" * 5000, "é", "\x00", "; evil=1"])
def test_forged_cookies_ask_for_everything(phone_user, value):
    browser = Client()
    browser.cookies[COOKIE] = value
    assert not skips(browser)


def test_the_cookie_works_in_a_reopened_browser(client, phone_user):
    """A browser that restores its session cookies ("continue where you left off")."""
    remembered(client, phone_user)
    reopened = Client()
    reopened.cookies[COOKIE] = client.cookies[COOKIE].value
    assert skips(reopened)


def test_a_remembered_sign_in_issues_no_new_token(client, make_user):
    user = make_user(mfa="email")
    remembered(client, user, method="email")
    first = client.cookies[COOKIE].value
    response = start(client, "email", remember=True)
    assert response.url == "/home/"
    assert client.cookies[COOKIE].value == first, "a remembered sign-in issues no new token"
    assert RememberedBrowser.objects.count() == 1


# --- turning it off -------------------------------------------------------------------------


@pytest.mark.parametrize("button", ["phone", "email"])
def test_unchecked_turns_it_off(client, phone_user, button):
    remembered(client, phone_user)
    old = client.cookies[COOKIE].value
    response = start(client, button, remember=False)
    assert response.status_code == 302
    assert response.url == (PHONE_CREDENTIALS if button == "phone" else EMAIL_CREDENTIALS)
    assert not is_signed_in(client)
    deleted = response.cookies[COOKIE]
    assert deleted.value == ""
    assert deleted["max-age"] == 0
    assert not RememberedBrowser.objects.exists(), "the token is void on the server"
    # The next sign-on asks for everything, even from a browser that kept the old cookie.
    assert not skips(client)
    kept = Client()
    kept.cookies[COOKIE] = old
    assert not skips(kept)


# --- Sign out turns it off; the automatic logoff does not --------------------------------


def expect_turned_off(client: Client, response) -> None:
    deleted = response.cookies[COOKIE]
    assert deleted.value == "" and deleted["max-age"] == 0, "the cookie is deleted"
    assert not RememberedBrowser.objects.exists(), "the token is void on the server"
    assert not box_checked(client)
    assert not skips(client), "the same button asks for the password"


@pytest.mark.parametrize("method", ["phone", "email"])
def test_sign_out_of_a_remembered_session_turns_it_off(client, make_user, method):
    user = make_user(mfa=method, phone=PHONE if method == "phone" else "")
    remembered(client, user, method=method)
    assert skips(client, method)
    response = client.post("/logout/")
    assert response.status_code == 302 and response.url == "/"
    assert not is_signed_in(client)
    expect_turned_off(client, response)


def test_sign_out_right_after_the_full_sign_in_turns_it_off(client, phone_user):
    phone_login(client, phone_user, remember=True)
    assert RememberedBrowser.objects.count() == 1
    response = client.post("/logout/")
    expect_turned_off(client, response)
    assert AuditEvent.objects.filter(event="signout", outcome="success").count() == 1


def test_sign_out_without_remember_me_sets_no_cookie(client, phone_user):
    phone_login(client, phone_user, remember=False)
    response = client.post("/logout/")
    assert COOKIE not in response.cookies


def test_the_idle_logoff_keeps_it(client, phone_user):
    remembered(client, phone_user)  # ended by the idle logoff
    assert AuditEvent.objects.filter(event="session.timeout", outcome="idle").count() == 1
    assert box_checked(client)
    assert skips(client)


def test_the_absolute_logoff_keeps_it(client, phone_user, settings):
    settings.CAREGATE_SESSION_MAX_SECONDS = HOUR
    phone_login(client, phone_user, remember=True)
    with clock_moved(HOUR + 1):
        set_last_seen(client)  # active until the end: not idle
        response = client.get("/home/")
        assert response.status_code == 302 and not is_signed_in(client)
        assert AuditEvent.objects.filter(event="session.timeout", outcome="absolute").exists()
        assert box_checked(client)
        assert skips(client)


# --- the login page's box shows a token the server honours ------------------------------------


def test_box_checked_for_a_remembered_browser(client, phone_user):
    remembered(client, phone_user)
    response = client.get("/")
    assert COOKIE not in response.cookies, "a valid cookie is left alone"
    assert box_checked(client)


# --- four hours, absolute ---------------------------------------------------------------------


def test_four_hours_by_default(client, phone_user, settings):
    assert settings.CAREGATE_REMEMBER_ME_SECONDS == 4 * HOUR
    remembered(client, phone_user)
    entry = RememberedBrowser.objects.get()
    assert (entry.expires_at - entry.created_at).total_seconds() == 4 * HOUR


def test_still_remembered_just_before_four_hours(client, phone_user):
    remembered(client, phone_user)
    with clock_moved(4 * HOUR - 60):
        assert skips(client)


def test_after_four_hours_asks_for_everything(client, phone_user):
    remembered(client, phone_user)
    with clock_moved(4 * HOUR + 1):
        assert not skips(client)
    assert uses() == ["expired"]
    assert not RememberedBrowser.objects.exists()
    # Back in the present the token stays void.
    assert not skips(client)


def test_absolute_not_sliding(client, phone_user):
    remembered(client, phone_user)
    with clock_moved(3 * HOUR):
        assert skips(client)
        idle_logoff(client)
    with clock_moved(4 * HOUR + 60):
        assert not skips(client)
    assert uses() == ["success", "expired"]


def test_lifetime_follows_the_setting(client, phone_user, settings):
    settings.CAREGATE_REMEMBER_ME_SECONDS = 2 * HOUR
    remembered(client, phone_user)
    with clock_moved(2 * HOUR - 60):
        assert skips(client)
        idle_logoff(client)
    with clock_moved(2 * HOUR + 1):
        assert not skips(client)


def test_after_expiry_a_new_full_sign_in_starts_a_new_four_hours(client, phone_user):
    remembered(client, phone_user)
    with clock_moved(4 * HOUR + 60):
        remembered(client, phone_user)  # asked for everything, Remember Me checked again
    with clock_moved(8 * HOUR):
        assert skips(client)
        idle_logoff(client)
    with clock_moved(8 * HOUR + 120):
        assert not skips(client)


# --- the account changes: void at once ------------------------------------------------------


def change_password(user: User) -> None:
    user.set_password("A-brand-new-password-2026")
    user.save()


def reset_mfa(user: User) -> None:
    user.mfa_method = User.MfaMethod.NONE
    user.phone_number = ""
    user.mfa_registered_at = None
    user.save()


def new_phone(user: User) -> None:
    user.phone_number = "+12025550177"
    user.save()


def new_registration(user: User) -> None:
    user.mfa_registered_at = timezone.now() + dt.timedelta(seconds=5)
    user.save()


def disable(user: User) -> None:
    user.is_active = False
    user.save()


@pytest.mark.parametrize(
    "change", [change_password, reset_mfa, new_phone, new_registration, disable]
)
def test_security_changes_void_it(client, phone_user, change):
    remembered(client, phone_user)
    change(User.objects.get(pk=phone_user.pk))
    assert not skips(client)
    assert uses() == ["security-state-changed"]
    assert not RememberedBrowser.objects.exists()


def test_re_enabling_the_account_does_not_revive_it(client, phone_user):
    remembered(client, phone_user)
    disable(phone_user)
    assert not skips(client)
    phone_user.is_active = True
    phone_user.save()
    assert not skips(client)


def test_unrelated_changes_keep_it(client, phone_user):
    remembered(client, phone_user)
    phone_user.first_name = "Robin"
    phone_user.last_login = timezone.now()
    phone_user.save()
    assert skips(client)


def test_a_disabled_account_is_not_signed_in_by_its_token(client, phone_user):
    remembered(client, phone_user)
    User.objects.filter(pk=phone_user.pk).update(is_active=False)
    response = start(client, "phone", remember=True)
    assert response.url == PHONE_CREDENTIALS
    assert not is_signed_in(client)
    assert client.get("/home/").status_code == 302


# --- a stale cookie: the box is not checked, and the cookie is cleared ---------------------


def token_expired(user: User) -> None:
    RememberedBrowser.objects.update(expires_at=timezone.now() - dt.timedelta(seconds=1))


def row_deleted(user: User) -> None:
    RememberedBrowser.objects.all().delete()


@pytest.mark.parametrize(
    "spoil", [token_expired, row_deleted, change_password, reset_mfa, disable]
)
def test_a_cookie_the_server_no_longer_honours_leaves_the_box_unchecked(client, phone_user, spoil):
    remembered(client, phone_user)
    spoil(User.objects.get(pk=phone_user.pk))
    response = client.get("/")
    assert not box_checked(client)
    deleted = response.cookies[COOKIE]
    assert deleted.value == "" and deleted["max-age"] == 0
    assert not RememberedBrowser.objects.exists()
    assert COOKIE not in client.cookies or client.cookies[COOKIE].value == ""


def test_no_cookie_no_box_and_no_set_cookie(client):
    response = client.get("/")
    assert COOKIE not in response.cookies
    assert not box_checked(client)


# --- a session created from the token ends with the token ----------------------------------


def test_the_remembered_session_is_bound_to_its_token(client, phone_user):
    remembered(client, phone_user)
    assert skips(client)
    entry = RememberedBrowser.objects.get()
    session = client.session
    assert session[keys.REMEMBERED_BY] == entry.token_hash
    assert session[keys.REMEMBER_UNTIL] == int(entry.expires_at.timestamp())


def test_a_remembered_session_ends_at_the_tokens_four_hours(client, phone_user):
    remembered(client, phone_user)
    with clock_moved(3 * HOUR):
        assert skips(client)
    # Active every 20 minutes: never idle, far inside the 12-hour lifetime.
    for minutes in range(3 * 60 + 20, 4 * 60, 20):
        with clock_moved(minutes * 60):
            set_last_seen(client)
            assert client.get("/home/").status_code == 200
    with clock_moved(4 * HOUR + 1):
        set_last_seen(client)
        response = client.get("/home/", follow=True)
        assert not is_signed_in(client)
        assert "Your session has ended. Please sign in again." in text(response)
        event = AuditEvent.objects.filter(event="session.timeout").latest("id")
        assert event.outcome == "remember-expired" and event.user_id_snapshot == phone_user.pk
        # And the expired token asks for everything.
        assert not box_checked(client)
        assert not skips(client)


def test_the_full_sign_in_that_set_the_token_keeps_the_normal_lifetime(client, phone_user):
    phone_login(client, phone_user, remember=True)
    assert keys.REMEMBER_UNTIL not in client.session
    for hours in (1, 3, 5, 8, 11):
        with clock_moved(hours * HOUR):
            set_last_seen(client)
            assert client.get("/home/").status_code == 200, f"signed out after {hours} h"
    with clock_moved(12 * HOUR + 1):
        set_last_seen(client)
        assert client.get("/home/").status_code == 302
    assert AuditEvent.objects.get(event="session.timeout").outcome == "absolute"


def test_a_remembered_session_ends_when_its_token_is_voided(client, phone_user):
    remembered(client, phone_user)
    assert skips(client)
    reset_mfa(User.objects.get(pk=phone_user.pk))  # does not end sessions by itself
    response = client.get("/home/")
    assert response.status_code == 302 and not is_signed_in(client)
    event = AuditEvent.objects.filter(event="session.timeout").latest("id")
    assert event.outcome == "remember-ended"


def test_a_remembered_email_button_stops_skipping_when_aal2_turns_email_off(
    client, email_user, settings
):
    """Remembered for LOGIN WITH EMAIL, then the deployment switches to the aal2 profile
    (email is no second factor there): the token no longer skips the prompts."""
    remembered(client, email_user, method="email")
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    assert not skips(client, "email")
    assert uses()[-1] == "factor-off"


def test_a_remembered_phone_button_still_skips_under_aal2(client, phone_user, settings):
    remembered(client, phone_user)
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    assert skips(client, "phone")
