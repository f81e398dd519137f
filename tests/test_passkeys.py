"""Passkeys (issue #11) through the test client, with real WebAuthn data from a software
authenticator (tests/webauthn_soft.py), so that py_webauthn's verification runs: the
Passkeys page (list, add, rename, remove), the passkey as the second factor after the
password, LOGIN WITH PASSKEY, the notices and audit events, and Reset Registration."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest
from django.test import Client

from caregate.accounts.models import User
from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.factors import registry
from caregate.flows import keys
from caregate.flows.registry import FLOWS
from caregate.passkeys.models import Passkey, PasskeyChallenge, PasskeyUser
from caregate.portal.models import Message
from tests import passkey_steps as steps
from tests.passkey_steps import ADD, LOGIN_STAGE, PASSKEYS, SECOND_FACTOR_STAGE
from tests.webauthn_soft import SoftAuthenticator

pytestmark = pytest.mark.django_db


@pytest.fixture
def second_factor_flow() -> Iterator[None]:
    with mock.patch.dict(FLOWS, {steps.SECOND_FACTOR_FLOW.name: steps.SECOND_FACTOR_FLOW}):
        yield


@pytest.fixture
def me(client: Client, email_user) -> Client:
    return steps.signed_in(client, email_user)


def events(name: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event=name).order_by("id"))


# --- the Passkeys page ------------------------------------------------------------------


def test_the_passkeys_page_lists_none_at_first_and_says_why_they_are_safer(me):
    text = steps.page_text(me.get(PASSKEYS))
    assert "You have no passkeys yet." in text
    assert "safer than a text message" in text
    assert 'href="/account/passkeys/add/"' in text


def test_my_account_links_to_the_passkeys_page(me):
    assert 'href="/account/passkeys/"' in me.get("/setup/my-account/").content.decode()


def test_passkeys_are_not_offered_where_the_deployment_does_not_allow_them(me, settings):
    settings.CAREGATE_SECOND_FACTORS = ["email", "phone"]
    assert me.get(PASSKEYS).status_code == 404
    assert me.get(ADD).status_code == 404


def test_the_passkeys_page_needs_a_sign_in(client):
    response = client.get(PASSKEYS)
    assert response.status_code == 302 and response.url.startswith("/?next=")


def test_registration_options_ask_for_a_discoverable_user_verified_credential(me, email_user):
    options = steps.options(steps.add_page(me))
    assert options["rp"] == {"id": "localhost", "name": options["rp"]["name"]}
    assert options["authenticatorSelection"]["residentKey"] == "required"
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["attestation"] == "none"
    handle = PasskeyUser.objects.get(user=email_user).handle
    # The user handle is random, not the database id or the address.
    assert options["user"]["id"] == handle
    assert str(email_user.pk) not in {handle, options["user"]["id"]}
    assert options["user"]["name"] == email_user.email
    assert options["excludeCredentials"] == []


def test_adding_a_passkey_stores_it_audits_it_and_tells_the_user(me, email_user):
    device = steps.enrol(me, "Work laptop")
    passkey = Passkey.objects.get(user=email_user)
    assert passkey.name == "Work laptop"
    assert passkey.credential_id == device.id
    assert passkey.transports == ["internal"]
    text = steps.page_text(me.get(PASSKEYS))
    assert "Your passkey “Work laptop” was added." in text
    assert "Not used yet" in text
    (event,) = events("passkey.enrol")
    assert (event.outcome, event.user_id_snapshot) == ("success", email_user.pk)
    assert event.detail["passkey_id"] == passkey.pk
    assert Message.objects.filter(recipient=email_user, subject="New passkey").exists()
    mail = OutboxMessage.objects.filter(to=email_user.email, subject__contains="New passkey")
    assert "Work laptop" in mail.get().body


def test_a_second_passkey_excludes_the_first(me):
    first = steps.enrol(me, "Phone")
    options = steps.options(steps.add_page(me))
    assert [c["id"] for c in options["excludeCredentials"]] == [first.id]


def test_adding_needs_a_name(me, email_user):
    device = SoftAuthenticator()
    credential = device.create(steps.options(steps.add_page(me)))
    response = me.post(ADD, {"name": "   ", "credential": credential})
    assert "Please give the passkey a name" in steps.page_text(response)
    assert not Passkey.objects.exists()


def test_adding_without_a_response_says_the_browser_sent_none(me):
    steps.options(steps.add_page(me))
    response = me.post(ADD, {"name": "Laptop", "credential": ""})
    assert response.status_code == 400
    assert "Your browser did not send a passkey." in steps.page_text(response)
    assert events("passkey.enrol")[0].detail["reason"] == "no-response"


def test_adding_needs_the_current_factor_first(me, email_user):
    """Even right after the sign-in: a session alone does not add a passkey."""
    response = me.get(ADD)
    assert response.status_code == 403
    assert "we first check that it is you" in steps.page_text(response)
    assert me.post(ADD, {"name": "Laptop", "credential": "{}"}).status_code == 403
    assert not PasskeyChallenge.objects.exists()
    steps.verify_for_passkey(me)
    assert me.get(ADD).status_code == 200
    assert PasskeyChallenge.objects.count() == 1


def test_one_proof_adds_one_passkey(me):
    steps.enrol(me)
    assert me.get(ADD).status_code == 403  # the next passkey proves the factor again
    steps.enrol(me, name="Home PC")
    assert Passkey.objects.count() == 2


def test_the_proof_expires(me, settings):
    steps.verify_for_passkey(me)
    from django.core.cache import cache

    cache.clear()  # as when CAREGATE_PASSKEY_REAUTH_SECONDS have passed
    assert me.get(ADD).status_code == 403


def test_a_remembered_browser_proves_the_factor_like_any_session(me):
    session = me.session
    session[keys.SIGNIN_METHOD] = "remembered-email"
    session.save()
    assert me.get(ADD).status_code == 403
    steps.verify_for_passkey(me)
    assert me.get(ADD).status_code == 200


def test_renaming_a_passkey(me, email_user):
    steps.enrol(me, "Laptop")
    passkey = Passkey.objects.get()
    response = me.post(f"{PASSKEYS}{passkey.pk}/rename/", {"name": "  Old   laptop "})
    assert response.status_code == 302
    passkey.refresh_from_db()
    assert passkey.name == "Old laptop"
    assert events("passkey.rename")[0].detail["passkey_id"] == passkey.pk
    assert "The passkey is now called “Old laptop”." in steps.page_text(me.get(PASSKEYS))


def test_renaming_to_nothing_is_refused(me):
    steps.enrol(me, "Laptop")
    passkey = Passkey.objects.get()
    me.post(f"{PASSKEYS}{passkey.pk}/rename/", {"name": ""})
    passkey.refresh_from_db()
    assert passkey.name == "Laptop"
    assert not events("passkey.rename")


def test_removing_a_passkey_audits_it_and_tells_the_user(me, email_user):
    steps.enrol(me, "Laptop")
    passkey = Passkey.objects.get()
    response = me.post(f"{PASSKEYS}{passkey.pk}/remove/")
    assert response.status_code == 302
    assert not Passkey.objects.exists()
    assert events("passkey.remove")[0].detail["passkey_id"] == passkey.pk
    assert Message.objects.filter(recipient=email_user, subject="Passkey removed").exists()
    assert OutboxMessage.objects.filter(subject__contains="Passkey removed").count() == 1
    assert "The passkey “Laptop” was removed" in steps.page_text(me.get(PASSKEYS))


def test_rename_and_remove_are_post_only(me):
    steps.enrol(me, "Laptop")
    passkey = Passkey.objects.get()
    assert me.get(f"{PASSKEYS}{passkey.pk}/remove/").status_code == 405
    assert me.get(f"{PASSKEYS}{passkey.pk}/rename/").status_code == 405
    assert Passkey.objects.exists()


def test_after_enrolment_recovery_codes_are_offered_when_the_factors_app_offers_them(me):
    offered = []

    def offer(request, user):
        offered.append(user.pk)
        return "/setup/my-account/"

    fake = mock.Mock(offer_after_enrolment=offer)
    with mock.patch("caregate.passkeys.views.import_module", return_value=fake):
        device = SoftAuthenticator()
        credential = device.create(steps.options(steps.add_page(me)))
        response = me.post(ADD, {"name": "Laptop", "credential": credential})
    assert response.status_code == 302 and response.url == "/setup/my-account/"
    assert offered == [Passkey.objects.get().user_id]
    # Nothing to offer (codes already there): back to the list.
    with mock.patch(
        "caregate.passkeys.views.import_module",
        return_value=mock.Mock(offer_after_enrolment=lambda r, u: None),
    ):
        steps.enrol(me, "Second")
    assert steps.page_text(me.get(PASSKEYS)).count("Remove passkey:") == 2


# --- the passkey as the second factor ------------------------------------------------------


def test_the_passkey_factor_is_registered_as_the_strongest_phishing_resistant_one(email_user):
    factor = registry.get("passkey")
    assert factor is not None and factor.phishing_resistant
    assert factor.strength == max(f.strength for f in registry.registered())
    assert not factor.enrolled(email_user)
    Passkey.objects.create(user=email_user, name="x", credential_id="abc", public_key=b"k")
    assert factor.enrolled(email_user)


def test_passkey_after_the_password_signs_in(second_factor_flow, me, email_user):
    device = steps.enrol(me)
    other = Client()
    options = steps.start_second_factor(other, email_user)
    # Only the user's own passkeys are asked for.
    assert [c["id"] for c in options["allowCredentials"]] == [device.id]
    assert options["userVerification"] == "required"
    response = steps.post_assertion(other, SECOND_FACTOR_STAGE, device.get(options))
    assert response.status_code == 302 and response.url == "/home/"
    assert other.session[keys.SIGNIN_METHOD] == "email-passkey"
    passkey = Passkey.objects.get()
    assert passkey.sign_count == 1 and passkey.last_used_at is not None
    (event,) = events("passkey.verify")
    assert (event.outcome, event.detail["mode"]) == ("success", "second-factor")


def test_the_second_factor_page_works_without_passkey_support_by_saying_so(
    second_factor_flow, me, email_user
):
    steps.enrol(me)
    other = Client()
    steps.start_second_factor(other, email_user)
    response = steps.post_assertion(other, SECOND_FACTOR_STAGE, "")
    text = steps.page_text(response)
    assert "Your browser did not send a passkey." in text
    assert "This browser cannot use passkeys." in text  # shown by the script when needed
    assert "_auth_user_id" not in other.session


# --- LOGIN WITH PASSKEY --------------------------------------------------------------------


def test_login_with_passkey_is_hidden_unless_the_deployment_turns_it_on(client, settings):
    settings.CAREGATE_PASSKEY_LOGIN = False
    assert "LOGIN WITH PASSKEY" not in client.get("/").content.decode()
    assert client.post(steps.LOGIN_START).status_code == 404
    settings.CAREGATE_PASSKEY_LOGIN = True
    assert "LOGIN WITH PASSKEY" in client.get("/").content.decode()


def test_login_with_passkey_signs_in_without_a_username(settings, me, email_user):
    settings.CAREGATE_PASSKEY_LOGIN = True
    device = steps.enrol(me)
    browser = Client()
    options = steps.passkey_login(browser)
    assert options["allowCredentials"] == []  # discoverable: the browser offers its own
    assert options["rpId"] == "localhost"
    response = steps.post_assertion(browser, LOGIN_STAGE, device.get(options))
    assert response.status_code == 302 and response.url == "/home/"
    assert browser.session["_auth_user_id"] == str(email_user.pk)
    assert browser.session[keys.SIGNIN_METHOD] == "passkey"
    signin = AuditEvent.objects.filter(event="signin", outcome="success").last()
    assert signin.detail["method"] == "passkey" and signin.flow == "passkey-login"
    assert "Not used yet" not in steps.page_text(browser.get(PASSKEYS))


def test_a_passkey_sign_in_can_add_another_passkey(settings, me, email_user):
    settings.CAREGATE_PASSKEY_LOGIN = True
    device = steps.enrol(me)
    browser = Client()
    steps.post_assertion(browser, LOGIN_STAGE, device.get(steps.passkey_login(browser)))
    steps.enrol(browser, "Second")
    assert Passkey.objects.filter(user=email_user).count() == 2


def test_a_disabled_account_cannot_sign_in_with_its_passkey(settings, me, email_user):
    settings.CAREGATE_PASSKEY_LOGIN = True
    device = steps.enrol(me)
    email_user.is_active = False
    email_user.save()
    browser = Client()
    response = steps.post_assertion(browser, LOGIN_STAGE, device.get(steps.passkey_login(browser)))
    assert response.status_code == 302 and response.url == "/"
    assert "_auth_user_id" not in browser.session


# --- Reset Registration ---------------------------------------------------------------------


def test_reset_registration_removes_the_users_passkeys(client, make_user, email_user, settings):
    settings.CAREGATE_PASSKEY_LOGIN = True
    device = steps.enrol(steps.signed_in(Client(), email_user))
    admin = make_user(is_org_admin=True)
    admin_client = steps.signed_in(client, admin)
    response = admin_client.post(
        f"/setup/users/{email_user.pk}/reset-registration/", {"user": email_user.pk}
    )
    assert response.status_code == 302
    assert not Passkey.objects.filter(user=email_user).exists()
    assert not PasskeyUser.objects.filter(user=email_user).exists()
    assert AuditEvent.objects.filter(event="passkey.remove", outcome="reset").count() == 1
    browser = Client()
    response = steps.post_assertion(browser, LOGIN_STAGE, device.get(steps.passkey_login(browser)))
    assert "_auth_user_id" not in browser.session
    assert "That passkey could not be used" in steps.page_text(response)


def test_showing_the_add_page_again_keeps_one_challenge(me, email_user, make_user):
    other = steps.signed_in(Client(), make_user(username="other.user", email="o@example.com"))
    steps.verify_for_passkey(other)
    other.get(ADD)
    steps.verify_for_passkey(me)
    for _ in range(30):
        assert me.get(ADD).status_code == 200
    assert PasskeyChallenge.objects.filter(user_id=email_user.pk).count() == 1
    assert PasskeyChallenge.objects.count() == 2  # the other user's is untouched
    credential = SoftAuthenticator().create(steps.options(me.get(ADD)))
    response = me.post(ADD, {"name": "Laptop", "credential": credential})
    assert response.status_code == 302  # the newest challenge still works


def test_showing_the_passkey_login_again_keeps_one_challenge_per_attempt(settings, me):
    settings.CAREGATE_PASSKEY_LOGIN = True
    device = steps.enrol(me)
    browser, stranger = Client(), Client()
    steps.passkey_login(stranger)
    steps.passkey_login(browser)
    for _ in range(30):
        assert browser.get(LOGIN_STAGE).status_code == 200
    login = PasskeyChallenge.objects.filter(purpose=PasskeyChallenge.Purpose.LOGIN)
    assert login.count() == 2  # this attempt's newest, and the stranger's
    latest = steps.options(browser.get(LOGIN_STAGE))
    response = steps.post_assertion(browser, LOGIN_STAGE, device.get(latest))
    assert response.status_code == 302 and response.url == "/home/"


@pytest.mark.parametrize(
    "change",
    [
        {"email": "someone.else@example.com"},
        {"phone_number": "+12025550199", "mfa_method": "phone"},
        {"mfa_method": "none"},
    ],
)
def test_a_factor_changed_after_the_proof_voids_the_ticket(me, email_user, change):
    """The user reacting to a stolen phone or mailbox (or a reset) in the ticket's minutes:
    a session that proved the old factor cannot add a passkey with that proof."""
    steps.verify_for_passkey(me)
    assert me.get(ADD).status_code == 200
    User.objects.filter(pk=email_user.pk).update(**change)
    assert me.get(ADD).status_code == 403
    assert not Passkey.objects.exists()


# A passkey or app replaced after the proof, a policy switched on, two tabs at once:
# tests/security/test_attack_session13c_passkey_ticket.py.


def test_a_change_to_the_name_leaves_the_ticket(me, email_user):
    steps.verify_for_passkey(me)
    User.objects.filter(pk=email_user.pk).update(first_name="Renamed")
    assert me.get(ADD).status_code == 200


def test_a_refused_registration_gives_the_ticket_back_without_more_time(me):
    from django.core.cache import cache

    steps.verify_for_passkey(me)
    key = f"caregate:passkeys:add-ticket:{me.session.session_key}"
    granted = cache.get(key)["until"]
    steps.options(me.get(ADD))
    assert me.post(ADD, {"name": "Laptop", "credential": "{}"}).status_code == 400
    assert cache.get(key)["until"] == granted  # back, for the time it had left
    assert me.get(ADD).status_code == 200
