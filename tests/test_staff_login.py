"""The staff LOGIN against a real OpenID Connect provider (oidc-provider on loopback,
tests/oidc/), driven through Django's test client; the provider's own login form is
posted with `requests`, as a browser would. The browser version of these walks is
tests/browser/test_staff_login.py.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from django.contrib.auth import SESSION_KEY
from django.db import connection
from django.test import Client

from caregate.accounts.models import User
from caregate.audit.models import AuditEvent
from caregate.flows import keys
from caregate.flows.models import FlowInstance
from tests.oidc.idp import TestIdentityProvider, ensure_node_modules

BASE = "http://testserver"
CALLBACK = f"{BASE}/staff-login/identity-provider/"
CLIENT_ID = "caregate-tests"
SECRET = "a-client-secret-for-the-tests-only-0123456789"
ACCOUNTS: dict[str, dict[str, Any]] = {
    "sam": {
        "sub": "sam-0001",
        "email": "sam.support@staff.example.org",
        "email_verified": True,
        "given_name": "Sam",
        "family_name": "Support",
        "groups": ["caregate-support"],
        "amr": ["pwd", "mfa"],
        "acr": "urn:test:mfa",
    },
    "stella": {
        "sub": "stella-0002",
        "email": "stella.staff@staff.example.org",
        "given_name": "Stella",
        "family_name": "Staff",
        "groups": ["caregate-staff"],
        "amr": ["pwd", "mfa"],
    },
    "nora": {
        "sub": "nora-0003",
        "email": "nora.norole@staff.example.org",
        "given_name": "Nora",
        "family_name": "Norole",
        "groups": ["cafeteria"],
        "amr": ["pwd", "mfa"],
    },
    "pat": {
        "sub": "pat-0004",
        "email": "pat.password@staff.example.org",
        "given_name": "Pat",
        "family_name": "Password",
        "groups": ["caregate-support"],
        "amr": ["pwd"],
    },
}


@pytest.fixture(scope="module")
def idp() -> Iterator[TestIdentityProvider]:
    ensure_node_modules()
    client = {
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "redirect_uris": [CALLBACK],
        "post_logout_redirect_uris": [f"{BASE}/"],
    }
    with TestIdentityProvider.running(clients=[client], accounts=ACCOUNTS) as provider:
        yield provider


@pytest.fixture(autouse=True)
def _configured(settings, idp: TestIdentityProvider) -> Iterator[None]:
    idp.reset()
    idp.set_accounts(ACCOUNTS)
    settings.CAREGATE_PUBLIC_BASE_URL = BASE
    settings.CAREGATE_OIDC_ISSUER = idp.issuer
    settings.CAREGATE_OIDC_CLIENT_ID = CLIENT_ID
    settings.CAREGATE_OIDC_CLIENT_SECRET = SECRET
    settings.CAREGATE_OIDC_ROLE_MAP = "caregate-support=support,caregate-staff=staff"
    settings.CAREGATE_OIDC_REQUIRE_MFA = True
    settings.CAREGATE_INTERNAL_EMAIL_DOMAIN = "staff.example.org"
    settings.CAREGATE_BRAND_NAME = "Kepro"
    yield
    idp.reset()


def to_provider(client: Client) -> str:
    """Press the staff LOGIN: the address Caregate sends the browser to."""
    response = client.post("/staff/login/")
    assert response.status_code == 302 and response.url == "/staff-login/identity-provider/"
    response = client.get(response.url)
    assert response.status_code == 302, response.content.decode()[:500]
    return response.url


def sign_in_at_provider(browser: requests.Session, authorize: str, login: str) -> str:
    """The provider's login form, then its redirects up to Caregate's callback."""
    response = browser.get(authorize, allow_redirects=False)
    while response.status_code in (302, 303) and not response.headers["Location"].startswith(BASE):
        response = browser.get(
            urljoin(response.url, response.headers["Location"]), allow_redirects=False
        )
    if response.status_code == 200:  # the login form (no session at the provider yet)
        action = re.search(r'<form method="post" action="([^"]+)"', response.text).group(1)
        response = browser.post(
            urljoin(response.url, action),
            data={"login": login, "password": "anything"},
            allow_redirects=False,
        )
        while response.status_code in (302, 303) and not response.headers["Location"].startswith(
            BASE
        ):
            response = browser.get(
                urljoin(response.url, response.headers["Location"]), allow_redirects=False
            )
    location = response.headers.get("Location", "")
    assert location.startswith(CALLBACK), (response.status_code, response.text[:500])
    return location[len(BASE) :]


def staff_sign_in(client: Client, login: str, browser: requests.Session | None = None):
    callback = sign_in_at_provider(browser or requests.Session(), to_provider(client), login)
    return client.get(callback), callback


def signed_in_as(client: Client) -> User | None:
    user_id = client.session.get(SESSION_KEY)
    return User.objects.get(pk=user_id) if user_id else None


def events(name: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event=name).order_by("id"))


def test_a_support_staff_member_signs_in_and_gets_the_console(client: Client, db) -> None:
    response, _ = staff_sign_in(client, "sam")
    assert response.status_code == 302 and response.url == "/home/"
    user = signed_in_as(client)
    assert user is not None and user.email == "sam.support@staff.example.org"
    assert user.staff_roles == ["support"] and user.organization is None
    assert client.session[keys.SIGNIN_METHOD] == "staff-sso"
    assert client.get("/home/").status_code == 200
    assert client.get("/support/").status_code == 200
    accepted = events("staff-login.account")[-1]
    assert accepted.outcome == "success" and accepted.user_id_snapshot == user.pk
    assert accepted.detail["amr"] == ["pwd", "mfa"] and accepted.detail["acr"] == "urn:test:mfa"
    assert not FlowInstance.objects.filter(flow="staff-login").exists()


def test_a_staff_member_without_the_support_role_is_denied_the_console(client: Client, db) -> None:
    staff_sign_in(client, "stella")
    user = signed_in_as(client)
    assert user is not None and user.staff_roles == ["staff"]
    assert client.get("/home/").status_code == 200
    assert client.get("/support/").status_code == 403


def test_roles_follow_the_provider_at_each_sign_in(client: Client, idp, db) -> None:
    staff_sign_in(client, "sam")
    client.post("/logout/")
    changed = {**ACCOUNTS, "sam": {**ACCOUNTS["sam"], "groups": ["caregate-staff"]}}
    idp.set_accounts(changed)
    staff_sign_in(Client(), "sam")
    assert User.objects.get(oidc_subject="sam-0001").staff_roles == ["staff"]


def test_no_mapped_role_is_refused(client: Client, db) -> None:
    response, _ = staff_sign_in(client, "nora")
    assert response.status_code == 403
    assert "does not give you access to this portal" in response.content.decode()
    assert signed_in_as(client) is None and not User.objects.exists()
    assert events("staff-login.account")[-1].outcome == "no-role"


def test_a_token_without_mfa_is_refused_when_required(client: Client, settings, db) -> None:
    response, _ = staff_sign_in(client, "pat")
    assert response.status_code == 403 and signed_in_as(client) is None
    assert "multi-factor authentication" in response.content.decode()
    assert events("staff-login.account")[-1].outcome == "no-mfa"
    settings.CAREGATE_OIDC_REQUIRE_MFA = False
    response, _ = staff_sign_in(Client(), "pat")
    assert response.status_code == 302 and response.url == "/home/"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("wrong-audience", "bad-claim-aud"),
        ("bad-signature", "bad-signature"),
        ("foreign-key", "bad-signature"),
        ("expired", "bad-claim-exp"),
        ("wrong-issuer", "bad-claim-iss"),
        ("wrong-nonce", "bad-claim-nonce"),
        ("alg-none", "bad-signature"),
    ],
)
def test_a_bad_id_token_is_refused(client: Client, idp, db, mode, reason) -> None:
    idp.set_mode(mode)
    response, _ = staff_sign_in(client, "sam")
    assert response.status_code == 403
    assert "could not be verified" in response.content.decode()
    assert signed_in_as(client) is None and not User.objects.exists()
    assert events("staff-login.token")[-1].outcome == reason


def test_a_replayed_callback_is_refused(client: Client, db) -> None:
    response, callback = staff_sign_in(client, "sam")
    assert response.url == "/home/"
    client.post("/logout/")
    again = client.get(callback)
    assert again.status_code == 302 and again.url == "/"
    assert signed_in_as(client) is None


def test_a_callback_planted_in_another_browser_is_refused(client: Client, db) -> None:
    """Login CSRF: the attacker signs in at the provider and sends the victim the link."""
    attacker = Client()
    callback = sign_in_at_provider(requests.Session(), to_provider(attacker), "sam")
    victim = client
    to_provider(victim)  # even with a staff LOGIN of its own in progress
    response = victim.get(callback)
    assert response.status_code == 400 and signed_in_as(victim) is None
    assert events("staff-login.callback")[-1].outcome == "state-mismatch"
    # ...and the attacker's own code, replayed by the attacker after that, is still theirs
    # only: the victim's attempt did not spend it, nor could the victim use it.
    assert attacker.get(callback).url == "/home/"


def test_a_callback_without_a_session_is_refused(db) -> None:
    callback = sign_in_at_provider(requests.Session(), to_provider(Client()), "sam")
    stranger = Client()
    response = stranger.get(callback)
    assert response.status_code == 302 and response.url == "/"
    assert signed_in_as(stranger) is None


def test_two_callbacks_at_once_sign_in_at_most_once(transactional_db, settings) -> None:
    client = Client()
    callback = sign_in_at_provider(requests.Session(), to_provider(client), "sam")
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    results: list[str] = []

    def hit() -> None:
        twin = Client()
        twin.cookies[settings.SESSION_COOKIE_NAME] = cookie
        response = twin.get(callback)
        results.append(response.url if response.status_code == 302 else str(response.status_code))
        connection.close()

    threads = [threading.Thread(target=hit) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 4 and results.count("/home/") == 1
    assert len(events("signin")) == 1
    # The losers stopped before the code exchange (the flow row is deleted first), so the
    # provider's own single use of the code was never what held.
    assert [e.outcome for e in events("staff-login.token")] == []


def test_an_answer_naming_another_issuer_is_refused(client: Client, db) -> None:
    """RFC 9207 mix-up: a code from another provider, with this browser's state."""
    callback = sign_in_at_provider(requests.Session(), to_provider(client), "sam")
    forged = re.sub(r"iss=[^&]+", "iss=http%3A%2F%2F127.0.0.1%3A1", callback)
    assert forged != callback
    response = client.get(forged)
    assert response.status_code == 400 and signed_in_as(client) is None
    assert events("staff-login.callback")[-1].outcome == "wrong-issuer"
    # That attempt is spent: the genuine answer arriving after it is refused too.
    assert client.get(callback).status_code == 400
    assert signed_in_as(client) is None


def test_an_error_from_the_provider_is_shown_plainly(client: Client, idp, db) -> None:
    authorize = to_provider(client)
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    response = client.get(
        "/staff-login/identity-provider/",
        {
            "state": state,
            "iss": idp.issuer,
            "error": "access_denied",
            "error_description": "<script>x</script>",
        },
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "Kepro did not sign you in" in page and "<script>x" not in page
    assert events("staff-login.callback")[-1].detail["error"] == "access_denied"


def test_the_provider_down_gives_a_clear_page_not_an_error(client: Client, idp, db) -> None:
    idp.stop()
    try:
        response = client.post("/staff/login/", follow=True)
        assert response.status_code == 503
        assert "identity provider cannot be reached" in response.content.decode()
        assert events("staff-login.provider")[-1].outcome == "unavailable"
    finally:
        idp.restart()
    response, _ = staff_sign_in(Client(), "sam")
    assert response.url == "/home/"


def test_the_provider_down_at_the_code_exchange(client: Client, idp, db) -> None:
    callback = sign_in_at_provider(requests.Session(), to_provider(client), "sam")
    idp.stop()
    try:
        response = client.get(callback)
    finally:
        idp.restart()
    assert response.status_code == 503 and signed_in_as(client) is None


def test_sign_out_ends_the_session_at_the_provider(client: Client, idp, db) -> None:
    browser = requests.Session()
    staff_sign_in(client, "sam", browser)
    response = client.post("/logout/")
    assert response.status_code == 302
    assert response.url.startswith(f"{idp.issuer}/")
    query = parse_qs(urlsplit(response.url).query)
    assert query["post_logout_redirect_uri"] == [f"{BASE}/"] and query["id_token_hint"]
    assert signed_in_as(client) is None
    # Confirm at the provider, as the browser test clicks "Sign out": afterwards the
    # provider asks for the password again instead of signing the next person straight in.
    page = browser.get(response.url)
    form = re.search(r'<form[^>]*id="op.logoutForm"[^>]*action="([^"]+)"', page.text)
    assert form, page.text[:800]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
    done = browser.post(
        urljoin(page.url, form.group(1)), data={**fields, "logout": "yes"}, allow_redirects=False
    )
    while done.status_code in (302, 303) and not done.headers["Location"].startswith(BASE):
        done = browser.get(urljoin(done.url, done.headers["Location"]), allow_redirects=False)
    assert done.headers["Location"].startswith(f"{BASE}/")
    again = browser.get(to_provider(Client()), allow_redirects=True)
    assert 'name="login"' in again.text  # the login form, not a silent sign-in


def test_a_customer_signs_out_without_the_provider(signed_in, db) -> None:
    response = signed_in.post("/logout/")
    assert response.url == "/"


def test_staff_sessions_follow_the_idle_timeout(client: Client, settings, db) -> None:
    staff_sign_in(client, "sam")
    session = client.session
    session[keys.LAST_SEEN] -= settings.CAREGATE_IDLE_TIMEOUT_SECONDS + 1
    session.save()
    response = client.get("/support/")
    assert response.status_code == 302 and signed_in_as(client) is None


def test_the_staff_login_needs_a_post_and_a_configuration(client: Client, settings, db) -> None:
    assert client.get("/staff/login/").status_code == 405
    settings.CAREGATE_OIDC_CLIENT_ID = ""
    assert client.post("/staff/login/").status_code == 404
    assert "domain account" not in client.get("/").content.decode()


def test_an_answer_without_iss_is_refused_when_the_provider_promises_it(client: Client, db):
    """RFC 9207: this provider always sends iss, so an answer without it is not its own."""
    callback = sign_in_at_provider(requests.Session(), to_provider(client), "sam")
    stripped = re.sub(r"&?iss=[^&]+", "", callback)
    assert "iss=" not in stripped
    response = client.get(stripped)
    assert response.status_code == 400 and signed_in_as(client) is None
    assert events("staff-login.callback")[-1].outcome == "wrong-issuer"


def test_a_stray_get_does_not_replace_the_request_being_finished(client: Client, db):
    """A link from another site to the stage (or the Back button) sends the same request
    again, so the answer to the first one still signs in."""
    first = to_provider(client)
    again = client.get("/staff-login/identity-provider/")
    assert again.status_code == 302 and again.url == first
    callback = sign_in_at_provider(requests.Session(), first, "sam")
    assert client.get(callback).url == "/home/"


def test_after_sign_out_the_next_staff_login_asks_the_provider_again(client: Client, db):
    """Sign out without confirming at the provider: the provider's session is still there,
    so the next LOGIN in this browser asks for prompt=login (a shared PC)."""
    browser = requests.Session()
    staff_sign_in(client, "sam", browser)
    client.post("/logout/")  # the provider's confirmation is never given
    authorize = to_provider(client)
    assert parse_qs(urlsplit(authorize).query)["prompt"] == ["login"]
    page = browser.get(authorize)
    assert 'name="login"' in page.text  # the provider's form, not a silent sign-in
    # Only once: the LOGIN after that (a new attempt) does not insist again.
    client.post("/staff/login/")
    second = client.get("/staff-login/identity-provider/").url
    assert "prompt" not in parse_qs(urlsplit(second).query)
