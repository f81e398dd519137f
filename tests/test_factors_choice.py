"""The factor choice at sign-in ("Try another way", issue #11): after the password of LOGIN
WITH EMAIL / LOGIN WITH PHONE, a user with other enrolled, allowed factors can pick one;
the button's own factor comes first; the choice is kept in the flow state; Remember Me
stays bound to the button; the sign-in's audit event names the factor used."""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY

from caregate.audit.models import AuditEvent
from caregate.factors import registry
from caregate.factors.models import AuthenticatorApp
from caregate.verification.models import RememberedBrowser
from tests.factor_steps import (
    app_code,
    choose,
    give_app,
    give_codes,
    page_text,
    to_code_page,
    verify,
)
from tests.flowstate import raw

pytestmark = pytest.mark.django_db
EMAIL_CODE = "/email-login/email-code/"


def test_no_other_way_no_link(client, email_user):
    to_code_page(client, email_user)
    assert "Try another way" not in page_text(client.get(EMAIL_CODE))


def test_the_list_puts_the_buttons_own_factor_first(client, email_user):
    give_app(email_user)
    give_codes(email_user)
    to_code_page(client, email_user)
    page = client.get(f"{EMAIL_CODE}?another-way").content.decode()
    labels = [
        "Email a code to my email address",
        "Enter a code from my authenticator app",
        "Enter a recovery code",
    ]
    positions = [page.index(label) for label in labels]
    assert positions == sorted(positions)
    # Showing the list writes nothing.
    assert raw(client.session, "email-login")["stages"] == {}


def test_a_factor_the_deployment_does_not_allow_is_not_offered(client, email_user, settings):
    give_app(email_user)
    give_codes(email_user)
    settings.CAREGATE_SECOND_FACTORS = ["email", "phone", "recovery-code"]
    to_code_page(client, email_user)
    listing = page_text(client.get(f"{EMAIL_CODE}?another-way"))
    assert "authenticator app" not in listing and "Enter a recovery code" in listing
    response = choose(client, "authenticator-app")
    assert "That way of signing in is not available for your account." in page_text(response)


def test_a_chosen_factor_disallowed_afterwards_falls_back_to_the_button(
    client, email_user, settings
):
    give_app(email_user)
    to_code_page(client, email_user)
    choose(client, "authenticator-app")
    settings.CAREGATE_SECOND_FACTORS = ["email", "phone"]
    assert "Send verification code" in page_text(client.get(EMAIL_CODE))


def test_the_choice_is_kept_in_the_flow_state_and_can_go_back(client, email_user, outbox_code):
    give_app(email_user)
    to_code_page(client, email_user)
    choose(client, "authenticator-app")
    state = raw(client.session, "email-login")
    assert state["stages"]["email-code:factor"] == {"factor": "authenticator-app"}
    assert "Try another way" in page_text(client.get(EMAIL_CODE))
    choose(client, "email")
    assert raw(client.session, "email-login")["stages"].get("email-code:factor", {}) == {}
    client.post(EMAIL_CODE, {"action": "send"})
    client.post(EMAIL_CODE, {"action": "verify", "code": outbox_code(email_user.email)})
    response = client.post(EMAIL_CODE, {"action": "continue"})
    assert response.status_code == 302 and response.url == "/home/"
    signin = AuditEvent.objects.filter(event="signin", outcome="success").latest("id")
    assert signin.detail["factor"] == "email"
    assert AuditEvent.objects.filter(event="factor.choose", detail__channel="email").exists()


def test_an_unknown_factor_is_refused(client, email_user):
    give_app(email_user)
    to_code_page(client, email_user)
    response = choose(client, "telepathy")
    assert response.status_code == 200
    assert "not available" in page_text(response)
    assert raw(client.session, "email-login")["stages"].get("email-code:factor", {}) == {}


def test_remember_me_is_the_phone_buttons_after_a_recovery_code(client, make_user):
    user = make_user(mfa="phone")
    codes = give_codes(user)
    to_code_page(client, user, "phone", remember=True)
    choose(client, "recovery-code", "phone")
    response = verify(client, codes[0], "phone")
    assert response.status_code == 302 and response.url == "/home/"
    assert RememberedBrowser.objects.get(user=user).method == "phone"
    signin = AuditEvent.objects.filter(event="signin", outcome="success").latest("id")
    assert signin.detail["method"] == "phone" and signin.detail["factor"] == "recovery-code"


def test_the_phone_is_still_checked_when_it_is_the_factor(client, make_user):
    from caregate.accounts.models import User
    from tests.phone_steps import sms_code

    user = make_user(mfa="phone")
    give_app(user)
    to_code_page(client, user, "phone")
    client.post("/phone-login/phone/", {"action": "sms"})
    code = sms_code("+12025550143")
    User.objects.filter(pk=user.pk).update(phone_number="+12025550199")
    client.post("/phone-login/phone/", {"action": "verify-sms", "code": code})
    assert SESSION_KEY not in client.session


def test_a_password_change_meanwhile_ends_the_attempt(client, email_user):
    secret = give_app(email_user)
    to_code_page(client, email_user)
    choose(client, "authenticator-app")
    email_user.set_password("Another-Password-123")
    email_user.save()
    response = verify(client, app_code(secret))
    assert response.status_code == 302 and response.url == "/"  # the login page
    assert SESSION_KEY not in client.session
    assert raw(client.session, "email-login") is None


def test_registry_strongest_and_choices(email_user):
    default = registry.SecondFactor(
        "email", "Email", stage=None, enrolled=lambda u: True, strength=10
    )
    assert [f.key for f in registry.choices_for(email_user, default=default)] == ["email"]
    give_codes(email_user)
    give_app(email_user)
    keys = [f.key for f in registry.choices_for(email_user, default=default)]
    assert keys[0] == "email" and keys[1:] == ["authenticator-app", "recovery-code"]
    assert registry.strongest(email_user, floor=10).key == "authenticator-app"
    assert registry.strongest(email_user, floor=30) is None


def test_the_link_comes_from_what_the_password_step_noted(client, email_user):
    """The code page decides on the link from the factors noted at the password step (no
    factor lookups per render); the list itself re-reads them, so a factor removed since
    is not offered."""
    give_app(email_user)
    to_code_page(client, email_user)
    assert raw(client.session, "email-login")["data"]["enrolled_factors"] == ["authenticator-app"]
    AuthenticatorApp.objects.filter(user=email_user).delete()
    assert "Try another way" in page_text(client.get(EMAIL_CODE))
    listing = page_text(client.get(f"{EMAIL_CODE}?another-way"))
    assert "authenticator app" not in listing
    assert "That way of signing in is not available" in page_text(
        choose(client, "authenticator-app")
    )
