"""Attacks on Remember Me and the sessions it creates (Section 5).

The shared front-desk PC: after Sign out the next person must be asked for the password.
A copied cookie: worthless once its owner signed out, and a session opened with it ends
when the token ends. A session created from a token never outlives that token, and stays
bound to the one token (and user) it was created from.
"""

from __future__ import annotations

import datetime as dt
import re
import time

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from caregate.audit.models import AuditEvent
from caregate.flows import keys
from caregate.verification.models import RememberedBrowser
from tests.phone_steps import EMAIL_CREDENTIALS, email_login, is_signed_in, start, text

pytestmark = pytest.mark.django_db

COOKIE = django_settings.CAREGATE_REMEMBER_COOKIE
HOUR = 3600


def box_checked(client: Client) -> bool:
    page = client.get("/").content.decode()
    box = re.search(r'<input type="checkbox" name="remember_me"[^>]*>', page)
    assert box, page
    return " checked" in box.group(0)


def idle_logoff(client: Client) -> None:
    session = client.session
    session[keys.LAST_SEEN] = int(time.time()) - django_settings.CAREGATE_IDLE_TIMEOUT_SECONDS
    session.save()
    assert client.get("/home/").status_code == 302
    assert not is_signed_in(client)


def remembered_browser(user) -> Client:
    """A browser that signed in fully with Remember Me and was then logged off for
    idleness: it holds a live token."""
    browser = Client()
    response = email_login(browser, user, remember=True)
    assert response.url == "/home/"
    idle_logoff(browser)
    return browser


def one_click(client: Client) -> bool:
    """LOGIN WITH EMAIL with the box checked: True if it signed in with no prompt."""
    response = start(client, "email", remember=True)
    assert response.status_code == 302
    if response.url == "/home/":
        return True
    assert response.url == EMAIL_CREDENTIALS
    assert not is_signed_in(client)
    return False


def client_is_refused(client: Client) -> bool:
    response = client.get("/home/")
    return response.status_code == 302 and not is_signed_in(client)


def copy_of(browser: Client) -> Client:
    thief = Client()
    thief.cookies[COOKIE] = browser.cookies[COOKIE].value
    return thief


def test_shared_pc_after_sign_out_the_next_person_is_asked_for_the_password(make_user):
    front_desk = remembered_browser(make_user(mfa="email"))
    assert one_click(front_desk)
    front_desk.post("/logout/")
    # The next person at the same browser: the box is not pre-checked, and ticking it
    # and clicking the same button asks for the password.
    assert not box_checked(front_desk)
    assert not one_click(front_desk)
    assert client_is_refused(front_desk)


def test_shared_pc_sign_out_right_after_the_full_sign_in(make_user):
    front_desk = Client()
    email_login(front_desk, make_user(mfa="email"), remember=True)
    front_desk.post("/logout/")
    assert not RememberedBrowser.objects.exists()
    assert not one_click(front_desk)


def test_a_cookie_copied_before_sign_out_is_refused_after_it(make_user):
    owner = remembered_browser(make_user(mfa="email"))
    thief = copy_of(owner)
    assert one_click(owner)
    owner.post("/logout/")
    assert not one_click(thief)
    assert AuditEvent.objects.filter(event="remember.use").latest("id").outcome == "unknown"


def test_a_session_opened_with_a_copied_cookie_ends_when_the_owner_signs_out(make_user):
    user = make_user(mfa="email")
    owner = remembered_browser(user)
    thief = copy_of(owner)
    assert one_click(thief)
    assert thief.get("/home/").status_code == 200
    assert one_click(owner)
    owner.post("/logout/")
    assert client_is_refused(thief)
    event = AuditEvent.objects.filter(event="session.timeout").latest("id")
    assert event.outcome == "remember-ended" and event.user_id_snapshot == user.pk


def test_a_remembered_session_past_the_tokens_expiry_is_logged_off(make_user, monkeypatch):
    user = make_user(mfa="email")
    browser = remembered_browser(user)
    entry = RememberedBrowser.objects.get()
    assert one_click(browser)
    # The attacker keeps the session busy (never idle) past the token's four hours.
    past = entry.expires_at.timestamp() + 1
    monkeypatch.setattr(time, "time", lambda: past)
    session = browser.session
    session[keys.LAST_SEEN] = int(past)
    session.save()
    response = browser.get("/home/", follow=True)
    assert not is_signed_in(browser)
    assert "Your session has ended. Please sign in again." in text(response)
    assert AuditEvent.objects.filter(event="session.timeout").latest("id").outcome == (
        "remember-expired"
    )


def test_a_remembered_session_cannot_be_kept_alive_by_editing_the_token_expiry(make_user):
    """Moving expires_at forward on the row after the sign-in does not move the session's
    end (it was fixed at the sign-in), so a later change cannot lengthen a live session."""
    browser = remembered_browser(make_user(mfa="email"))
    assert one_click(browser)
    until = browser.session[keys.REMEMBER_UNTIL]
    RememberedBrowser.objects.update(expires_at=timezone.now() + dt.timedelta(days=30))
    assert browser.get("/home/").status_code == 200
    assert browser.session[keys.REMEMBER_UNTIL] == until


def test_swapping_in_another_users_cookie_neither_extends_nor_switches_the_session(make_user):
    alice, bob = make_user(mfa="email"), make_user(mfa="email")
    attacker = remembered_browser(alice)
    bobs_browser = remembered_browser(bob)
    assert one_click(attacker)
    # The attacker plants Bob's (valid) token in the signed-in browser.
    attacker.cookies[COOKIE] = bobs_browser.cookies[COOKIE].value
    assert attacker.get("/home/").status_code == 200
    assert attacker.session["_auth_user_id"] == str(alice.pk), "still Alice, not Bob"
    # Alice's token ends (signed out in another browser holding it): the session ends,
    # although the browser now holds a valid token of someone else.
    alice_token = RememberedBrowser.objects.get(user=alice)
    alice_token.delete()
    assert client_is_refused(attacker)


def test_a_session_bound_to_another_users_token_is_refused(make_user):
    """Even if a session named another user's live token, it is not kept alive by it."""
    alice, bob = make_user(mfa="email"), make_user(mfa="email")
    remembered_browser(bob)
    browser = remembered_browser(alice)
    assert one_click(browser)
    session = browser.session
    session[keys.REMEMBERED_BY] = RememberedBrowser.objects.get(user=bob).token_hash
    session.save()
    assert client_is_refused(browser)


def test_a_stale_cookie_does_not_pre_check_the_box_and_is_cleared(make_user):
    browser = remembered_browser(make_user(mfa="email"))
    RememberedBrowser.objects.all().delete()  # e.g. voided, or signed out elsewhere
    response = browser.get("/")
    assert response.cookies[COOKIE].value == ""
    assert response.cookies[COOKIE]["max-age"] == 0
    assert not box_checked(browser)


@pytest.mark.parametrize("value", ["forged", "x" * 5000, RememberedBrowser.__name__])
def test_a_forged_cookie_does_not_pre_check_the_box(value):
    browser = Client()
    browser.cookies[COOKIE] = value
    assert not box_checked(browser)


def test_a_cross_site_sign_out_cannot_wipe_the_token(make_user):
    """Sign out is a POST with a CSRF token: a forged form elsewhere changes nothing."""
    user = make_user(mfa="email")
    browser = remembered_browser(user)
    csrf_browser = Client(enforce_csrf_checks=True)
    csrf_browser.cookies[COOKIE] = browser.cookies[COOKIE].value
    assert csrf_browser.post("/logout/").status_code == 403
    assert csrf_browser.get("/logout/").status_code == 405
    assert RememberedBrowser.objects.filter(user=user).count() == 1
