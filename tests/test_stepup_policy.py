"""My Account's changes follow the factor policy (caregate/flows/change_phone.py
CurrentFactor): where the policy turned the account's own factor off (the "aal2" profile:
email is no second factor), the change first asks for the account's strongest allowed
factor (a passkey, else the authenticator app; never a recovery code), and an account
without one is refused. Under the standard profile, and for phone accounts, nothing
changes."""

from __future__ import annotations

import pytest
from django.test import Client

from caregate.accounts.models import User
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.factors.models import AuthenticatorApp, RecoveryCode
from caregate.flows.change_phone import NO_ALLOWED_FACTOR, PASSKEY_HEADING
from caregate.passkeys.models import Passkey
from tests import passkey_steps
from tests.conftest import sign_in_as
from tests.factor_steps import (
    ADD_APP,
    CODES_CURRENT,
    CURRENT,
    NEW_CODES,
    SETUP,
    app_code,
    codes_on,
    give_app,
    give_codes,
    page_text,
    prove_email,
)
from tests.phone_steps import PHONE, sms_code
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
REFUSED = NO_ALLOWED_FACTOR.format(factor="An emailed code")

# Every My Account change: where it starts, and its current-factor step.
CHANGES = [
    (CHANGE_PHONE, PHONE_CURRENT),
    (CHANGE_EMAIL, EMAIL_CURRENT),
    (ADD_APP, CURRENT),
    (NEW_CODES, CODES_CURRENT),
    (passkey_steps.START_ADD, passkey_steps.VERIFY),
]


@pytest.fixture(autouse=True)
def _no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


@pytest.fixture
def aal2(settings) -> None:
    settings.CAREGATE_FACTOR_PROFILE = "aal2"


def signed_in(user: User) -> Client:
    return sign_in_as(Client(), user, method="email")


def emails_to(address: str) -> int:
    return OutboxMessage.objects.filter(channel="email", to__icontains=address).count()


def begin(client: Client, start: str, stage: str) -> None:
    response = client.post(start)
    assert response.status_code == 302 and response.url == stage, response


def with_passkey(user: User) -> passkey_steps.SoftAuthenticator:
    """A passkey added under the standard profile (the emailed code proves the change):
    call before switching to aal2."""
    return passkey_steps.enrol(signed_in(user))


# --- aal2: the strongest allowed factor instead of the emailed code -------------------------


def test_an_aal2_admin_with_the_app_adding_a_passkey_is_asked_for_the_app_code(
    aal2, make_user
) -> None:
    admin = make_user(mfa="email", is_org_admin=True)
    secret = give_app(admin)
    client = signed_in(admin)
    begin(client, passkey_steps.START_ADD, passkey_steps.VERIFY)
    page = client.get(passkey_steps.VERIFY)
    assert page.status_code == 200
    assert "Code from your authenticator app" in page_text(page)
    assert "Send" not in page_text(page)
    # The emailed code's actions do nothing here: no code is sent.
    client.post(passkey_steps.VERIFY, {"action": "send"})
    assert emails_to(admin.email) == 0
    response = client.post(passkey_steps.VERIFY, {"action": "verify", "code": app_code(secret)})
    assert response.status_code == 302 and response.url == passkey_steps.ADD, response
    assert client.get(passkey_steps.ADD).status_code == 200
    assert emails_to(admin.email) == 0


def test_a_wrong_app_code_is_refused_and_nothing_is_granted(aal2, make_user) -> None:
    admin = make_user(mfa="email", is_org_admin=True)
    secret = give_app(admin)
    client = signed_in(admin)
    begin(client, passkey_steps.START_ADD, passkey_steps.VERIFY)
    wrong = app_code(secret, 40)
    response = client.post(passkey_steps.VERIFY, {"action": "verify", "code": wrong})
    assert response.status_code == 200 and "not correct" in page_text(response)
    assert client.get(passkey_steps.ADD).status_code == 403


def test_the_passkey_is_asked_before_the_app(settings, make_user) -> None:
    user = make_user(mfa="email")
    device = with_passkey(user)
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    give_app(user)
    client = signed_in(user)
    begin(client, NEW_CODES, CODES_CURRENT)
    page = client.get(CODES_CURRENT)
    assert PASSKEY_HEADING in page_text(page)
    options = passkey_steps.options(page)
    assert [c["id"] for c in options["allowCredentials"]] == [device.id]
    response = passkey_steps.post_assertion(client, CODES_CURRENT, device.get(options))
    assert response.status_code == 200
    assert len(codes_on(response)) == 10


def test_an_email_user_changes_the_email_with_the_app(aal2, make_user) -> None:
    user = make_user(mfa="email")
    secret = give_app(user)
    client = signed_in(user)
    begin(client, CHANGE_EMAIL, EMAIL_CURRENT)
    response = client.post(EMAIL_CURRENT, {"action": "verify", "code": app_code(secret)})
    assert response.status_code == 302 and response.url == EMAIL_NEW
    client.post(EMAIL_NEW, {"action": "send", "email": "new.address@example.org"})
    code = email_code("new.address@example.org")
    response = client.post(EMAIL_NEW, {"action": "verify", "code": code})
    assert response.status_code == 302 and response.url == MY_ACCOUNT
    user.refresh_from_db()
    assert user.email == "new.address@example.org"


def test_an_email_user_switches_to_phone_with_the_passkey(settings, make_user) -> None:
    user = make_user(mfa="email")
    device = with_passkey(user)
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    client = signed_in(user)
    begin(client, CHANGE_PHONE, PHONE_CURRENT)
    options = passkey_steps.options(client.get(PHONE_CURRENT))
    response = passkey_steps.post_assertion(client, PHONE_CURRENT, device.get(options))
    assert response.status_code == 302 and response.url == PHONE_NEW
    client.post(PHONE_NEW, {"action": "sms", "country_code": "1", "phone_number": "202-555-0177"})
    response = client.post(PHONE_NEW, {"action": "verify-sms", "code": sms_code(NEW_PHONE)})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.mfa_method == User.MfaMethod.PHONE and user.phone_number == NEW_PHONE


@pytest.mark.parametrize(("start", "stage"), CHANGES)
def test_an_email_only_account_is_refused_under_aal2(aal2, make_user, start, stage) -> None:
    user = make_user(mfa="email")
    client = signed_in(user)
    begin(client, start, stage)
    response = client.get(stage)
    assert response.status_code == 302 and response.url == MY_ACCOUNT
    assert REFUSED in page_text(client.get(MY_ACCOUNT))
    assert emails_to(user.email) == 0
    event = AuditEvent.objects.filter(event="account.change", outcome="factor-off").get()
    assert event.user_id_snapshot == user.pk
    # Nothing was changed or added, and the flow is gone.
    assert client.get(stage).status_code == 302
    assert not AuthenticatorApp.objects.filter(user=user).exists()
    assert not RecoveryCode.objects.filter(user=user).exists()
    assert client.get(passkey_steps.ADD).status_code == 403


def test_recovery_codes_are_no_proof_for_a_change(aal2, make_user) -> None:
    user = make_user(mfa="email")
    codes = give_codes(user)
    client = signed_in(user)
    begin(client, passkey_steps.START_ADD, passkey_steps.VERIFY)
    response = client.post(passkey_steps.VERIFY, {"action": "verify", "code": codes[0]})
    assert response.status_code == 302 and response.url == MY_ACCOUNT
    assert REFUSED in page_text(client.get(MY_ACCOUNT))
    assert client.get(passkey_steps.ADD).status_code == 403


def test_the_policy_switched_on_during_a_change_voids_the_emailed_proof(
    settings, make_user
) -> None:
    user = make_user(mfa="email")
    give_app(user)
    client = signed_in(user)
    begin(client, CHANGE_EMAIL, EMAIL_CURRENT)
    response = prove_email(client, EMAIL_CURRENT, user.email, email_code)
    assert response.status_code == 302 and response.url == EMAIL_NEW
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    client.post(EMAIL_NEW, {"action": "send", "email": "new.address@example.org"})
    code = email_code("new.address@example.org")
    response = client.post(EMAIL_NEW, {"action": "verify", "code": code})
    assert response.status_code == 302 and response.url == MY_ACCOUNT
    user.refresh_from_db()
    assert user.email != "new.address@example.org"
    assert AuditEvent.objects.filter(event="account.change", outcome="refused").exists()


# --- unchanged: the standard profile, phone accounts ----------------------------------------


def test_the_standard_profile_still_asks_the_emailed_code(make_user) -> None:
    user = make_user(mfa="email")
    secret = give_app(user)
    client = signed_in(user)
    begin(client, NEW_CODES, CODES_CURRENT)
    assert "Send" in page_text(client.get(CODES_CURRENT))
    # The app is not asked for (its code proves nothing here); the emailed code is.
    response = client.post(CODES_CURRENT, {"action": "verify", "code": app_code(secret)})
    assert response.status_code != 302 and not codes_on(response)
    response = prove_email(client, CODES_CURRENT, user.email, email_code)
    assert response.status_code == 200 and len(codes_on(response)) == 10


def test_the_standard_profile_adds_a_passkey_with_the_emailed_code(make_user) -> None:
    user = make_user(mfa="email")
    give_app(user)
    passkey_steps.enrol(signed_in(user))  # verify_for_passkey: the emailed code
    assert Passkey.objects.filter(user=user).count() == 1


def test_an_aal2_phone_account_still_proves_the_phone(aal2, make_user) -> None:
    user = make_user(mfa="phone", phone=PHONE, is_org_admin=True)
    give_app(user)
    client = signed_in(user)
    begin(client, CHANGE_PHONE, PHONE_CURRENT)
    client.post(PHONE_CURRENT, {"action": "sms"})
    response = client.post(PHONE_CURRENT, {"action": "verify-sms", "code": sms_code(PHONE)})
    assert response.status_code == 302 and response.url == PHONE_NEW
    client.post(PHONE_NEW, {"action": "sms", "country_code": "1", "phone_number": "202-555-0177"})
    response = client.post(PHONE_NEW, {"action": "verify-sms", "code": sms_code(NEW_PHONE)})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.phone_number == NEW_PHONE


def test_an_aal2_phone_account_sets_up_the_app_with_the_phone(aal2, make_user) -> None:
    user = make_user(mfa="phone", phone=PHONE)
    client = signed_in(user)
    begin(client, ADD_APP, CURRENT)
    client.post(CURRENT, {"action": "sms"})
    response = client.post(CURRENT, {"action": "verify-sms", "code": sms_code(PHONE)})
    assert response.status_code == 302 and response.url == SETUP


def test_a_deployment_without_phone_asks_a_phone_account_for_its_app(settings, make_user) -> None:
    settings.CAREGATE_SECOND_FACTORS = ["email", "authenticator-app", "recovery-code"]
    user = make_user(mfa="phone", phone=PHONE)
    secret = give_app(user)
    client = signed_in(user)
    begin(client, NEW_CODES, CODES_CURRENT)
    assert "Code from your authenticator app" in page_text(client.get(CODES_CURRENT))
    response = client.post(CODES_CURRENT, {"action": "verify", "code": app_code(secret)})
    assert response.status_code == 200 and len(codes_on(response)) == 10
    assert not OutboxMessage.objects.filter(channel="sms").exists()
