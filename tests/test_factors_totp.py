"""The authenticator app (issue #11): set up from Setup → My Account after the current
factor again, a QR code drawn here and the key as text, a code confirmed before it counts,
±1 step of drift, each code once, the secret encrypted, removal, limits, notices, audit."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.factors import crypto, totp
from caregate.factors.models import AuthenticatorApp
from caregate.portal.models import Message
from tests.factor_steps import (
    ADD_APP,
    CURRENT,
    OFFER,
    REMOVE_APP,
    SETUP,
    app_code,
    choose,
    give_app,
    open_setup,
    page_text,
    to_code_page,
    verify,
)
from tests.flowstate import raw

pytestmark = pytest.mark.django_db


def test_set_up_asks_the_current_factor_first(signed_in, email_user):
    response = signed_in.post(ADD_APP)
    assert response.status_code == 302 and response.url == CURRENT
    # The QR page is not reachable before the email code again.
    response = signed_in.get(SETUP)
    assert response.status_code == 302 and response.url == CURRENT
    assert "To set up an authenticator app, first verify your email address." in page_text(
        signed_in.get(CURRENT)
    )
    assert not AuthenticatorApp.objects.exists()


def test_the_page_shows_a_qr_code_drawn_here_and_the_key(signed_in, email_user, outbox_code):
    secret = open_setup(signed_in, email_user, outbox_code)
    page = signed_in.get(SETUP).content.decode()
    assert 'src="data:image/svg+xml' in page  # drawn by segno, no image service
    assert len(secret) == 32 and re.fullmatch(r"[A-Z2-7]{32}", secret)
    # The secret waits in the flow state encrypted, never in plain text.
    state = raw(signed_in.session, "add-authenticator")
    assert secret not in str(state)
    assert crypto.decrypt(state["data"]["pending_secret"]) == secret
    assert not AuthenticatorApp.objects.exists()  # not until a code was right


def test_a_wrong_code_does_not_set_it_up(signed_in, email_user, outbox_code):
    secret = open_setup(signed_in, email_user, outbox_code)
    wrong = f"{(int(app_code(secret)) + 1) % 1_000_000:06d}"
    response = signed_in.post(SETUP, {"action": "verify", "code": wrong})
    assert response.status_code == 200
    assert "That code is not correct." in page_text(response)
    assert not AuthenticatorApp.objects.exists()


def test_a_right_code_sets_it_up_encrypted_and_tells_the_user(signed_in, email_user, outbox_code):
    secret = open_setup(signed_in, email_user, outbox_code)
    code = app_code(secret)
    response = signed_in.post(SETUP, {"action": "verify", "code": code})
    assert response.status_code == 302 and response.url == OFFER  # recovery codes next
    app = AuthenticatorApp.objects.get(user=email_user)
    assert secret not in app.secret and crypto.decrypt(app.secret) == secret
    assert app.last_used_step == totp.current_step()  # the confirming code is used up
    event = AuditEvent.objects.get(event="factor.enrol", outcome="success")
    assert event.user_id_snapshot == email_user.pk
    assert event.detail["factor"] == "authenticator-app"
    mail = OutboxMessage.objects.filter(to=email_user.email, subject__icontains="Authenticator")
    assert mail.count() == 1
    assert secret not in mail.get().body and code not in mail.get().body
    assert Message.objects.filter(recipient=email_user, subject="Authenticator app added").exists()
    page = page_text(signed_in.get("/setup/my-account/"))
    assert "Sign-in methods" in page and "Remove authenticator app" in page


def test_an_encryption_key_from_the_settings_is_used(settings):
    from cryptography.fernet import Fernet

    settings.CAREGATE_FACTOR_ENCRYPTION_KEY = Fernet.generate_key().decode()
    token = crypto.encrypt("JBSWY3DPEHPK3PXP")
    assert Fernet(settings.CAREGATE_FACTOR_ENCRYPTION_KEY.encode()).decrypt(token.encode())
    settings.CAREGATE_FACTOR_ENCRYPTION_KEY = ""
    with pytest.raises(crypto.SecretUnreadable):
        crypto.decrypt(token)


def test_a_rotated_secret_key_still_decrypts_with_the_fallback(settings):
    token = crypto.encrypt("JBSWY3DPEHPK3PXP")
    old = settings.SECRET_KEY
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 40
    with pytest.raises(crypto.SecretUnreadable):
        crypto.decrypt(token)
    settings.SECRET_KEY_FALLBACKS = [old]
    assert crypto.decrypt(token) == "JBSWY3DPEHPK3PXP"


def test_only_registered_customers_may_set_one_up(client, make_user):
    from tests.conftest import sign_in_as

    unregistered = make_user(mfa="none")
    sign_in_as(client, unregistered, method="email")
    response = client.post(ADD_APP)
    assert response.status_code == 302 and response.url == "/setup/my-account/"
    assert raw(client.session, "add-authenticator") is None


def test_a_second_app_is_refused(signed_in, email_user):
    give_app(email_user)
    response = signed_in.post(ADD_APP)
    assert response.status_code == 302 and response.url == "/setup/my-account/"
    assert raw(signed_in.session, "add-authenticator") is None


def test_not_offered_when_the_deployment_does_not_allow_it(signed_in, settings):
    settings.CAREGATE_SECOND_FACTORS = ["email", "phone"]
    assert "Sign-in methods" not in page_text(signed_in.get("/setup/my-account/"))
    assert signed_in.post(ADD_APP).status_code == 404


# --- at sign-in -----------------------------------------------------------------------


def test_sign_in_with_the_app_through_try_another_way(client, email_user):
    secret = give_app(email_user)
    to_code_page(client, email_user)
    page = client.get("/email-login/email-code/")
    assert "Try another way" in page_text(page)
    listing = page_text(client.get("/email-login/email-code/?another-way"))
    assert "Enter a code from my authenticator app" in listing
    response = choose(client, "authenticator-app")
    assert response.status_code == 302 and response.url == "/email-login/email-code/"
    assert "Open the authenticator app" in page_text(client.get("/email-login/email-code/"))
    response = verify(client, app_code(secret))
    assert response.status_code == 302 and response.url == "/home/"
    assert SESSION_KEY in client.session
    signin = AuditEvent.objects.filter(event="signin", outcome="success").latest("id")
    assert signin.detail["method"] == "email" and signin.detail["factor"] == "authenticator-app"


@pytest.mark.parametrize("offset", [-1, 1])
def test_one_step_of_drift_either_way_is_accepted(client, email_user, offset):
    secret = give_app(email_user)
    to_code_page(client, email_user)
    choose(client, "authenticator-app")
    response = verify(client, app_code(secret, offset))
    assert response.status_code == 302 and response.url == "/home/"


@pytest.mark.parametrize("offset", [-2, 2, -10])
def test_a_code_two_or_more_steps_away_is_refused(client, email_user, offset):
    secret = give_app(email_user)
    to_code_page(client, email_user)
    choose(client, "authenticator-app")
    response = verify(client, app_code(secret, offset))
    assert response.status_code == 200 and "That code is not correct." in page_text(response)
    assert SESSION_KEY not in client.session


def test_a_used_code_and_an_earlier_one_are_refused(email_user):
    secret = give_app(email_user)
    assert totp.verify(email_user.pk, app_code(secret)) is totp.TotpOutcome.OK
    assert totp.verify(email_user.pk, app_code(secret)) is totp.TotpOutcome.REPLAYED
    assert totp.verify(email_user.pk, app_code(secret, -1)) is totp.TotpOutcome.REPLAYED
    assert totp.verify(email_user.pk, app_code(secret, 1)) is totp.TotpOutcome.OK


def test_the_code_that_confirmed_the_set_up_does_not_sign_in(signed_in, email_user, outbox_code):
    secret = open_setup(signed_in, email_user, outbox_code)
    code = app_code(secret)
    signed_in.post(SETUP, {"action": "verify", "code": code})
    other = Client()
    to_code_page(other, email_user)
    choose(other, "authenticator-app")
    response = verify(other, code)
    assert "That code was already used." in page_text(response)


def test_remember_me_stays_bound_to_the_button(client, email_user):
    from caregate.verification.models import RememberedBrowser

    secret = give_app(email_user)
    to_code_page(client, email_user, remember=True)
    choose(client, "authenticator-app")
    response = verify(client, app_code(secret))
    assert response.status_code == 302 and response.url == "/home/"
    assert RememberedBrowser.objects.get(user=email_user).method == "email"


def test_phone_login_with_the_app(client, make_user):
    user = make_user(mfa="phone")
    secret = give_app(user)
    to_code_page(client, user, "phone")
    assert "Try another way" in page_text(client.get("/phone-login/phone/"))
    choose(client, "authenticator-app", "phone")
    response = verify(client, app_code(secret), "phone")
    assert response.status_code == 302 and response.url == "/home/"
    signin = AuditEvent.objects.filter(event="signin", outcome="success").latest("id")
    assert signin.detail["method"] == "phone" and signin.detail["factor"] == "authenticator-app"


def test_the_app_removed_during_sign_in_no_longer_verifies(client, email_user):
    secret = give_app(email_user)
    to_code_page(client, email_user)
    choose(client, "authenticator-app")
    AuthenticatorApp.objects.filter(user=email_user).delete()
    response = verify(client, app_code(secret))
    assert "no authenticator app" in page_text(response)
    assert SESSION_KEY not in client.session


def test_a_secret_under_a_retired_key_is_told_not_a_500(client, email_user, settings):
    settings.CAREGATE_FACTOR_ENCRYPTION_KEY = ""
    settings.SECRET_KEY = "retired-" + "k" * 60
    secret = give_app(email_user)
    settings.SECRET_KEY = "current-" + "k" * 60
    settings.SECRET_KEY_FALLBACKS = []  # the old key was dropped before any use
    to_code_page(client, email_user)
    choose(client, "authenticator-app")
    response = verify(client, app_code(secret))
    assert response.status_code == 200
    assert "must be set up again" in page_text(response)
    assert SESSION_KEY not in client.session


def test_a_secret_under_a_fallback_key_is_stored_again_under_the_current_one(email_user, settings):
    settings.CAREGATE_FACTOR_ENCRYPTION_KEY = ""
    settings.SECRET_KEY = "old-" + "k" * 60
    secret = give_app(email_user)
    before = AuthenticatorApp.objects.get(user=email_user).secret
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = "new-" + "k" * 60, ["old-" + "k" * 60]
    assert crypto.needs_rotation(before)
    assert totp.verify(email_user.pk, app_code(secret)) is totp.TotpOutcome.OK
    after = AuthenticatorApp.objects.get(user=email_user).secret
    assert after != before and not crypto.needs_rotation(after)
    # A secret already under the current key is left as it is at its next use.
    assert totp.verify(email_user.pk, app_code(secret, offset=1)) is totp.TotpOutcome.OK
    assert AuthenticatorApp.objects.get(user=email_user).secret == after


def test_wrong_codes_are_limited_per_account(client, email_user, settings):
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        "factor-verify:account": (3, 900),
    }
    secret = give_app(email_user)
    to_code_page(client, email_user)
    choose(client, "authenticator-app")
    wrong = f"{(int(app_code(secret)) + 500_000) % 1_000_000:06d}"
    for _ in range(3):
        assert "That code is not correct." in page_text(verify(client, wrong))
    response = verify(client, app_code(secret))  # even the right code, once over
    assert "Too many attempts." in page_text(response)
    assert SESSION_KEY not in client.session
    assert AuditEvent.objects.filter(event="factor.verify", outcome="throttled").exists()


# --- removal --------------------------------------------------------------------------


def test_remove_the_app(signed_in, email_user):
    give_app(email_user)
    app = AuthenticatorApp.objects.get(user=email_user)
    response = signed_in.post(REMOVE_APP, {"id": app.pk})
    assert response.status_code == 302 and response.url == "/setup/my-account/"
    assert not AuthenticatorApp.objects.filter(user=email_user).exists()
    assert AuditEvent.objects.filter(event="factor.remove", outcome="success").exists()
    assert Message.objects.filter(recipient=email_user, subject="Authenticator app removed")
    mail = OutboxMessage.objects.get(subject__icontains="Authenticator app removed")
    assert mail.to == email_user.email
    assert "Set up authenticator app" in page_text(signed_in.get("/setup/my-account/"))


def test_removal_needs_a_post(signed_in, email_user):
    give_app(email_user)
    assert signed_in.get(REMOVE_APP).status_code == 405
    assert AuthenticatorApp.objects.filter(user=email_user).exists()
