"""Forgot or Reset Password asks for the strongest enrolled factor (issue #11).

The emailed code comes first (the guide's mailbox proof); then, instead of the phone (or
nothing, for an email-only account), the account's passkey, else its authenticator app.
Recovery codes are never that step: they are the fallback for a lost factor.
"""

from __future__ import annotations

import pytest
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.flows.forgot_password import FACTOR_HEADING, reset_factor
from caregate.passkeys.models import Passkey
from tests import passkey_steps as steps
from tests.conftest import PASSWORD
from tests.factor_steps import app_code, give_app, give_codes
from tests.test_forgot_password import (
    NEW,
    NEW_PASSWORD,
    PHONE,
    is_signed_in,
    new_password,
    verify_email,
)
from tests.webauthn_soft import SoftAuthenticator

pytestmark = pytest.mark.django_db

FACTOR = "/forgot-password/factor/"


@pytest.fixture(autouse=True)
def no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


@pytest.fixture
def phone_user(make_user):
    return make_user(mfa="phone")


def give_passkey(user, name: str = "Work laptop") -> SoftAuthenticator:
    """A passkey of ``user`` on a new software authenticator, stored as enrolment does."""
    device = SoftAuthenticator()
    Passkey.objects.create(
        user=user, name=name, credential_id=device.id, public_key=device.cose_key()
    )
    return device


def prove_passkey(client: Client, device: SoftAuthenticator):
    return steps.post_assertion(client, FACTOR, device.get(steps.options(client.get(FACTOR))))


def prove_app(client: Client, secret: str, offset: int = 0):
    return client.post(FACTOR, {"action": "verify", "code": app_code(secret, offset)})


def changed(user, password: str = NEW) -> bool:
    user.refresh_from_db()
    return user.check_password(password)


def signin_factor() -> str:
    event = AuditEvent.objects.filter(event="signin", outcome="success").latest("id")
    return event.detail.get("factor", "")


@pytest.mark.parametrize("mfa", ["email", "phone"])
def test_a_passkey_is_asked_after_the_email_code(client: Client, make_user, mfa) -> None:
    user = make_user(mfa=mfa)
    device = give_passkey(user)
    response = verify_email(client, user)
    assert response.status_code == 302 and response.url == FACTOR
    page = client.get(FACTOR)
    text = steps.page_text(page)
    assert FACTOR_HEADING in text and "Use passkey" in text
    assert "If you no longer have it, please call the help desk" in text
    # Only this user's passkey is asked for.
    assert [c["id"] for c in steps.options(page)["allowCredentials"]] == [device.id]
    response = steps.post_assertion(client, FACTOR, device.get(steps.options(page)))
    assert response.status_code == 302 and response.url == NEW_PASSWORD
    response = new_password(client)
    assert response.status_code == 302 and response.url == "/home/"
    assert changed(user) and is_signed_in(client)
    assert signin_factor() == "passkey"
    proven = AuditEvent.objects.get(event="password.reset.factor", outcome="success")
    assert proven.detail["factor"] == "passkey"


@pytest.mark.parametrize("mfa", ["email", "phone"])
def test_an_authenticator_app_is_asked_after_the_email_code(
    client: Client, make_user, mfa
) -> None:
    user = make_user(mfa=mfa)
    secret = give_app(user)
    assert verify_email(client, user).url == FACTOR
    assert "Open the authenticator app" in steps.page_text(client.get(FACTOR))
    wrong = client.post(FACTOR, {"action": "verify", "code": "000000"})
    assert wrong.status_code == 200 and "That code is not correct." in steps.page_text(wrong)
    response = prove_app(client, secret)
    assert response.status_code == 302 and response.url == NEW_PASSWORD
    assert new_password(client).url == "/home/"
    assert changed(user) and signin_factor() == "authenticator-app"


def test_the_passkey_is_asked_over_the_app(client: Client, phone_user) -> None:
    give_app(phone_user)
    device = give_passkey(phone_user)
    assert reset_factor(phone_user).key == "passkey"
    assert verify_email(client, phone_user).url == FACTOR
    assert prove_passkey(client, device).url == NEW_PASSWORD


def test_recovery_codes_are_not_asked_for(client: Client, make_user) -> None:
    email_user, phone_user = make_user(mfa="email"), make_user(mfa="phone")
    give_codes(email_user)
    give_codes(phone_user)
    assert reset_factor(email_user) is None and reset_factor(phone_user) is None
    assert verify_email(client, email_user).url == NEW_PASSWORD
    assert verify_email(Client(), phone_user).url == PHONE


def test_without_a_stronger_factor_the_guides_steps_stay(client: Client, make_user) -> None:
    email_user, phone_user = make_user(mfa="email"), make_user(mfa="phone")
    assert verify_email(client, email_user).url == NEW_PASSWORD
    assert verify_email(Client(), phone_user).url == PHONE


def test_a_factor_the_deployment_does_not_allow_is_not_asked(client, phone_user, settings):
    give_passkey(phone_user)
    settings.CAREGATE_SECOND_FACTORS = ["email", "phone", "authenticator-app", "recovery-code"]
    assert verify_email(client, phone_user).url == PHONE


def test_the_old_password_no_longer_signs_in(client: Client, email_user) -> None:
    device = give_passkey(email_user)
    verify_email(client, email_user)
    prove_passkey(client, device)
    new_password(client)
    assert changed(email_user) and not email_user.check_password(PASSWORD)


# --- the deployment's factor policy ---------------------------------------------------------


def test_under_aal2_the_mailbox_alone_does_not_reset(client, email_user, settings):
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    response = verify_email(client, email_user)
    assert response.status_code == 403
    assert "This way of signing in is turned off" in steps.page_text(response)
    assert client.get(NEW_PASSWORD).url == "/forgot-password/email-code/"
    assert not is_signed_in(client) and not changed(email_user)
    assert AuditEvent.objects.filter(event="password.reset.factor", outcome="factor-off")


def test_under_aal2_a_passkey_resets_an_email_account(client, email_user, settings) -> None:
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    device = give_passkey(email_user)
    assert verify_email(client, email_user).url == FACTOR
    assert prove_passkey(client, device).url == NEW_PASSWORD
    assert new_password(client).url == "/home/" and changed(email_user)


def test_under_aal2_a_phone_account_still_uses_its_phone(client, phone_user, settings) -> None:
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    assert verify_email(client, phone_user).url == PHONE


def test_a_phone_the_deployment_turned_off_does_not_reset(client, phone_user, settings):
    settings.CAREGATE_SECOND_FACTORS = ["email", "authenticator-app", "recovery-code", "passkey"]
    response = verify_email(client, phone_user)
    assert response.status_code == 403
    assert "A code sent to your phone can no longer be used" in steps.page_text(response)
