"""The test identity provider behaves as a real OpenID Connect provider, and tampers on demand.

Everything here is done as a relying party would: requests for the browser, Authlib for the
client, joserfc to verify ID tokens.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from joserfc import errors, jws, jwt
from joserfc.jwk import KeySet

from tests.oidc.idp import TestIdentityProvider

CLIENT_ID = "caregate"
CLIENT_SECRET = "caregate-secret"
REDIRECT_URI = "http://127.0.0.1:9/oidc/callback"
POST_LOGOUT_URI = "http://127.0.0.1:9/signed-out"
ALICE = {
    "sub": "idp-sub-alice",
    "email": "alice@example.org",
    "email_verified": True,
    "given_name": "Alice",
    "family_name": "Adams",
    "groups": ["caregate-support"],
    "amr": ["pwd", "mfa"],
    "acr": "urn:test:mfa",
}


@pytest.fixture(scope="module")
def idp() -> Iterator[TestIdentityProvider]:
    client = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": [REDIRECT_URI],
        "post_logout_redirect_uris": [POST_LOGOUT_URI],
    }
    with TestIdentityProvider.running(clients=[client], accounts={"alice": ALICE}) as provider:
        yield provider


@pytest.fixture(autouse=True)
def _honest_provider(idp: TestIdentityProvider) -> Iterator[None]:
    yield
    idp.reset()
    idp.set_accounts({"alice": ALICE})


@pytest.fixture
def browser() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def discovery(idp: TestIdentityProvider) -> dict[str, Any]:
    return requests.get(idp.discovery_url, timeout=5).json()


def keyset(idp: TestIdentityProvider) -> KeySet:
    jwks = requests.get(discovery(idp)["jwks_uri"], timeout=5).json()
    return KeySet.import_key_set(jwks)


def oauth_client() -> OAuth2Session:
    return OAuth2Session(
        CLIENT_ID,
        CLIENT_SECRET,
        scope="openid email profile",
        redirect_uri=REDIRECT_URI,
        code_challenge_method="S256",
    )


def follow(browser: requests.Session, response: requests.Response) -> requests.Response:
    """Follow the provider's own redirects; stop at the first one that leaves it."""
    issuer = urlsplit(response.url)._replace(path="", query="", fragment="").geturl()
    while response.is_redirect:
        target = urljoin(response.url, response.headers["Location"])
        if not target.startswith(f"{issuer}/"):
            return response
        response = browser.get(target, allow_redirects=False, timeout=5)
    return response


def form_action(page: requests.Response) -> str:
    match = re.search(r'<form[^>]*action="([^"]+)"', page.text)
    assert match, page.text
    return urljoin(page.url, unescape(match.group(1)))


def sign_in(browser: requests.Session, page: requests.Response, login: str) -> requests.Response:
    submitted = browser.post(
        form_action(page),
        data={"login": login, "password": "anything"},
        allow_redirects=False,
        timeout=5,
    )
    return follow(browser, submitted)


def callback_params(response: requests.Response) -> dict[str, str]:
    assert response.is_redirect, response.text
    location = response.headers["Location"]
    assert location.startswith(f"{REDIRECT_URI}?"), location
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


@dataclass
class Authorization:
    client: OAuth2Session
    verifier: str
    nonce: str
    state: str
    url: str

    def exchange(self, idp: TestIdentityProvider, code: str) -> dict[str, Any]:
        return self.client.fetch_token(
            discovery(idp)["token_endpoint"], code=code, code_verifier=self.verifier
        )


def authorization(idp: TestIdentityProvider, **extra: str) -> Authorization:
    client = oauth_client()
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    url, state = client.create_authorization_url(
        discovery(idp)["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **extra
    )
    return Authorization(client, verifier, nonce, state, url)


def authorize(
    idp: TestIdentityProvider, browser: requests.Session, login: str = "alice", **extra: str
) -> tuple[Authorization, dict[str, str]]:
    """Run the browser side of the code flow, signing in if the provider asks."""
    auth = authorization(idp, **extra)
    response = follow(browser, browser.get(auth.url, allow_redirects=False, timeout=5))
    if not response.is_redirect:
        assert 'name="login"' in response.text, response.text
        response = sign_in(browser, response, login)
    params = callback_params(response)
    assert params["state"] == auth.state
    return auth, params


def id_token_for(idp: TestIdentityProvider, browser: requests.Session) -> tuple[str, str]:
    """Return a fresh ID token and the nonce it was requested with."""
    auth, params = authorize(idp, browser)
    return auth.exchange(idp, params["code"])["id_token"], auth.nonce


def claims_registry(idp: TestIdentityProvider, nonce: str) -> jwt.JWTClaimsRegistry:
    return jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": idp.issuer},
        aud={"essential": True, "value": CLIENT_ID},
        nonce={"essential": True, "value": nonce},
        exp={"essential": True},
    )


def verified_claims(idp: TestIdentityProvider, id_token: str, nonce: str) -> dict[str, Any]:
    token = jwt.decode(id_token, keyset(idp), algorithms=["RS256"])
    claims_registry(idp, nonce).validate(token.claims)
    return token.claims


def test_discovery_names_the_issuer_logout_and_s256(idp: TestIdentityProvider) -> None:
    document = discovery(idp)

    assert document["issuer"] == idp.issuer
    assert not idp.issuer.endswith("/")
    assert document["end_session_endpoint"] == f"{idp.issuer}/session/end"
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert document["id_token_signing_alg_values_supported"] == ["RS256"]


@pytest.mark.parametrize(
    "pkce",
    [{}, {"code_challenge": "x" * 43, "code_challenge_method": "plain"}],
    ids=["no-pkce", "plain"],
)
def test_authorization_without_s256_pkce_is_refused(
    idp: TestIdentityProvider, browser: requests.Session, pkce: dict[str, str]
) -> None:
    params = {
        "client_id": CLIENT_ID,
        "response_type": "code",
        "scope": "openid",
        "redirect_uri": REDIRECT_URI,
        "state": "s1",
        "nonce": "n1",
        **pkce,
    }
    response = browser.get(
        discovery(idp)["authorization_endpoint"], params=params, allow_redirects=False, timeout=5
    )

    returned = callback_params(response)
    assert returned["error"] == "invalid_request"
    assert "code" not in returned


def test_code_flow_id_token_carries_the_account_claims(
    idp: TestIdentityProvider, browser: requests.Session
) -> None:
    auth = authorization(idp)
    page = follow(browser, browser.get(auth.url, allow_redirects=False, timeout=5))

    assert "<title>Test identity provider</title>" in page.text
    assert "<h1>Test identity provider</h1>" in page.text
    assert re.search(r'<label for="login">Username</label>', page.text)
    assert re.search(r'<label for="password">Password</label>', page.text)
    assert ">Sign in</button>" in page.text

    params = callback_params(sign_in(browser, page, "alice"))
    assert params["iss"] == idp.issuer
    tokens = auth.exchange(idp, params["code"])
    claims = verified_claims(idp, tokens["id_token"], auth.nonce)

    assert claims["sub"] == ALICE["sub"]
    for name in ("email", "email_verified", "given_name", "family_name", "groups", "amr", "acr"):
        assert claims[name] == ALICE[name], name
    assert claims["nonce"] == auth.nonce


def test_unknown_user_gets_the_form_again(
    idp: TestIdentityProvider, browser: requests.Session
) -> None:
    auth = authorization(idp)
    page = follow(browser, browser.get(auth.url, allow_redirects=False, timeout=5))

    again = browser.post(
        form_action(page), data={"login": "mallory<b>", "password": "x"}, allow_redirects=False
    )

    assert again.status_code == 200
    assert "Unknown user" in again.text
    assert 'value="mallory&#60;b&#62;"' in again.text
    assert 'name="login"' in again.text


def test_code_cannot_be_exchanged_twice(
    idp: TestIdentityProvider, browser: requests.Session
) -> None:
    auth, params = authorize(idp, browser)
    auth.exchange(idp, params["code"])

    with pytest.raises(Exception, match="invalid_grant"):
        auth.exchange(idp, params["code"])


def test_code_needs_the_matching_code_verifier(
    idp: TestIdentityProvider, browser: requests.Session
) -> None:
    auth, params = authorize(idp, browser)
    auth.verifier = secrets.token_urlsafe(48)

    with pytest.raises(Exception, match="invalid_grant"):
        auth.exchange(idp, params["code"])


def test_code_needs_the_client_secret(
    idp: TestIdentityProvider, browser: requests.Session
) -> None:
    auth, params = authorize(idp, browser)
    auth.client.client_secret = "guessed"

    with pytest.raises(Exception, match="invalid_client"):
        auth.exchange(idp, params["code"])


def test_provider_session_skips_the_form_unless_prompt_login(
    idp: TestIdentityProvider, browser: requests.Session
) -> None:
    authorize(idp, browser)

    second = authorization(idp)
    straight_back = follow(browser, browser.get(second.url, allow_redirects=False, timeout=5))
    assert "code" in callback_params(straight_back)

    forced = authorization(idp, prompt="login")
    page = follow(browser, browser.get(forced.url, allow_redirects=False, timeout=5))
    assert not page.is_redirect
    assert 'name="login"' in page.text


def test_rp_initiated_logout_confirms_then_returns_with_state(
    idp: TestIdentityProvider, browser: requests.Session
) -> None:
    auth, params = authorize(idp, browser)
    id_token = auth.exchange(idp, params["code"])["id_token"]

    confirm = browser.get(
        discovery(idp)["end_session_endpoint"],
        params={
            "id_token_hint": id_token,
            "post_logout_redirect_uri": POST_LOGOUT_URI,
            "state": "bye-1",
        },
        timeout=5,
    )
    assert confirm.status_code == 200
    button = re.search(r"<button[^>]*>Sign out</button>", confirm.text)
    assert button, confirm.text
    xsrf = re.search(r'name="xsrf" value="([^"]+)"', confirm.text)
    assert xsrf, confirm.text
    done = browser.post(
        form_action(confirm),
        data={"xsrf": xsrf.group(1), "logout": "yes"},
        allow_redirects=False,
        timeout=5,
    )

    assert done.headers["Location"] == f"{POST_LOGOUT_URI}?state=bye-1"
    after = authorization(idp)
    page = follow(browser, browser.get(after.url, allow_redirects=False, timeout=5))
    assert 'name="login"' in page.text


def test_normal_mode_token_verifies(idp: TestIdentityProvider, browser: requests.Session) -> None:
    id_token, nonce = id_token_for(idp, browser)

    assert verified_claims(idp, id_token, nonce)["aud"] == CLIENT_ID


@pytest.mark.parametrize(
    ("mode", "claim"),
    [("wrong-audience", "aud"), ("wrong-issuer", "iss"), ("wrong-nonce", "nonce")],
)
def test_tampered_claims_fail_validation(
    idp: TestIdentityProvider, browser: requests.Session, mode: str, claim: str
) -> None:
    idp.set_mode(mode)
    id_token, nonce = id_token_for(idp, browser)

    # The signature is the provider's own: only the claims give it away.
    token = jwt.decode(id_token, keyset(idp), algorithms=["RS256"])
    with pytest.raises(errors.InvalidClaimError, match=claim):
        claims_registry(idp, nonce).validate(token.claims)


def test_expired_token_fails_validation(
    idp: TestIdentityProvider, browser: requests.Session
) -> None:
    idp.set_mode("expired")
    id_token, nonce = id_token_for(idp, browser)

    token = jwt.decode(id_token, keyset(idp), algorithms=["RS256"])
    assert token.claims["iat"] < token.claims["exp"]
    with pytest.raises(errors.ExpiredTokenError):
        claims_registry(idp, nonce).validate(token.claims)


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("bad-signature", errors.BadSignatureError),
        ("foreign-key", errors.BadSignatureError),
        ("alg-none", errors.UnsupportedAlgorithmError),
    ],
)
def test_tampered_signatures_fail_verification(
    idp: TestIdentityProvider,
    browser: requests.Session,
    mode: str,
    error: type[Exception],
) -> None:
    idp.set_mode(mode)
    id_token, nonce = id_token_for(idp, browser)

    with pytest.raises(error):
        jwt.decode(id_token, keyset(idp), algorithms=["RS256"])
    # Only the signature gives it away: the claims are honest, the key id is the provider's.
    unverified = jws.extract_compact(id_token.encode())
    claims_registry(idp, nonce).validate(json.loads(unverified.payload))
    if mode != "alg-none":
        assert unverified.protected["kid"] == keyset(idp).keys[0].kid


def test_mode_lasts_until_reset(idp: TestIdentityProvider, browser: requests.Session) -> None:
    idp.set_mode("wrong-audience")
    for _ in range(2):
        id_token, nonce = id_token_for(idp, browser)
        with pytest.raises(errors.InvalidClaimError):
            verified_claims(idp, id_token, nonce)

    idp.reset()
    id_token, nonce = id_token_for(idp, browser)
    assert verified_claims(idp, id_token, nonce)["aud"] == CLIENT_ID


def test_unknown_mode_is_refused(idp: TestIdentityProvider) -> None:
    response = requests.post(f"{idp.issuer}/__test/mode", json={"id_token": "friendly"}, timeout=5)

    assert response.status_code == 400


def test_set_accounts_changes_groups_in_the_next_token(
    idp: TestIdentityProvider, browser: requests.Session
) -> None:
    first, nonce = id_token_for(idp, browser)
    assert verified_claims(idp, first, nonce)["groups"] == ["caregate-support"]

    idp.set_accounts({"alice": {**ALICE, "groups": ["caregate-admins", "other"]}})
    second, nonce = id_token_for(idp, browser)

    assert verified_claims(idp, second, nonce)["groups"] == ["caregate-admins", "other"]


def test_restart_keeps_issuer_and_signing_key(
    idp: TestIdentityProvider, browser: requests.Session
) -> None:
    before, nonce = id_token_for(idp, browser)
    issuer = idp.issuer

    idp.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(idp.discovery_url, timeout=5)

    idp.restart()
    assert idp.issuer == issuer
    assert discovery(idp)["issuer"] == issuer
    assert verified_claims(idp, before, nonce)["sub"] == ALICE["sub"]
    # Its sessions went with the old process: the user signs in again.
    after, nonce = id_token_for(idp, requests.Session())
    assert verified_claims(idp, after, nonce)["sub"] == ALICE["sub"]
