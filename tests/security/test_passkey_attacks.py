"""Attacks on passkeys (issue #11), each against the server's real WebAuthn verification
(tests/webauthn_soft.py makes the data): replayed and concurrent finishes, wrong origin
and rp id, a cloned authenticator (sign counter going back or standing still), a missing
user-verification flag, another user's credential or user handle, another user's passkey
by id on rename/remove, and CSRF."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.flows import keys
from caregate.flows.registry import FLOWS
from caregate.passkeys import ceremony
from caregate.passkeys.models import Passkey, PasskeyChallenge
from tests import passkey_steps as steps
from tests.passkey_steps import ADD, LOGIN_STAGE, PASSKEYS, SECOND_FACTOR_STAGE
from tests.webauthn_soft import UP, SoftAuthenticator

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _flows(settings, monkeypatch) -> None:
    settings.CAREGATE_PASSKEY_LOGIN = True
    monkeypatch.setitem(FLOWS, steps.SECOND_FACTOR_FLOW.name, steps.SECOND_FACTOR_FLOW)


@pytest.fixture
def me(client: Client, email_user) -> Client:
    return steps.signed_in(client, email_user)


@pytest.fixture
def device(me) -> SoftAuthenticator:
    return steps.enrol(me)


def refusals(event: str) -> list[str]:
    return [
        e.detail.get("reason", "")
        for e in AuditEvent.objects.filter(event=event, outcome="refused").order_by("id")
    ]


def signed_in_as(client: Client) -> str | None:
    return client.session.get("_auth_user_id")


def login_with(credential_of, browser: Client | None = None):
    """LOGIN WITH PASSKEY in a fresh browser with the response ``credential_of(options)``."""
    browser = browser or Client()
    options = steps.passkey_login(browser)
    return browser, steps.post_assertion(browser, LOGIN_STAGE, credential_of(options))


# --- registration --------------------------------------------------------------------------


def test_a_replayed_registration_response_is_refused(me, email_user):
    device = SoftAuthenticator()
    credential = device.create(steps.options(steps.add_page(me)))
    assert me.post(ADD, {"name": "A", "credential": credential}).status_code == 302
    Passkey.objects.all().delete()  # even with the credential gone, the challenge is used
    # Posted again: the proof of the current factor was used up with the passkey ...
    assert me.post(ADD, {"name": "A", "credential": credential}).status_code == 403
    # ... and after a new proof and a new challenge, the old response does not match it.
    steps.options(steps.add_page(me))
    assert me.post(ADD, {"name": "A", "credential": credential}).status_code == 400
    assert not Passkey.objects.exists()
    assert refusals("passkey.enrol") == ["wrong-challenge"]


def test_two_concurrent_registration_finishes_add_one_passkey(me, monkeypatch):
    """The second finish lands while the first is verifying: the ticket (one passkey per
    proof) is already used up, so it is refused before it reaches the challenge."""
    device = SoftAuthenticator()
    credential = device.create(steps.options(steps.add_page(me)))
    session_key = me.cookies[settings.SESSION_COOKIE_NAME].value
    original = ceremony.register
    inner: list[int] = []

    def racing(user, response, challenge, name):
        if not inner:
            other = Client()
            other.cookies[settings.SESSION_COOKIE_NAME] = (
                session_key  # the same session, a second request
            )
            inner.append(other.post(ADD, {"name": "B", "credential": credential}).status_code)
        return original(user, response, challenge, name)

    monkeypatch.setattr(ceremony, "register", racing)
    assert me.post(ADD, {"name": "A", "credential": credential}).status_code == 302
    assert inner == [403]
    assert list(Passkey.objects.values_list("name", flat=True)) == ["A"]
    assert refusals("passkey.enrol") == []


@pytest.mark.parametrize(
    ("create", "reason"),
    [
        ({"origin": "https://evil.example"}, "wrong-origin"),
        ({"rp_id": "evil.example"}, "wrong-rp-id"),
        ({"flags": UP | 0x40}, "no-user-verification"),
        ({"challenge": b"\x00" * 32}, "wrong-challenge"),
    ],
)
def test_a_registration_response_made_for_something_else_is_refused(me, create, reason):
    device = SoftAuthenticator()
    credential = device.create(steps.options(steps.add_page(me)), **create)
    response = me.post(ADD, {"name": "A", "credential": credential})
    assert response.status_code == 400
    assert "The passkey could not be added." in steps.page_text(response)
    assert not Passkey.objects.exists()
    assert refusals("passkey.enrol") == [reason]


def test_another_sessions_registration_challenge_cannot_be_used(me, make_user):
    """A response to one user's challenge, posted in another user's session."""
    device = SoftAuthenticator()
    credential = device.create(steps.options(steps.add_page(me)))
    other = steps.signed_in(Client(), make_user())
    steps.options(steps.add_page(other))
    assert other.post(ADD, {"name": "A", "credential": credential}).status_code == 400
    assert not Passkey.objects.exists()


def test_an_expired_registration_challenge_is_refused(me):
    device = SoftAuthenticator()
    credential = device.create(steps.options(steps.add_page(me)))
    PasskeyChallenge.objects.update(expires_at="2000-01-01T00:00:00Z")
    assert me.post(ADD, {"name": "A", "credential": credential}).status_code == 400
    assert refusals("passkey.enrol") == ["expired-challenge"]


def test_a_credential_already_enrolled_by_someone_else_is_refused(me, device, make_user):
    other = steps.signed_in(Client(), make_user())
    credential = device.create(steps.options(steps.add_page(other)))  # the same credential id
    assert other.post(ADD, {"name": "Mine", "credential": credential}).status_code == 400
    assert Passkey.objects.get().user_id != int(signed_in_as(other))


# --- authentication --------------------------------------------------------------------------


def test_a_replayed_assertion_is_refused(device, email_user):
    browser = Client()
    options = steps.passkey_login(browser)
    credential = device.get(options)
    steps.post_assertion(browser, LOGIN_STAGE, credential)
    assert signed_in_as(browser) == str(email_user.pk)
    # The same response again, in a new attempt (its challenge is another one) and in a
    # copy of the old attempt's page (its challenge was used).
    replay, _ = login_with(lambda _options: credential)
    assert signed_in_as(replay) is None
    assert refusals("passkey.verify")[-1] == "wrong-challenge"


def test_two_concurrent_assertion_posts_never_sign_in_twice(device, email_user, monkeypatch):
    """The second post lands while the first is verifying: it finds the challenge used
    up, and the flow's compare-and-set then stops the first from finishing on a state the
    second changed, which ends the attempt. No sign-in from either; a new try signs in."""
    browser = Client()
    credential = device.get(steps.passkey_login(browser))
    session_key = browser.cookies[settings.SESSION_COOKIE_NAME].value
    original = ceremony.authenticate
    inner = []

    def racing(response, challenge, user=None):
        if not inner:
            other = Client()
            other.cookies[settings.SESSION_COOKIE_NAME] = session_key
            inner.append(steps.post_assertion(other, LOGIN_STAGE, credential))
            assert signed_in_as(other) is None
        return original(response, challenge, user)

    monkeypatch.setattr(ceremony, "authenticate", racing)
    response = steps.post_assertion(browser, LOGIN_STAGE, credential)
    # The last step's compare-and-set failed: the attempt is over (back to the login page).
    assert response.status_code == 302 and response.url == "/"
    assert "Please start again from the login page." in steps.page_text(browser.get("/"))
    assert signed_in_as(browser) is None
    assert refusals("passkey.verify") == ["used-challenge"]
    assert not AuditEvent.objects.filter(event="signin", outcome="success", flow="passkey-login")
    monkeypatch.setattr(ceremony, "authenticate", original)
    steps.post_assertion(browser, LOGIN_STAGE, device.get(steps.passkey_login(browser)))
    assert signed_in_as(browser) == str(email_user.pk)


@pytest.mark.parametrize(
    ("get", "reason"),
    [
        ({"origin": "https://evil.example"}, "wrong-origin"),
        ({"rp_id": "evil.example"}, "wrong-rp-id"),
        ({"flags": UP}, "no-user-verification"),
        ({"challenge": b"\x01" * 32}, "wrong-challenge"),
    ],
)
def test_an_assertion_made_for_something_else_is_refused(device, get, reason):
    browser, response = login_with(lambda options: device.get(options, **get))
    assert signed_in_as(browser) is None
    assert "That passkey could not be used to sign in." in steps.page_text(response)
    assert refusals("passkey.verify") == [reason]
    assert Passkey.objects.get().sign_count == 0  # nothing counted


def test_a_signature_by_another_key_is_refused(device):
    forger = SoftAuthenticator(credential_id=device.credential_id, user_handle=device.user_handle)
    browser, _ = login_with(forger.get)
    assert signed_in_as(browser) is None
    assert refusals("passkey.verify") == ["bad-signature"]


@pytest.mark.parametrize("counter", [1, 3])
def test_a_cloned_authenticator_is_refused(device, counter):
    """After the counter reached 3, an assertion counting 3 again (or 1) is a copy."""
    for _ in range(3):
        browser, _ = login_with(device.get)
        assert signed_in_as(browser) is not None
    assert Passkey.objects.get().sign_count == 3
    browser, response = login_with(lambda options: device.get(options, counter=counter))
    assert signed_in_as(browser) is None
    assert "its security counter went back" in steps.page_text(response)
    event = AuditEvent.objects.filter(event="passkey.verify", outcome="refused").get()
    assert event.detail["reason"] == "cloned-authenticator"
    assert event.user_id_snapshot == Passkey.objects.get().user_id
    assert Passkey.objects.get().sign_count == 3


def test_an_authenticator_without_a_counter_keeps_working(device):
    """Counters of 0 throughout (many synced passkeys): nothing to compare, not a clone."""
    for _ in range(2):
        browser, _ = login_with(lambda options: device.get(options, counter=0))
        assert signed_in_as(browser) is not None


def test_another_users_passkey_is_refused_as_the_second_factor(device, make_user):
    """Bob's password, then Alice's passkey: only Bob's own passkeys count."""
    bob = make_user()
    browser = Client()
    options = steps.start_second_factor(browser, bob)
    assert options["allowCredentials"] == []
    response = steps.post_assertion(browser, SECOND_FACTOR_STAGE, device.get(options))
    assert signed_in_as(browser) is None
    assert "That passkey could not be used" in steps.page_text(response)
    assert refusals("passkey.verify") == ["not-yours"]


def test_a_credential_with_another_users_handle_is_refused(me, device, make_user):
    """Alice's credential id with Bob's user handle: the handle must be the account's."""
    bob = make_user()
    bob_device = steps.enrol(steps.signed_in(Client(), bob))
    browser, _ = login_with(
        lambda options: device.get(options, user_handle=bob_device.user_handle)
    )
    assert signed_in_as(browser) is None
    assert refusals("passkey.verify") == ["wrong-user-handle"]


def test_a_discoverable_login_without_a_user_handle_is_refused(device):
    browser, _ = login_with(lambda options: device.get(options, user_handle=b""))
    assert signed_in_as(browser) is None
    assert refusals("passkey.verify") == ["wrong-user-handle"]


def test_an_unknown_credential_is_refused(device):
    stranger = SoftAuthenticator(user_handle=device.user_handle)
    browser, _ = login_with(stranger.get)
    assert signed_in_as(browser) is None
    assert refusals("passkey.verify") == ["unknown-credential"]


def test_a_challenge_of_another_flow_instance_cannot_be_used(device):
    """Options fetched in one browser, the response posted in another's attempt."""
    first, second = Client(), Client()
    options = steps.passkey_login(first)
    steps.passkey_login(second)
    steps.post_assertion(second, LOGIN_STAGE, device.get(options))
    assert signed_in_as(second) is None
    assert refusals("passkey.verify") == ["wrong-challenge"]


def test_garbage_responses_are_refused_without_an_error(device):
    for junk in ["{", "[]", '{"id": 1}', "x" * 70_000, '{"id":"a","rawId":"a","response":{}}']:
        browser, response = login_with(lambda _options, junk=junk: junk)
        assert response.status_code == 200 and signed_in_as(browser) is None


# --- rename, remove, CSRF ----------------------------------------------------------------------


def test_another_users_passkey_cannot_be_renamed_or_removed(device, make_user):
    passkey = Passkey.objects.get()
    mallory = steps.signed_in(Client(), make_user())
    assert mallory.post(f"{PASSKEYS}{passkey.pk}/rename/", {"name": "pwned"}).status_code == 404
    assert mallory.post(f"{PASSKEYS}{passkey.pk}/remove/").status_code == 404
    assert mallory.post(f"{PASSKEYS}{passkey.pk + 999}/remove/").status_code == 404
    passkey.refresh_from_db()
    assert passkey.name == "Work laptop"
    assert not AuditEvent.objects.filter(event__in=["passkey.rename", "passkey.remove"]).exists()
    assert "Work laptop" not in steps.page_text(mallory.get(PASSKEYS))


def test_rename_remove_and_add_need_the_csrf_token(email_user, device):
    passkey = Passkey.objects.get()
    guarded = Client(enforce_csrf_checks=True)
    cookie = settings.SESSION_COOKIE_NAME
    guarded.cookies[cookie] = steps.signed_in(Client(), email_user).cookies[cookie].value
    assert guarded.post(f"{PASSKEYS}{passkey.pk}/remove/").status_code == 403
    assert guarded.post(f"{PASSKEYS}{passkey.pk}/rename/", {"name": "x"}).status_code == 403
    assert guarded.post(ADD, {"name": "x", "credential": "{}"}).status_code == 403
    assert guarded.post(steps.LOGIN_START).status_code == 403
    assert Passkey.objects.get().name == "Work laptop"


def test_a_signed_out_browser_cannot_touch_passkeys(device):
    passkey = Passkey.objects.get()
    anonymous = Client()
    for url in [ADD, f"{PASSKEYS}{passkey.pk}/remove/", f"{PASSKEYS}{passkey.pk}/rename/"]:
        response = anonymous.post(url, {"name": "x"})
        assert response.status_code == 302 and response.url.startswith("/?next=")
    assert Passkey.objects.get().name == "Work laptop"


def test_the_add_page_challenge_is_bound_to_the_session_pointer(me):
    """A challenge id can only come from this session: a posted one is ignored."""
    device = SoftAuthenticator()
    credential = device.create(steps.options(steps.add_page(me)))
    session = me.session
    session.pop("caregate.passkeys.enrol")
    session.save()
    assert (
        me.post(ADD, {"name": "A", "credential": credential, "challenge": "x"}).status_code == 400
    )
    assert refusals("passkey.enrol") == ["no-challenge"]
    assert keys.AUTH_TIME in me.session
