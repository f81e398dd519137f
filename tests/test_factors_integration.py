"""The passkey as the second factor through "Try another way" (issue #11), end to end with
the test client: enrolled from the Passkeys page with the software authenticator, then
chosen on LOGIN WITH EMAIL's and LOGIN WITH PHONE's code page. Remember Me stays bound to
the button used, whatever factor verified the user."""

from __future__ import annotations

import pytest
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.passkeys.models import Passkey
from caregate.verification.models import RememberedBrowser
from tests import passkey_steps as steps
from tests.factor_steps import CODE_PAGES, choose, to_code_page
from tests.phone_steps import is_signed_in, phone_login
from tests.test_remember_me import idle_logoff, skips
from tests.webauthn_soft import SoftAuthenticator

pytestmark = pytest.mark.django_db

OTHER_BUTTON = {"email": "phone", "phone": "email"}


@pytest.fixture(autouse=True)
def _no_cooldown(settings) -> None:
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0


def enrolled_user(make_user, method: str) -> tuple[object, SoftAuthenticator]:
    """A user of ``method`` who added a passkey from Setup → My Account → Passkeys."""
    user = make_user(mfa=method)
    client = Client()
    if method == "phone":
        response = phone_login(client, user, to=user.phone_number)
        assert response.status_code == 302 and response.url == "/home/", response
    else:
        steps.signed_in(client, user)
    device = steps.enrol(client)
    client.post("/logout/")
    return user, device


def passkey_page(client: Client, method: str):
    """Try another way → Use a passkey: the code page now asks for the passkey."""
    listing = client.get(CODE_PAGES[method] + "?another-way")
    assert "Use a passkey" in steps.page_text(listing)
    response = choose(client, "passkey", method)
    assert response.status_code == 302 and response.url == CODE_PAGES[method], response
    page = client.get(CODE_PAGES[method])
    assert "Use passkey" in steps.page_text(page)
    return page


def last_signin() -> AuditEvent:
    return AuditEvent.objects.filter(event="signin", outcome="success").latest("id")


@pytest.mark.parametrize("method", ["email", "phone"])
def test_the_passkey_signs_in_through_try_another_way(client, make_user, method) -> None:
    user, device = enrolled_user(make_user, method)
    to_code_page(client, user, method)
    page = passkey_page(client, method)
    # Only this user's passkey is asked for.
    assert [c["id"] for c in steps.options(page)["allowCredentials"]] == [device.id]
    response = steps.post_assertion(client, CODE_PAGES[method], device.get(steps.options(page)))
    assert response.status_code == 302 and response.url == "/home/"
    assert client.session["_auth_user_id"] == str(user.pk)
    signin = last_signin()
    assert signin.detail["method"] == method and signin.detail["factor"] == "passkey"
    assert Passkey.objects.get(user=user).sign_count == device.sign_count
    assert not RememberedBrowser.objects.filter(user=user).exists()


@pytest.mark.parametrize("method", ["email", "phone"])
def test_remember_me_stays_bound_to_the_button(client, make_user, method) -> None:
    user, device = enrolled_user(make_user, method)
    to_code_page(client, user, method, remember=True)
    page = passkey_page(client, method)
    response = steps.post_assertion(client, CODE_PAGES[method], device.get(steps.options(page)))
    assert response.status_code == 302 and response.url == "/home/"
    assert RememberedBrowser.objects.get(user=user).method == method
    idle_logoff(client)
    # The button used skips the prompts; the other button asks for everything.
    assert not skips(client, OTHER_BUTTON[method])
    assert skips(client, method)
    assert last_signin().detail["method"] == f"remembered-{method}"


@pytest.mark.parametrize("method", ["email", "phone"])
def test_a_passkey_of_another_user_does_not_sign_in(client, make_user, method) -> None:
    user, _ = enrolled_user(make_user, method)
    _, theirs = enrolled_user(make_user, "email")
    to_code_page(client, user, method, remember=True)
    page = passkey_page(client, method)
    response = steps.post_assertion(client, CODE_PAGES[method], theirs.get(steps.options(page)))
    assert response.status_code == 200
    assert "That passkey could not be used" in steps.page_text(response)
    assert not is_signed_in(client)
    assert not RememberedBrowser.objects.filter(user=user).exists()


def test_a_passkey_removed_after_the_choice_does_not_sign_in(client, make_user) -> None:
    user, device = enrolled_user(make_user, "email")
    to_code_page(client, user, "email")
    page = passkey_page(client, "email")
    Passkey.objects.filter(user=user).delete()
    steps.post_assertion(client, CODE_PAGES["email"], device.get(steps.options(page)))
    assert not is_signed_in(client)


def test_without_a_passkey_it_cannot_be_chosen(client, make_user) -> None:
    user = make_user(mfa="email")
    to_code_page(client, user, "email")
    response = choose(client, "passkey", "email")
    assert "That way of signing in is not available" in steps.page_text(response)
    assert not is_signed_in(client)
