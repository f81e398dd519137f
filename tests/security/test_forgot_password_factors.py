"""Attacks on the stronger factor of Forgot password (issue #11): the factor step skipped
by URL or by an edited state, a passkey of another user, a proof from another attempt,
the factor removed or replaced meanwhile, a stronger one added meanwhile, and two
requests at once."""

from __future__ import annotations

import threading

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.factors.models import AuthenticatorApp
from caregate.flows.forgot_password import FORGOT_PASSWORD, NAME
from caregate.flows.stages import new_password as stage_module
from caregate.passkeys import ceremony
from caregate.passkeys.models import Passkey
from tests import flowstate
from tests import passkey_steps as steps
from tests.factor_steps import app_code, give_app
from tests.test_forgot_password import (
    NEW,
    NEW_PASSWORD,
    PHONE,
    is_signed_in,
    new_password,
    verify_email,
)
from tests.test_forgot_password_factors import FACTOR, give_passkey, prove_app, prove_passkey

pytestmark = pytest.mark.django_db

OTHER = "Another-Brand-New-Passphrase-88"


@pytest.fixture(autouse=True)
def no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


@pytest.fixture
def phone_user(make_user):
    return make_user(mfa="phone")


def unchanged(user) -> bool:
    user.refresh_from_db()
    return not user.check_password(NEW) and not user.check_password(OTHER)


def refused_resets() -> int:
    return AuditEvent.objects.filter(event="password.reset", outcome="refused").count()


def at_password_page(client: Client, user, device) -> None:
    assert verify_email(client, user).url == FACTOR
    assert prove_passkey(client, device).url == NEW_PASSWORD


# --- skipping the factor ------------------------------------------------------------------


@pytest.mark.parametrize("mfa", ["email", "phone"])
def test_the_factor_step_cannot_be_skipped_by_url(client: Client, make_user, mfa) -> None:
    user = make_user(mfa=mfa)
    give_passkey(user)
    verify_email(client, user)
    for url in (NEW_PASSWORD, PHONE):
        assert client.get(url).url == FACTOR
    response = new_password(client)
    assert response.status_code == 302 and response.url == FACTOR
    assert unchanged(user) and not is_signed_in(client)


def test_the_phone_does_not_stand_in_for_the_passkey(client: Client, phone_user) -> None:
    """A state that skips the factor step (noted as none, or moved on to the password
    stage): the password stage re-reads the account and refuses."""
    give_passkey(phone_user)
    verify_email(client, phone_user)

    def skip(raw: dict) -> None:
        raw["data"]["reset_factor"] = ""
        raw["data"]["phone_verified"] = phone_user.phone_number  # as if the phone passed
        raw["reached"] = FORGOT_PASSWORD.index_of("password")

    flowstate.edit(client.session, NAME, skip)
    response = new_password(client)
    assert response.status_code == 302 and response.url == "/"
    assert unchanged(phone_user) and not is_signed_in(client)


def test_a_proof_of_the_app_does_not_stand_in_for_the_passkey(client, email_user) -> None:
    give_passkey(email_user)
    verify_email(client, email_user)

    def claim_app(raw: dict) -> None:
        raw["data"]["reset_factor_proven"] = "authenticator-app"
        raw["reached"] = FORGOT_PASSWORD.index_of("password")

    flowstate.edit(client.session, NAME, claim_app)
    assert new_password(client).url == "/"
    assert unchanged(email_user)


# --- another user's factor, another attempt's proof -----------------------------------------


def test_a_passkey_of_another_user_is_refused(client: Client, make_user) -> None:
    victim, attacker = make_user(mfa="email"), make_user(mfa="email")
    give_passkey(victim)
    own = give_passkey(attacker, "Attacker's key")
    verify_email(client, victim)
    response = prove_passkey(client, own)
    assert response.status_code == 200
    assert "That passkey could not be used" in steps.page_text(response)
    assert client.get(NEW_PASSWORD).url == FACTOR
    assert unchanged(victim)
    assert Passkey.objects.get(user=attacker).sign_count == 0  # nothing counted


def test_a_stage_naming_another_user_is_no_proof(client, make_user, monkeypatch) -> None:
    """Should the ceremony ever answer with another account, the reset does not go on."""
    victim, other = make_user(mfa="email"), make_user(mfa="email")
    device = give_passkey(victim)
    theirs = give_passkey(other)
    monkeypatch.setattr(
        ceremony,
        "authenticate",
        lambda *args, **kwargs: ceremony.Assertion(Passkey.objects.get(user=other), other),
    )
    verify_email(client, victim)
    response = prove_passkey(client, device)
    assert response.status_code == 302 and response.url == "/"
    assert AuditEvent.objects.filter(event="password.reset.factor", outcome="other-user")
    assert unchanged(victim) and theirs


def test_an_assertion_for_another_attempt_is_refused(client: Client, email_user) -> None:
    device = give_passkey(email_user)
    verify_email(client, email_user)
    earlier = device.get(steps.options(client.get(FACTOR)))  # not posted
    verify_email(client, email_user)  # a new attempt: a new instance, a new challenge
    response = steps.post_assertion(client, FACTOR, earlier)
    assert response.status_code == 200 and client.get(NEW_PASSWORD).url == FACTOR
    assert unchanged(email_user)


def test_a_used_assertion_does_not_prove_a_second_reset(client: Client, email_user) -> None:
    device = give_passkey(email_user)
    verify_email(client, email_user)
    credential = device.get(steps.options(client.get(FACTOR)))
    assert steps.post_assertion(client, FACTOR, credential).url == NEW_PASSWORD
    verify_email(client, email_user)
    assert steps.post_assertion(client, FACTOR, credential).status_code == 200
    assert client.get(NEW_PASSWORD).url == FACTOR


# --- the factor changed meanwhile ----------------------------------------------------------------


def test_the_passkey_removed_after_its_proof(client: Client, email_user) -> None:
    device = give_passkey(email_user)
    at_password_page(client, email_user, device)
    Passkey.objects.filter(user=email_user).delete()
    give_passkey(email_user, "Another one")  # still has a passkey, not the one proven
    assert new_password(client).url == "/"
    assert unchanged(email_user) and not is_signed_in(client)


def test_the_passkey_removed_before_its_step(client: Client, phone_user) -> None:
    give_passkey(phone_user)
    verify_email(client, phone_user)
    Passkey.objects.filter(user=phone_user).delete()
    response = client.get(FACTOR)
    assert response.status_code == 302 and response.url == "/"
    assert AuditEvent.objects.filter(event="password.reset.factor", outcome="changed")
    assert unchanged(phone_user)


def test_the_app_replaced_after_its_proof(client: Client, email_user) -> None:
    secret = give_app(email_user)
    verify_email(client, email_user)
    assert prove_app(client, secret).url == NEW_PASSWORD
    AuthenticatorApp.objects.filter(user=email_user).delete()
    give_app(email_user)  # a new app (a new row): the proof was of the old one
    assert new_password(client).url == "/"
    assert unchanged(email_user)


def test_a_passkey_added_after_the_email_step_must_be_proven(client, email_user) -> None:
    assert verify_email(client, email_user).url == NEW_PASSWORD
    give_passkey(email_user)
    before = refused_resets()
    response = new_password(client)
    assert response.status_code == 302 and response.url == "/"
    assert unchanged(email_user)
    assert refused_resets() == before  # refused by the stage, before the finish


@pytest.mark.parametrize("mfa", ["email", "phone"])
def test_the_passkey_changed_during_the_last_step(client, make_user, monkeypatch, mfa) -> None:
    """Changed between the password stage's check and the finish: the finish re-checks,
    against the account as it is then (a phone account now needs its phone, which this
    attempt did not prove; an email account has another passkey, not the one proven)."""
    user = make_user(mfa=mfa)
    device = give_passkey(user)
    at_password_page(client, user, device)

    original = stage_module.make_password

    def changing(password: str) -> str:
        Passkey.objects.filter(user=user).delete()
        if mfa == "email":
            give_passkey(user, "Another one")
        return original(password)

    monkeypatch.setattr(stage_module, "make_password", changing)
    assert new_password(client).url == "/"
    assert unchanged(user) and refused_resets() == 1


def test_a_passkey_removed_from_an_email_account_leaves_its_email_proof(client, email_user):
    """The account as it is at the end asks only for its email, which was proven."""
    device = give_passkey(email_user)
    at_password_page(client, email_user, device)
    Passkey.objects.filter(user=email_user).delete()
    assert new_password(client).url == "/home/"


# --- two requests at once ------------------------------------------------------------


def test_one_assertion_posted_twice_at_once_proves_nothing(client, email_user, monkeypatch):
    """The second post finds the challenge used up; the first's compare-and-set then
    finds the state changed by the second: neither goes on to the password."""
    device = give_passkey(email_user)
    verify_email(client, email_user)
    credential = device.get(steps.options(client.get(FACTOR)))
    session_key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    original = ceremony.authenticate
    inner = []

    def racing(response, challenge, user=None):
        if not inner:
            other = Client()
            other.cookies[django_settings.SESSION_COOKIE_NAME] = session_key
            inner.append(steps.post_assertion(other, FACTOR, credential))
        return original(response, challenge, user)

    monkeypatch.setattr(ceremony, "authenticate", racing)
    response = steps.post_assertion(client, FACTOR, credential)
    assert inner[0].status_code == 200  # refused: used challenge
    assert response.status_code == 302 and response.url == FACTOR  # out of date
    assert client.get(NEW_PASSWORD).url == FACTOR
    assert unchanged(email_user)


@pytest.mark.django_db(transaction=True)
def test_two_last_steps_at_once_change_the_password_once(email_user) -> None:
    first = Client()
    device = give_passkey(email_user)
    at_password_page(first, email_user, device)
    second = Client()
    second.cookies = first.cookies
    barrier = threading.Barrier(2)
    responses: dict[str, object] = {}

    def post(client: Client, password: str) -> None:
        barrier.wait()
        try:
            responses[password] = new_password(client, password)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=post, args=(first, NEW)),
        threading.Thread(target=post, args=(second, OTHER)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    homes = [p for p, r in responses.items() if r.status_code == 302 and r.url == "/home/"]
    assert len(homes) == 1
    email_user.refresh_from_db()
    assert email_user.check_password(homes[0])
    assert AuditEvent.objects.filter(event="password.reset", outcome="success").count() == 1


def test_the_same_app_code_from_a_second_tab_proves_nothing_more(client, email_user):
    secret = give_app(email_user)
    verify_email(client, email_user)
    code = app_code(secret)
    other = Client()
    other.cookies = client.cookies
    assert prove_app(client, secret).url == NEW_PASSWORD
    # The copy of the page (the other tab) posts the same code: the stage has moved on.
    response = other.post(FACTOR, {"action": "verify", "code": code})
    assert response.status_code == 302 and response.url == NEW_PASSWORD
    assert new_password(client).url == "/home/"
    assert new_password(other, OTHER).url == "/"  # the attempt is over
    email_user.refresh_from_db()
    assert email_user.check_password(NEW)


def test_under_aal2_a_state_moved_past_the_email_step_does_not_reset(client, email_user, settings):
    """The email-only account's reset, moved on to the password stage (a bug elsewhere, a
    restored row) while the "aal2" profile is on: the password stage refuses."""
    verify_email(client, email_user)
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    response = new_password(client)
    assert response.status_code == 302 and response.url == "/"
    assert unchanged(email_user) and not is_signed_in(client)
