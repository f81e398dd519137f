"""Attacks on My Account's current-factor step under the "aal2" factor policy
(caregate/flows/change_phone.py CurrentFactor): the attacker holds a signed-in session (a
clinic PC left signed in, a stolen cookie) and the mailbox, and wants to add a way in or
move the account's factors without the strongest allowed factor. They try a code from
their own app, their own passkey, a passkey assertion made for another flow, skipping the
step by URL, an edited flow state, two requests at once with one code, and removing (or
replacing) the proven factor before the change is saved."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.test import Client

from caregate.accounts.models import User
from caregate.factors.models import AuthenticatorApp, RecoveryCode
from caregate.passkeys.models import Passkey
from tests import flowstate, passkey_steps
from tests.conftest import sign_in_as
from tests.factor_steps import CODES_CURRENT, NEW_CODES, app_code, codes_on, give_app, page_text
from tests.registration_steps import email_code

MY_ACCOUNT = "/setup/my-account/"
CHANGE_PHONE = "/setup/my-account/change/phone/"
CHANGE_EMAIL = "/setup/my-account/change/email/"
PHONE_CURRENT = "/change-phone/current/"
PHONE_NEW = "/change-phone/new-phone/"
EMAIL_CURRENT = "/change-email/current/"
EMAIL_NEW = "/change-email/new-email/"
NEW_ADDRESS = "taken.over@example.org"


@pytest.fixture(autouse=True)
def _no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


@pytest.fixture
def aal2(settings) -> None:
    settings.CAREGATE_FACTOR_PROFILE = "aal2"


def signed_in(user: User) -> Client:
    return sign_in_as(Client(), user, method="email")


def begin(client: Client, start: str, stage: str) -> None:
    response = client.post(start)
    assert response.status_code == 302 and response.url == stage, response


def new_email(client: Client) -> object:
    client.post(EMAIL_NEW, {"action": "send", "email": NEW_ADDRESS})
    return client.post(EMAIL_NEW, {"action": "verify", "code": email_code(NEW_ADDRESS)})


def email_unchanged(user: User) -> bool:
    user.refresh_from_db()
    return user.email != NEW_ADDRESS


# --- another user's factor ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_code_from_another_users_app_is_refused(aal2, make_user) -> None:
    victim = make_user(mfa="email", is_org_admin=True)
    give_app(victim)
    attacker = make_user(mfa="email")
    own_secret = give_app(attacker)
    before = AuthenticatorApp.objects.get(user=attacker).last_used_step
    client = signed_in(victim)
    begin(client, passkey_steps.START_ADD, passkey_steps.VERIFY)
    code = app_code(own_secret)
    response = client.post(passkey_steps.VERIFY, {"action": "verify", "code": code})
    assert response.status_code == 200 and "not correct" in page_text(response)
    assert client.get(passkey_steps.ADD).status_code == 403
    # The code was checked against the victim's app only: the attacker's is untouched.
    assert AuthenticatorApp.objects.get(user=attacker).last_used_step == before


@pytest.mark.django_db
def test_another_users_passkey_is_refused(settings, make_user) -> None:
    victim = make_user(mfa="email")
    passkey_steps.enrol(signed_in(victim))
    attacker = make_user(mfa="email")
    attacker_device = passkey_steps.enrol(signed_in(attacker))
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    client = signed_in(victim)
    begin(client, NEW_CODES, CODES_CURRENT)
    options = passkey_steps.options(client.get(CODES_CURRENT))
    response = passkey_steps.post_assertion(client, CODES_CURRENT, attacker_device.get(options))
    assert response.status_code == 200 and not codes_on(response)
    assert not RecoveryCode.objects.filter(user=victim).exists()


@pytest.mark.django_db
def test_an_assertion_made_for_another_flow_is_refused(settings, make_user) -> None:
    user = make_user(mfa="email")
    device = passkey_steps.enrol(signed_in(user))
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    client = signed_in(user)
    begin(client, NEW_CODES, CODES_CURRENT)
    other_flow = device.get(passkey_steps.options(client.get(CODES_CURRENT)))
    begin(client, CHANGE_EMAIL, EMAIL_CURRENT)
    client.get(EMAIL_CURRENT)  # this flow's own challenge
    response = passkey_steps.post_assertion(client, EMAIL_CURRENT, other_flow)
    assert response.status_code == 200
    assert client.get(EMAIL_NEW).url == EMAIL_CURRENT  # still at the current-factor step


@pytest.mark.django_db
def test_a_proof_in_one_change_does_not_carry_to_another(aal2, make_user) -> None:
    user = make_user(mfa="email")
    secret = give_app(user)
    client = signed_in(user)
    begin(client, CHANGE_EMAIL, EMAIL_CURRENT)
    response = client.post(EMAIL_CURRENT, {"action": "verify", "code": app_code(secret)})
    assert response.status_code == 302 and response.url == EMAIL_NEW
    begin(client, CHANGE_PHONE, PHONE_CURRENT)
    assert client.get(PHONE_NEW).url == PHONE_CURRENT
    assert client.get(passkey_steps.ADD).status_code == 403


# --- skipping or forging the step -----------------------------------------------------------


@pytest.mark.django_db
def test_the_step_cannot_be_skipped_by_url(aal2, make_user) -> None:
    user = make_user(mfa="email", is_org_admin=True)
    give_app(user)
    client = signed_in(user)
    begin(client, CHANGE_EMAIL, EMAIL_CURRENT)
    assert client.get(EMAIL_NEW).url == EMAIL_CURRENT
    response = client.post(EMAIL_NEW, {"action": "send", "email": NEW_ADDRESS})
    assert response.status_code == 302 and response.url == EMAIL_CURRENT
    begin(client, passkey_steps.START_ADD, passkey_steps.VERIFY)
    assert client.get(passkey_steps.ADD).status_code == 403
    assert client.post(passkey_steps.ADD, {"name": "x", "credential": "{}"}).status_code == 403
    assert email_unchanged(user)


@pytest.mark.django_db
def test_the_emailed_code_cannot_stand_in_for_the_app(aal2, make_user) -> None:
    user = make_user(mfa="email")
    give_app(user)
    client = signed_in(user)
    begin(client, CHANGE_EMAIL, EMAIL_CURRENT)
    for action in ({"action": "send"}, {"action": "continue"}):
        client.post(EMAIL_CURRENT, action)
    assert client.get(EMAIL_NEW).url == EMAIL_CURRENT


@pytest.mark.django_db
@pytest.mark.parametrize(
    "forged",
    [
        {"current_verified": "email"},  # the mailbox's proof
        {"current_verified": "authenticator-app"},  # no app row named
        {"current_verified": "recovery-code"},
        {"current_verified": "passkey", "current_factor_id": None},
    ],
)
def test_a_state_moved_past_the_step_saves_nothing(aal2, make_user, forged) -> None:
    user = make_user(mfa="email")
    give_app(user)
    client = signed_in(user)
    begin(client, CHANGE_EMAIL, EMAIL_CURRENT)

    def past_the_step(state: dict) -> None:
        state["reached"] = 1
        state["data"].update(forged)

    flowstate.edit(client.session, "change-email", past_the_step)
    response = new_email(client)
    assert response.status_code == 302 and response.url == MY_ACCOUNT
    assert email_unchanged(user)


@pytest.mark.django_db
def test_another_users_app_row_named_in_the_state_saves_nothing(aal2, make_user) -> None:
    user = make_user(mfa="email")
    give_app(user)
    other = make_user(mfa="email")
    give_app(other)
    other_app = AuthenticatorApp.objects.get(user=other).pk
    client = signed_in(user)
    begin(client, CHANGE_EMAIL, EMAIL_CURRENT)

    def forged(state: dict) -> None:
        state["reached"] = 1
        state["data"].update(current_verified="authenticator-app", current_factor_id=other_app)

    flowstate.edit(client.session, "change-email", forged)
    new_email(client)
    assert email_unchanged(user)


@pytest.mark.django_db
def test_a_flow_started_for_another_user_is_refused(aal2, make_user) -> None:
    user = make_user(mfa="email")
    secret = give_app(user)
    victim = make_user(mfa="email")
    give_app(victim)
    client = signed_in(user)
    begin(client, CHANGE_EMAIL, EMAIL_CURRENT)
    flowstate.edit(
        client.session, "change-email", lambda state: state["data"].update(user_id=victim.pk)
    )
    response = client.post(EMAIL_CURRENT, {"action": "verify", "code": app_code(secret)})
    assert response.status_code == 302 and response.url == MY_ACCOUNT
    assert client.get(EMAIL_NEW).status_code == 302
    assert email_unchanged(victim)


# --- the factor changed meanwhile -----------------------------------------------------------


def _proved_with_app(user: User) -> Client:
    secret = give_app(user)
    client = signed_in(user)
    begin(client, CHANGE_EMAIL, EMAIL_CURRENT)
    response = client.post(EMAIL_CURRENT, {"action": "verify", "code": app_code(secret)})
    assert response.status_code == 302 and response.url == EMAIL_NEW
    return client


@pytest.mark.django_db
def test_the_app_removed_meanwhile_saves_nothing(aal2, make_user) -> None:
    user = make_user(mfa="email")
    client = _proved_with_app(user)
    AuthenticatorApp.objects.filter(user=user).delete()
    response = new_email(client)
    assert response.status_code == 302 and response.url == MY_ACCOUNT
    assert "changed while this page was open" in page_text(client.get(MY_ACCOUNT))
    assert email_unchanged(user)


@pytest.mark.django_db
def test_the_app_replaced_meanwhile_saves_nothing(aal2, make_user) -> None:
    user = make_user(mfa="email")
    client = _proved_with_app(user)
    AuthenticatorApp.objects.filter(user=user).delete()
    give_app(user)  # a new row: the proof was of the old app
    new_email(client)
    assert email_unchanged(user)


@pytest.mark.django_db
def test_the_proven_passkey_removed_meanwhile_saves_nothing(settings, make_user) -> None:
    user = make_user(mfa="email")
    device = passkey_steps.enrol(signed_in(user))
    passkey_steps.enrol(signed_in(user), name="Spare key")
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    client = signed_in(user)
    begin(client, CHANGE_EMAIL, EMAIL_CURRENT)
    options = passkey_steps.options(client.get(EMAIL_CURRENT))
    response = passkey_steps.post_assertion(client, EMAIL_CURRENT, device.get(options))
    assert response.status_code == 302 and response.url == EMAIL_NEW
    # The proven passkey goes; another one of the account's is still there.
    Passkey.objects.filter(user=user, name="Work laptop").delete()
    new_email(client)
    assert email_unchanged(user)


@pytest.mark.django_db
def test_the_app_removed_before_the_code_is_checked_asks_nothing_else(aal2, make_user) -> None:
    user = make_user(mfa="email")
    secret = give_app(user)
    client = signed_in(user)
    begin(client, CHANGE_EMAIL, EMAIL_CURRENT)
    client.get(EMAIL_CURRENT)
    AuthenticatorApp.objects.filter(user=user).delete()
    response = client.post(EMAIL_CURRENT, {"action": "verify", "code": app_code(secret)})
    assert response.status_code == 302 and response.url == MY_ACCOUNT
    assert client.get(EMAIL_NEW).status_code == 302
    assert email_unchanged(user)


# --- two requests at once -------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_one_app_code_posted_twice_at_once_makes_codes_once(aal2, make_user) -> None:
    user = make_user(mfa="email")
    secret = give_app(user)
    first = signed_in(user)
    begin(first, NEW_CODES, CODES_CURRENT)
    second = Client()
    second.cookies = first.cookies
    code = app_code(secret)
    barrier = threading.Barrier(2)
    responses: list = []

    def post(client: Client) -> None:
        barrier.wait()
        responses.append(client.post(CODES_CURRENT, {"action": "verify", "code": code}))
        connection.close()  # this thread's own connection

    threads = [threading.Thread(target=post, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    shown = [r for r in responses if r.status_code == 200 and codes_on(r)]
    assert len(responses) == 2 and len(shown) == 1
    assert RecoveryCode.objects.filter(user=user).count() == 10


@pytest.mark.django_db(transaction=True)
def test_one_passkey_assertion_posted_twice_at_once_makes_codes_once(settings, make_user) -> None:
    user = make_user(mfa="email")
    device = passkey_steps.enrol(signed_in(user))
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    first = signed_in(user)
    begin(first, NEW_CODES, CODES_CURRENT)
    assertion = device.get(passkey_steps.options(first.get(CODES_CURRENT)))
    second = Client()
    second.cookies = first.cookies
    barrier = threading.Barrier(2)
    responses: list = []

    def post(client: Client) -> None:
        barrier.wait()
        responses.append(passkey_steps.post_assertion(client, CODES_CURRENT, assertion))
        connection.close()

    threads = [threading.Thread(target=post, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    shown = [r for r in responses if r.status_code == 200 and codes_on(r)]
    # At most one: the assertion's challenge is used up by the first, and the engine's
    # compare-and-set may end the other attempt too (both refused is safe; two sets never).
    assert len(responses) == 2 and len(shown) <= 1
    assert RecoveryCode.objects.filter(user=user).count() == 10 * len(shown)
