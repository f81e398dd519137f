"""Attacker review (session 11) of issue #11's factors: passkeys, the authenticator app,
recovery codes and "Try another way".

Findings (these tests fail on the code reviewed):

* LOGIN WITH PASSKEY answers 500 to a response whose credential ``id`` holds a NUL
  character: ``_find_passkey`` looks the id up unchecked, and PostgreSQL refuses NUL in a
  text value (DataError). No account or passkey is needed; the refusal is not audited.
* A passkey's name with a NUL (Add, Rename) is a 500 the same way: ``clean_name`` keeps it.
* LOGIN WITH PASSKEY signs in with a passkey although the deployment's factor list
  (CAREGATE_SECOND_FACTORS) does not allow passkeys: the Passkeys page and Add are 404
  then, the user can neither see nor remove the passkey, and it still signs in.
* Adding a passkey asks only for a sign-in in the last 10 minutes, not for the current
  factor again as Set up authenticator app does (caregate/factors/flows.py: "a session
  ... taken over must not be able to add a factor that would let its holder sign in
  later"). A session cookie taken in those minutes adds a passkey, and LOGIN WITH PASSKEY
  then signs in with no password, after Sign out, after the session's end and after the
  owner's Forgot password (which ends sessions and remembered browsers, not passkeys).
* An authenticator secret is not re-encrypted with the new key at its next use after a
  SECRET_KEY rotation, as caregate/factors/crypto.py promises: once the old key leaves
  SECRET_KEY_FALLBACKS the app is unreadable (and its sign-in a 500).

The rest are attacks that held, kept as regression tests.
"""

from __future__ import annotations

import json

import pytest
from django.conf import settings as django_settings
from django.test import Client

from caregate.factors import crypto, totp
from caregate.factors.models import AuthenticatorApp
from caregate.flows.registry import FLOWS
from caregate.passkeys.models import Passkey
from tests import passkey_steps as steps
from tests.factor_steps import (
    NEW_CODES,
    app_code,
    choose,
    codes_on,
    give_app,
    give_codes,
    page_text,
    prove_email,
    to_code_page,
    verify,
)
from tests.webauthn_soft import SoftAuthenticator

pytestmark = pytest.mark.django_db

EMAIL_CODE = "/email-login/email-code/"
CODES_CURRENT = "/new-recovery-codes/current/"


@pytest.fixture(autouse=True)
def _flows(settings, monkeypatch) -> None:
    settings.CAREGATE_PASSKEY_LOGIN = True
    monkeypatch.setitem(FLOWS, steps.SECOND_FACTOR_FLOW.name, steps.SECOND_FACTOR_FLOW)


@pytest.fixture
def me(client: Client, email_user) -> Client:
    return steps.signed_in(client, email_user)


def signed_in_as(client: Client) -> str | None:
    return client.session.get("_auth_user_id")


# --- findings ---------------------------------------------------------------------------


def test_login_with_passkey_refuses_a_credential_id_with_a_nul_without_a_500():
    """Low. No account needed: LOGIN WITH PASSKEY, then any well-formed response whose
    ``id`` holds a NUL."""
    browser = Client(raise_request_exception=False)
    credential = json.loads(SoftAuthenticator().get(steps.passkey_login(browser)))
    credential["id"] = "ab\x00cd"
    response = steps.post_assertion(browser, steps.LOGIN_STAGE, json.dumps(credential))
    assert response.status_code == 200, response.status_code
    assert "That passkey could not be used to sign in." in steps.page_text(response)


def test_a_nul_in_a_passkey_name_is_refused_without_a_500(me):
    """Low. Rename (and Add) with a name holding a NUL."""
    steps.enrol(me)
    passkey = Passkey.objects.get()
    me.raise_request_exception = False
    response = me.post(f"/account/passkeys/{passkey.pk}/rename/", {"name": "Work\x00laptop"})
    assert response.status_code in {302, 400}, response.status_code
    device = SoftAuthenticator()
    response = me.post(
        steps.ADD,
        {"name": "Home\x00PC", "credential": device.create(steps.options(steps.add_page(me)))},
    )
    assert response.status_code in {302, 400}, response.status_code


def test_login_with_passkey_follows_the_deployments_allowed_factors(me, settings):
    """Low/Medium. Passkeys taken off CAREGATE_SECOND_FACTORS: the user cannot see or
    remove theirs (404), but LOGIN WITH PASSKEY still signs in with it."""
    device = steps.enrol(me)
    browser = Client()
    started = steps.passkey_login(browser)  # begun while passkeys were allowed
    settings.CAREGATE_SECOND_FACTORS = ["email", "phone", "authenticator-app", "recovery-code"]
    assert me.get(steps.PASSKEYS).status_code == 404
    # No new LOGIN WITH PASSKEY (no button, 404), and the one under way does not finish.
    assert Client().post(steps.LOGIN_START).status_code == 404
    assert "LOGIN WITH PASSKEY" not in Client().get("/").content.decode()
    response = steps.post_assertion(browser, steps.LOGIN_STAGE, device.get(started))
    assert signed_in_as(browser) is None, response


def test_a_taken_over_session_cannot_add_a_passkey_without_the_current_factor(me, email_user):
    """Medium (design). The owner has just signed in; someone with the session cookie (a
    shared clinic PC, a stolen cookie) adds a passkey of their own, with no code to the
    owner's email. LOGIN WITH PASSKEY then signs them in from anywhere, with no password.
    Set up authenticator app asks for the current factor first; adding a passkey, a
    stronger credential (it is the password and the second factor in one), should too."""
    thief = Client()
    cookie = django_settings.SESSION_COOKIE_NAME
    thief.cookies[cookie] = me.cookies[cookie].value
    device = SoftAuthenticator()
    page = thief.get(steps.ADD)
    if page.status_code == 200 and 'id="passkey-options"' in page.content.decode():
        thief.post(steps.ADD, {"name": "Mine", "credential": device.create(steps.options(page))})
    assert not Passkey.objects.filter(user=email_user).exists(), (
        "a passkey was added with the session alone"
    )
    elsewhere = Client()
    steps.post_assertion(elsewhere, steps.LOGIN_STAGE, device.get(steps.passkey_login(elsewhere)))
    assert signed_in_as(elsewhere) is None


def test_an_authenticator_secret_is_re_encrypted_at_its_next_use_after_a_key_rotation(
    email_user, settings
):
    """Low. crypto.py: "rotating SECRET_KEY does not lose the enrolled apps (they are
    re-encrypted with the new key at their next use)". They are not: after a use under the
    new key, dropping the old key from the fallbacks leaves the secret unreadable."""
    settings.SECRET_KEY = "old-" + "k" * 60
    settings.CAREGATE_FACTOR_ENCRYPTION_KEY = ""
    secret = give_app(email_user)
    settings.SECRET_KEY = "new-" + "k" * 60
    settings.SECRET_KEY_FALLBACKS = ["old-" + "k" * 60]
    assert totp.verify(email_user.pk, app_code(secret)) is totp.TotpOutcome.OK
    settings.SECRET_KEY_FALLBACKS = []
    stored = AuthenticatorApp.objects.get(user=email_user).secret
    try:
        readable = crypto.decrypt(stored) == secret
    except crypto.SecretUnreadable:
        readable = False
    assert readable, "the secret is still encrypted with the retired key"


# --- attacks that held --------------------------------------------------------------------


def test_a_remembered_browser_session_cannot_add_a_passkey(client, email_user):
    from tests.conftest import sign_in_as

    sign_in_as(client, email_user, method="remembered-email")
    assert client.get(steps.ADD).status_code == 403


def test_a_recovery_code_of_another_user_does_not_sign_in(client, email_user, make_user):
    other = make_user()
    give_codes(email_user)
    theirs = give_codes(other)
    to_code_page(client, email_user)
    assert choose(client, "recovery-code").status_code == 302
    response = verify(client, theirs[0])
    assert signed_in_as(client) is None
    assert "That recovery code is not correct" in page_text(response)


def test_a_code_of_the_pending_secret_of_another_session_does_not_confirm(
    client, email_user, outbox_code
):
    """Two Set up authenticator app flows of one user: each confirms only its own key."""
    from tests.factor_steps import SETUP, open_setup

    first = steps.signed_in(client, email_user)
    second = steps.signed_in(Client(), email_user)
    secret_one = open_setup(first, email_user, outbox_code)
    secret_two = open_setup(second, email_user, outbox_code)
    assert secret_one != secret_two
    response = first.post(SETUP, {"action": "verify", "code": app_code(secret_two)})
    assert response.status_code == 200
    assert not AuthenticatorApp.objects.exists()


def test_switching_factor_does_not_skip_the_verification(client, email_user):
    """Choose the app, Continue; choose the email again, Continue: nothing was verified."""
    give_app(email_user)
    to_code_page(client, email_user)
    choose(client, "authenticator-app")
    client.post(EMAIL_CODE, {"action": "continue"})
    choose(client, "email")
    response = client.post(EMAIL_CODE, {"action": "continue"})
    assert signed_in_as(client) is None
    assert "Please verify your email address before you continue." in page_text(response)


def test_new_recovery_codes_are_shown_once_and_never_cached(me, email_user, outbox_code):
    give_codes(email_user)
    assert me.post(NEW_CODES).status_code == 302
    response = prove_email(me, CODES_CURRENT, email_user.email, outbox_code)
    assert len(codes_on(response)) == 10
    assert response["Cache-Control"] == "no-store"
    again = me.post(CODES_CURRENT, {"action": "continue"})  # the reveal POST replayed
    assert codes_on(again) == []
    assert codes_on(me.get(CODES_CURRENT, follow=True)) == []
