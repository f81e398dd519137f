"""Attacker review (session 13c) of the newest commits: the Add a passkey ticket that held
the account's factors (caregate/passkeys/flows.py, then factors_now), the staff weak-mfa refusal
(caregate/staff/identity.py, staff_login.py) and the policy note on "Try another way"
(caregate/flows/stages/factor_choice.py).

The attacker holds a signed-in session (a clinic PC left signed in, a stolen cookie) and,
for a short while, the factor the current-factor step asks for (a stolen laptop with the
user's passkey, a copied authenticator secret). The ticket's promise: once the user
reacts by removing or replacing that factor, the proof is void. The tests under
"findings" failed on the code as reviewed (a passkey or app replaced after the proof, two
tabs registering at once, a policy switched on); all four are fixed: the ticket now keeps
the proof itself and checks it as My Account's changes do (owner_of_proof), and it is used
up before the registration. The rest are attacks that held."""

from __future__ import annotations

import time
from unittest import mock

import pytest
from django.core.cache import cache
from django.test import Client

from caregate.accounts.models import User
from caregate.audit.models import AuditEvent
from caregate.factors.models import AuthenticatorApp
from caregate.flows.stages.factor_choice import EMAIL_NOT_ACCEPTED
from caregate.passkeys import ceremony
from caregate.passkeys.models import Passkey
from caregate.staff.identity import StaffRefused
from caregate.staff.staff_login import REFUSALS
from tests import passkey_steps
from tests.conftest import PASSWORD, sign_in_as
from tests.factor_steps import app_code, give_app
from tests.phone_steps import EMAIL_CODE, EMAIL_CREDENTIALS, start
from tests.test_staff_login import ACCOUNTS, _configured, idp, signed_in_as, staff_sign_in
from tests.webauthn_soft import SoftAuthenticator

__all__ = ["_configured", "idp"]  # the test identity provider, as test_staff_login runs it

pytestmark = pytest.mark.django_db

ADD = passkey_steps.ADD
START_ADD = passkey_steps.START_ADD
VERIFY = passkey_steps.VERIFY


@pytest.fixture(autouse=True)
def _no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


def signed_in(user: User) -> Client:
    return sign_in_as(Client(), user, method="email")


def ticket_key(client: Client) -> str:
    return f"caregate:passkeys:add-ticket:{client.session.session_key}"


def begin(client: Client) -> None:
    response = client.post(START_ADD)
    assert response.status_code == 302 and response.url == VERIFY, response


def try_to_add(client: Client, name: str = "Attacker key") -> int:
    """GET the add page and, if it is served, register a new passkey; return the status
    of the GET (200: the ticket was honoured)."""
    page = client.get(ADD)
    if page.status_code == 200:
        device = SoftAuthenticator()
        client.post(ADD, {"name": name, "credential": device.create(passkey_steps.options(page))})
    return page.status_code


def proof_for(user: User) -> dict:
    """What a ticket of ``user`` proved by an emailed code holds (the forged tests' stuff)."""
    return {
        "user_id": user.pk,
        "current_method": user.usable_mfa_method,
        "current_verified": user.usable_mfa_method,
        "current_factor_id": None,
        "email": user.email,
        "phone": user.phone_number,
    }


# --- findings (failed on the code as reviewed; fixed) --------------------------------------


def test_removing_the_passkey_the_proof_was_made_with_voids_the_ticket(settings, make_user):
    """aal2: an email user's current-factor step is their passkey (CurrentFactor._stronger).
    The thief of the laptop holding it proves it and gets a ticket; the user, told of the
    theft, removes that passkey from their own session. factors_now leaves passkeys out
    entirely, so the ticket still stands and the thief adds a passkey of their own: a way
    in that outlives the removal. (owner() binds a passkey proof to the passkey row for
    every other My Account change; the ticket does not.)"""
    user = make_user(mfa="email")
    stolen = passkey_steps.enrol(signed_in(user), name="Stolen laptop")
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    thief = signed_in(user)
    begin(thief)
    assertion = stolen.get(passkey_steps.options(thief.get(VERIFY)))
    proved = passkey_steps.post_assertion(thief, VERIFY, assertion)
    assert proved.status_code == 302 and proved.url == ADD, proved
    # The user reacts: removes the stolen laptop's passkey (no session is ended by that).
    owner = signed_in(user)
    stolen_row = Passkey.objects.get(user=user)
    removed = owner.post(f"/account/passkeys/{stolen_row.pk}/remove/")
    assert removed.status_code == 302 and not Passkey.objects.filter(user=user).exists()
    status = try_to_add(thief)
    assert not Passkey.objects.filter(user=user).exists(), "passkey added on a removed proof"
    assert status == 403


def test_an_app_replaced_after_the_proof_voids_the_ticket(settings, make_user):
    """aal2: an email user without a passkey proves with the authenticator app. The user
    re-keys the app (removes it, sets it up again: a new row, a new secret) because the
    old secret was copied. factors_now compares only the key "authenticator-app", which is
    still enrolled, so the ticket proved with the copied secret stays good.
    (caregate/flows/change_phone.py _proof_id: "a removed and re-added app is a new row:
    its proof does not count" -- the ticket forgets that.)"""
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    user = make_user(mfa="email")
    copied = give_app(user)
    thief = signed_in(user)
    begin(thief)
    proved = thief.post(VERIFY, {"action": "verify", "code": app_code(copied)})
    assert proved.status_code == 302 and proved.url == ADD, proved
    # The user replaces the app (e.g. after adding a passkey to prove the set-up with).
    AuthenticatorApp.objects.filter(user=user).delete()
    give_app(user)
    status = try_to_add(thief)
    assert not Passkey.objects.filter(user=user).exists(), "passkey added on a re-keyed app"
    assert status == 403


def test_one_ticket_cannot_add_two_passkeys_at_once(make_user):
    """Two POSTs to the add page in one session (two tabs, or a script): has_ticket is read
    at the start of each, use_ticket runs only after the registration. While the first
    POST is in ceremony.register (WebAuthn verification), a second GET (the session still
    holds the first challenge's pointer, so a fresh challenge is issued) and POST pass the
    same ticket: two passkeys for one proof ("one passkey per proof of the current
    factor"). Emulated deterministically: the second tab's requests run inside the first
    one's register call."""
    user = make_user(mfa="email")
    first_tab = signed_in(user)
    passkey_steps.verify_for_passkey(first_tab)
    second_tab = Client()
    second_tab.cookies = first_tab.cookies
    credential = SoftAuthenticator().create(passkey_steps.options(first_tab.get(ADD)))
    real_register = ceremony.register
    raced: list[int] = []
    entered: list[bool] = []

    def slow_register(*args, **kwargs):
        if not entered:  # the first tab's call: the second tab goes meanwhile
            entered.append(True)
            raced.append(try_to_add(second_tab, name="Second tab"))
        return real_register(*args, **kwargs)

    with mock.patch.object(ceremony, "register", side_effect=slow_register):
        first_tab.post(ADD, {"name": "First tab", "credential": credential})
    # Fixed: the first tab used the ticket up before registering; the second tab is told
    # to prove the current factor again.
    assert raced == [403]
    assert Passkey.objects.filter(user=user).count() == 1, "two passkeys for one proof"


def test_a_ticket_proved_by_email_is_void_once_email_no_longer_counts(settings, make_user):
    """The ticket is granted for an emailed code under the standard profile; the deployment
    switches to aal2 (email is no second factor) within CAREGATE_PASSKEY_REAUTH_SECONDS
    (the ticket is in Redis and survives the restart). owner() refuses a flow's emailed
    proof once the policy no longer counts it ("a policy switched on meanwhile makes an
    emailed code's proof count for nothing"); the ticket does not re-check that, so a
    mailbox plus a session still adds a passkey after the switch."""
    user = make_user(mfa="email")
    client = signed_in(user)
    passkey_steps.verify_for_passkey(client)  # the emailed code
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    status = try_to_add(client)
    assert not Passkey.objects.filter(user=user).exists(), "emailed proof added a passkey"
    assert status == 403


# --- attacks that held (regression) -----------------------------------------------------


@pytest.mark.parametrize(
    "forged",
    [
        "user-pk",  # the old format: the bare pk
        {"user": "user-pk", "factors": "now"},  # the format of the reviewed code
        {"user": "user-pk-str", "proof": "now", "until": "later"},
        {"user": "user-pk", "proof": "now"},  # no expiry
        {"user": "user-pk", "proof": "now", "until": "past"},
        {"user": "user-pk", "proof": "now", "until": "1e12"},  # not a float: forged
        {"user": "user-pk", "proof": None, "until": "later"},
        ["user-pk", "now"],
    ],
)
def test_a_cache_value_of_another_shape_is_no_ticket(make_user, forged):
    user = make_user(mfa="email")
    client = signed_in(user)

    def fill(value):
        if value == "user-pk":
            return user.pk
        if value == "user-pk-str":
            return str(user.pk)
        if value == "now":
            return proof_for(user)
        if value == "later":
            return time.time() + 600
        if value == "past":
            return time.time() - 1
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return value

    cache.set(ticket_key(client), fill(forged), 600)
    assert client.get(ADD).status_code == 403
    assert client.post(ADD, {"name": "x", "credential": "{}"}).status_code == 403


def test_a_ticket_of_user_a_is_no_ticket_for_user_b(make_user):
    """A proved in a shared browser; B signs in there (a new session key), and even a
    copy of A's ticket under B's session key names A, not B."""
    alice = make_user(mfa="email")
    bob = make_user(mfa="email")
    browser = signed_in(alice)
    passkey_steps.verify_for_passkey(browser)
    alices = cache.get(ticket_key(browser))
    assert alices["user"] == alice.pk
    browser.post("/logout/")
    sign_in_as(browser, bob, method="email")
    assert browser.get(ADD).status_code == 403
    cache.set(ticket_key(browser), alices, 600)
    assert browser.get(ADD).status_code == 403
    # Nor Alice's proof with Bob's pk, or Bob's proof with Alice's pk.
    later = time.time() + 600
    cache.set(ticket_key(browser), {"user": bob.pk, "proof": alices["proof"], "until": later}, 600)
    assert browser.get(ADD).status_code == 403
    cache.set(
        ticket_key(browser), {"user": alice.pk, "proof": proof_for(bob), "until": later}, 600
    )
    assert browser.get(ADD).status_code == 403
    assert not Passkey.objects.exists()


def test_another_sessions_ticket_does_not_carry(make_user):
    user = make_user(mfa="email")
    proved = signed_in(user)
    passkey_steps.verify_for_passkey(proved)
    other = signed_in(user)
    assert other.get(ADD).status_code == 403
    assert proved.get(ADD).status_code == 200


def test_one_ticket_one_passkey_in_sequence(make_user):
    user = make_user(mfa="email")
    client = signed_in(user)
    passkey_steps.verify_for_passkey(client)
    assert try_to_add(client, name="One") == 200
    assert Passkey.objects.filter(user=user).count() == 1
    assert try_to_add(client, name="Two") == 403
    assert Passkey.objects.filter(user=user).count() == 1


def test_a_refused_registration_keeps_only_this_sessions_ticket(make_user):
    """A refused try keeps the ticket (by design), and only for this session's user."""
    user = make_user(mfa="email")
    client = signed_in(user)
    passkey_steps.verify_for_passkey(client)
    client.get(ADD)
    refused = client.post(ADD, {"name": "x", "credential": "{}"})
    assert refused.status_code == 400
    assert cache.get(ticket_key(client))["user"] == user.pk
    assert not Passkey.objects.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"email": "SOMEONE.ELSE@example.com"},
        {"mfa_method": "phone", "phone_number": "+12025550123"},
    ],
)
def test_a_factor_change_in_another_case_or_method_voids(make_user, change):
    user = make_user(mfa="email")
    client = signed_in(user)
    passkey_steps.verify_for_passkey(client)
    User.objects.filter(pk=user.pk).update(**change)
    assert client.get(ADD).status_code == 403


def test_an_app_proved_ticket_is_void_once_the_app_is_removed(settings, make_user):
    """aal2, app-proved ticket: the app removed and nothing re-added: void (the key goes)."""
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    user = make_user(mfa="email")
    secret = give_app(user)
    client = signed_in(user)
    begin(client)
    client.post(VERIFY, {"action": "verify", "code": app_code(secret)})
    assert client.get(ADD).status_code == 200
    AuthenticatorApp.objects.filter(user=user).delete()
    assert client.get(ADD).status_code == 403


# --- staff weak-mfa: only the wording changed -----------------------------------------------


def _with_amr(provider, amr: list[str]) -> None:
    provider.set_accounts({**ACCOUNTS, "sam": {**ACCOUNTS["sam"], "amr": amr}})


@pytest.mark.parametrize(
    "amr", [["pwd", "mfa", "otp"], ["pwd", "mfa", "swk"], ["mfa", "HWK"], ["mfa", " hwk"]]
)
def test_aal2_weak_amr_is_refused_as_weak_mfa_and_not_signed_in(idp, settings, amr):
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    _with_amr(idp, amr)
    client = Client()
    response, _ = staff_sign_in(client, "sam")
    assert response.status_code == 403
    page = passkey_steps.page_text(response)
    assert "did not use a second factor this portal accepts" in page
    assert signed_in_as(client) is None
    outcome = AuditEvent.objects.filter(event="staff-login.account").last().outcome
    assert outcome == "weak-mfa"


def test_no_mfa_still_comes_first_under_aal2(idp, settings):
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    settings.CAREGATE_OIDC_REQUIRE_MFA = True
    _with_amr(idp, ["pwd"])
    client = Client()
    response, _ = staff_sign_in(client, "sam")
    assert response.status_code == 403 and signed_in_as(client) is None
    assert "did not use multi-factor authentication" in response.content.decode()


def test_every_refusal_reason_has_wording():
    assert StaffRefused("weak-mfa").reason in REFUSALS
    assert REFUSALS["weak-mfa"] != REFUSALS["no-mfa"]


# --- "Try another way" policy note: settings only -------------------------------------------


def test_the_policy_note_is_the_same_for_any_account(settings, make_user):
    """The note depends on settings only (policy.allowed("email")): a constant, with no
    address, username or factor of the account in it."""
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    with_app = make_user(mfa="email")
    give_app(with_app)
    client = Client()
    start(client, "email")
    client.post(EMAIL_CREDENTIALS, {"email": with_app.email, "password": PASSWORD})
    listing = passkey_steps.page_text(client.get(f"{EMAIL_CODE}?another-way"))
    assert EMAIL_NOT_ACCEPTED in listing
    assert EMAIL_NOT_ACCEPTED.count("@") == 0 and with_app.username not in EMAIL_NOT_ACCEPTED
    note = listing.split(EMAIL_NOT_ACCEPTED)[0].rsplit("<p", 1)[-1]
    assert with_app.email not in note
