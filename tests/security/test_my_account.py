"""Attacks on Setup → My Account: changing the phone number or email without the current
second factor (by URL, by replay, by two requests at once), finishing a change in a
session whose user signed out or is someone else, ending another user's session or
remembered browser by editing the id, and telling which addresses have accounts."""

from __future__ import annotations

import threading
from importlib import import_module

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from caregate.accounts.models import SignedInSession
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.flows import keys
from caregate.verification.models import RememberedBrowser
from tests.phone_steps import PHONE, is_signed_in, sms_code, text
from tests.test_my_account import (
    CHANGE_EMAIL,
    CHANGE_PHONE,
    EMAIL_CURRENT,
    EMAIL_NEW,
    MY_ACCOUNT,
    NEW_PHONE,
    PHONE_CURRENT,
    PHONE_NEW,
    enroll_new_phone,
    prove_current_email,
    prove_current_phone,
    signed_in_as,
    verify_new_email,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


@pytest.fixture
def phone_user(make_user):
    return make_user(mfa="phone", phone=PHONE)


def put_back_pointers(client: Client, pointers: dict) -> None:
    """What a stale write of the session does: a session holding these flow pointers."""
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    store[keys.FLOWS] = pointers
    store.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = store.session_key


def phone_changes() -> int:
    return AuditEvent.objects.filter(event="account.phone", outcome="changed").count()


# -- skipping the current factor -------------------------------------------------------


def test_new_number_stage_by_url_before_the_current_factor_is_refused(phone_user):
    client = signed_in_as(phone_user)
    client.post(CHANGE_PHONE)
    assert client.get(PHONE_NEW).url == PHONE_CURRENT
    response = client.post(
        PHONE_NEW, {"action": "sms", "country_code": "1", "phone_number": "202-555-0177"}
    )
    assert response.status_code == 302 and response.url == PHONE_CURRENT
    assert not OutboxMessage.objects.filter(to=NEW_PHONE).exists()
    phone_user.refresh_from_db()
    assert phone_user.phone_number == PHONE


def test_a_stage_url_without_starting_the_change_is_refused(phone_user):
    client = signed_in_as(phone_user)
    for url in (PHONE_CURRENT, PHONE_NEW, EMAIL_NEW):
        response = client.post(url, {"action": "verify-sms", "code": "123456"})
        assert response.status_code == 302 and response.url == MY_ACCOUNT


def test_a_phone_users_current_factor_cannot_be_an_email_code(phone_user):
    client = signed_in_as(phone_user)
    client.post(CHANGE_PHONE)
    sent = OutboxMessage.objects.count()
    client.post(PHONE_CURRENT, {"action": "send"})  # the email stage's button
    client.post(PHONE_CURRENT, {"action": "continue"})
    assert OutboxMessage.objects.count() == sent
    assert client.get(PHONE_NEW).url == PHONE_CURRENT


def test_the_change_cannot_be_started_by_a_signed_out_browser(phone_user):
    response = Client().post(CHANGE_PHONE)
    assert response.status_code == 302 and response.url.startswith("/?next=")


def test_the_change_cannot_be_started_by_a_cross_site_form(phone_user):
    client = signed_in_as(phone_user)
    client.handler.enforce_csrf_checks = True
    assert client.post(CHANGE_PHONE).status_code == 403


# -- replay and two requests at once -------------------------------------------------------


def test_replaying_the_last_step_changes_nothing_more(phone_user):
    client = signed_in_as(phone_user)
    prove_current_phone(client, CHANGE_PHONE, PHONE_CURRENT, PHONE)
    client.post(PHONE_NEW, {"action": "sms", "country_code": "1", "phone_number": "202-555-0177"})
    code = sms_code(NEW_PHONE)
    assert client.post(PHONE_NEW, {"action": "verify-sms", "code": code}).url == MY_ACCOUNT
    phone_user.phone_number = PHONE  # put the old number back, as if changed by the help desk
    phone_user.save()
    response = client.post(PHONE_NEW, {"action": "verify-sms", "code": code})
    assert response.status_code == 302 and response.url == MY_ACCOUNT
    assert "Please start again from My Account." in text(client.get(MY_ACCOUNT))
    phone_user.refresh_from_db()
    assert phone_user.phone_number == PHONE
    assert phone_changes() == 1


@pytest.mark.django_db(transaction=True)
def test_two_last_steps_at_once_change_the_number_once(phone_user):
    first = signed_in_as(phone_user)
    prove_current_phone(first, CHANGE_PHONE, PHONE_CURRENT, PHONE)
    first.post(PHONE_NEW, {"action": "sms", "country_code": "1", "phone_number": "202-555-0177"})
    code = sms_code(NEW_PHONE)
    second = Client()
    second.cookies = first.cookies
    barrier = threading.Barrier(2)
    responses = []

    def post(client):
        barrier.wait()
        try:
            responses.append(client.post(PHONE_NEW, {"action": "verify-sms", "code": code}))
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=post, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(responses) == 2
    assert phone_changes() == 1
    assert OutboxMessage.objects.filter(subject__contains="New phone number").count() == 1


# -- a session whose user changed meanwhile ------------------------------------------------


def test_a_change_finished_after_the_user_signed_out_is_refused(phone_user):
    client = signed_in_as(phone_user)
    prove_current_phone(client, CHANGE_PHONE, PHONE_CURRENT, PHONE)
    pointers = client.session[keys.FLOWS]
    client.post("/logout/")
    put_back_pointers(client, pointers)  # the signed-out browser, the old pointer restored
    response = enroll_new_phone(client)
    assert response.status_code == 302 and response.url == "/"
    phone_user.refresh_from_db()
    assert phone_user.phone_number == PHONE
    assert not is_signed_in(client)
    assert AuditEvent.objects.filter(event="account.change", outcome="refused").exists()


def test_a_change_begun_for_another_user_is_refused(phone_user, make_user):
    victim = phone_user
    attacker = make_user(mfa="phone", phone="+12025550188")
    victims_browser = signed_in_as(victim)
    prove_current_phone(victims_browser, CHANGE_PHONE, PHONE_CURRENT, PHONE)
    client = signed_in_as(attacker)
    session = client.session  # the victim's flow instance, pointed at from this session
    session[keys.FLOWS] = victims_browser.session[keys.FLOWS]
    session.save()
    response = enroll_new_phone(client)
    assert response.url == MY_ACCOUNT
    assert "You have signed in again since this change began" in text(client.get(MY_ACCOUNT))
    victim.refresh_from_db()
    attacker.refresh_from_db()
    assert victim.phone_number == PHONE and attacker.phone_number == "+12025550188"


def test_a_change_is_refused_when_the_account_changed_meanwhile(phone_user):
    client = signed_in_as(phone_user)
    prove_current_phone(client, CHANGE_PHONE, PHONE_CURRENT, PHONE)
    phone_user.email = "changed.meanwhile@clinic.example"  # another tab's change
    phone_user.save()
    assert enroll_new_phone(client).url == MY_ACCOUNT
    assert "Your account changed while this page was open" in text(client.get(MY_ACCOUNT))
    phone_user.refresh_from_db()
    assert phone_user.phone_number == PHONE


def test_a_change_is_refused_for_a_deactivated_account(phone_user):
    client = signed_in_as(phone_user)
    prove_current_phone(client, CHANGE_PHONE, PHONE_CURRENT, PHONE)
    phone_user.is_active = False
    phone_user.save()
    enroll_new_phone(client)
    phone_user.refresh_from_db()
    assert phone_user.phone_number == PHONE


# -- the owner hears of every change -------------------------------------------------------


def test_the_old_address_is_told_when_someone_changes_the_email(phone_user):
    """Someone with the password and the phone moves the account to their own mailbox:
    the owner's address still gets the notice."""
    old = phone_user.email
    client = signed_in_as(phone_user)
    prove_current_phone(client, CHANGE_EMAIL, EMAIL_CURRENT, PHONE)
    verify_new_email(client, "attacker@elsewhere.example")
    notice = OutboxMessage.objects.get(subject__contains="New email address")
    assert old in notice.to
    assert "If you did not make this change, call the help desk" in notice.body


def test_the_change_voids_every_remembered_browser(phone_user):
    signed_in_as(phone_user, remember=True, agent="Attacker PC")
    client = signed_in_as(phone_user)
    prove_current_phone(client, CHANGE_EMAIL, EMAIL_CURRENT, PHONE)
    verify_new_email(client, "fresh@clinic.example")
    assert not RememberedBrowser.objects.filter(user=phone_user).exists()
    assert list(SignedInSession.objects.filter(user=phone_user)) == [
        SignedInSession.objects.get(session_key=client.session.session_key)
    ]


# -- ids edited in the end forms ---------------------------------------------------------


def test_another_users_session_id_is_404_and_nothing_ends(email_user, make_user):
    victim = signed_in_as(make_user(mfa="email"))
    client = signed_in_as(email_user)
    victims_row = SignedInSession.objects.get(session_key=victim.session.session_key)
    response = client.post(f"{MY_ACCOUNT}end-session/", {"id": victims_row.pk})
    assert response.status_code == 404
    assert victim.get("/home/").status_code == 200
    assert SignedInSession.objects.filter(pk=victims_row.pk).exists()


def test_another_users_remembered_browser_id_is_404_and_nothing_ends(email_user, make_user):
    other = make_user(mfa="email")
    signed_in_as(other, remember=True)
    entry = RememberedBrowser.objects.get(user=other)
    client = signed_in_as(email_user)
    assert client.post(f"{MY_ACCOUNT}end-browser/", {"id": entry.pk}).status_code == 404
    assert RememberedBrowser.objects.filter(pk=entry.pk).exists()


def test_this_sessions_own_id_is_404_and_it_stays_signed_in(email_user):
    client = signed_in_as(email_user)
    own = SignedInSession.objects.get(session_key=client.session.session_key)
    assert client.post(f"{MY_ACCOUNT}end-session/", {"id": own.pk}).status_code == 404
    assert client.get("/home/").status_code == 200


def test_the_end_forms_refuse_a_cross_site_post(email_user):
    other = signed_in_as(email_user, agent="Other PC")
    client = signed_in_as(email_user)
    client.handler.enforce_csrf_checks = True
    row = SignedInSession.objects.get(session_key=other.session.session_key)
    assert client.post(f"{MY_ACCOUNT}end-session/", {"id": row.pk}).status_code == 403
    assert other.get("/home/").status_code == 200


# -- enumeration -------------------------------------------------------------------------------


def test_the_new_address_page_is_the_same_for_a_taken_and_a_free_address(email_user, make_user):
    taken = make_user(mfa="email").email
    pages = []
    for address in (taken, "nobody.has.this@clinic.example"):
        client = signed_in_as(email_user)
        prove_current_email(client, CHANGE_EMAIL, EMAIL_CURRENT, email_user.email)
        response = client.post(EMAIL_NEW, {"action": "send", "email": address})
        pages.append(text(response).replace(address, "ADDRESS"))
        assert OutboxMessage.objects.filter(to=address, channel="email").exists()
    strip = [" ".join(w for w in page.split() if not w[:1].isdigit()) for page in pages]
    assert strip[0] == strip[1]


def test_a_reset_registration_landing_just_before_the_save_is_not_overwritten(
    phone_user, monkeypatch
):
    """Raised by the attacker review: an administrator's Reset Registration that commits
    between the change's last read of the account and its write must win."""
    from caregate.accounts.models import User
    from caregate.flows import change_phone

    client = signed_in_as(phone_user)
    prove_current_phone(client, CHANGE_PHONE, PHONE_CURRENT, PHONE)
    real_owner = change_phone.owner

    def owner_then_reset(request, state):
        found = real_owner(request, state)
        User.objects.filter(pk=phone_user.pk).update(mfa_method="none", phone_number="")
        return found

    monkeypatch.setattr(change_phone, "owner", owner_then_reset)
    enroll_new_phone(client)
    phone_user.refresh_from_db()
    assert phone_user.mfa_method == "none"
    assert phone_user.phone_number == ""
