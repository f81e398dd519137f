"""The relying party's checks of the identity provider (caregate/staff/oidc.py), with the
provider's discovery and keys served by `responses` and ID tokens signed here.

These cover each check on its own, fast; tests/test_staff_login.py and the browser tests
drive the whole sign-in against a real OpenID Connect provider.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import responses
from joserfc import jwt
from joserfc.jwk import KeySet, OctKey, RSAKey

from caregate.staff import oidc

ISSUER = "https://idp.example.org"
CLIENT = "caregate"
NONCE = "n-0S6_WzA2Mj"


@pytest.fixture
def provider(settings) -> dict[str, Any]:
    settings.CAREGATE_OIDC_ISSUER = ISSUER
    settings.CAREGATE_OIDC_CLIENT_ID = CLIENT
    settings.CAREGATE_OIDC_CLIENT_SECRET = "s3cret-s3cret-s3cret-s3cret-s3cret"
    settings.CAREGATE_OIDC_CLOCK_SKEW_SECONDS = 60
    key = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    state = {"key": key, "keys": [key]}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.get(
            f"{ISSUER}/.well-known/openid-configuration",
            json={
                "issuer": ISSUER,
                "authorization_endpoint": f"{ISSUER}/auth",
                "token_endpoint": f"{ISSUER}/token",
                "jwks_uri": f"{ISSUER}/jwks",
                "end_session_endpoint": f"{ISSUER}/session/end",
            },
        )
        mock.add_callback(
            responses.GET,
            f"{ISSUER}/jwks",
            callback=lambda request: (
                200,
                {},
                __import__("json").dumps(KeySet(state["keys"]).as_dict(private=False)),
            ),
        )
        state["mock"] = mock
        yield state


def claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": CLIENT,
        "sub": "248289761001",
        "iat": now,
        "exp": now + 300,
        "nonce": NONCE,
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def signed(key: RSAKey, body: dict[str, Any], alg: str = "RS256") -> str:
    return jwt.encode({"alg": alg, "kid": key.kid}, body, key)


def test_a_good_token_gives_its_claims(provider) -> None:
    got = oidc.verify_id_token(signed(provider["key"], claims(email="a@b.c")), nonce=NONCE)
    assert got["sub"] == "248289761001" and got["email"] == "a@b.c"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"aud": "someone-else"}, "bad-claim-aud"),
        ({"iss": "https://evil.example.org"}, "bad-claim-iss"),
        ({"nonce": "another-attempt"}, "bad-claim-nonce"),
        ({"nonce": None}, "bad-claim-nonce"),
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "bad-claim-exp"),
        ({"iat": int(time.time()) + 3600, "exp": int(time.time()) + 7200}, "bad-claim-iat"),
        ({"sub": None}, "bad-claim-sub"),
        ({"aud": [CLIENT, "other"]}, "bad-claim-azp"),
    ],
)
def test_a_token_with_a_wrong_claim_is_refused(provider, change, reason) -> None:
    with pytest.raises(oidc.TokenRefused) as refused:
        oidc.verify_id_token(signed(provider["key"], claims(**change)), nonce=NONCE)
    assert refused.value.reason == reason


def test_the_clock_skew_allows_a_token_just_expired(provider) -> None:
    now = int(time.time())
    token = signed(provider["key"], claims(iat=now - 400, exp=now - 30))
    assert oidc.verify_id_token(token, nonce=NONCE)["sub"]


def test_several_audiences_need_this_client_as_authorized_party(provider) -> None:
    token = signed(provider["key"], claims(aud=[CLIENT, "other"], azp=CLIENT))
    assert oidc.verify_id_token(token, nonce=NONCE)["azp"] == CLIENT


def test_a_token_signed_by_another_key_with_the_same_kid_is_refused(provider) -> None:
    forger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    with pytest.raises(oidc.TokenRefused) as refused:
        oidc.verify_id_token(signed(forger, claims()), nonce=NONCE)
    assert refused.value.reason == "bad-signature"


def test_a_tampered_payload_is_refused(provider) -> None:
    header, payload, signature = signed(provider["key"], claims()).split(".")
    forged = signed(provider["key"], claims(sub="admin")).split(".")[1]
    with pytest.raises(oidc.TokenRefused):
        oidc.verify_id_token(f"{header}.{forged[:-2]}{payload[-2:]}.{signature}", nonce=NONCE)
    with pytest.raises(oidc.TokenRefused):
        oidc.verify_id_token(f"{header}.{forged}.{signature}", nonce=NONCE)


def test_an_unsigned_token_is_refused(provider) -> None:
    import base64
    import json

    def part(value: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    token = f"{part({'alg': 'none'})}.{part(claims())}."
    with pytest.raises(oidc.TokenRefused):
        oidc.verify_id_token(token, nonce=NONCE)


def test_a_token_signed_with_the_client_secret_is_refused(provider, settings) -> None:
    # HS256 keyed by the client secret: the secret is not the provider's alone.
    secret = OctKey.import_key(settings.CAREGATE_OIDC_CLIENT_SECRET)
    token = jwt.encode({"alg": "HS256"}, claims(), secret)
    with pytest.raises(oidc.TokenRefused):
        oidc.verify_id_token(token, nonce=NONCE)


def test_garbage_is_refused_not_an_error(provider) -> None:
    for token in ["", "abc", "a.b.c", "eyJhbGciOiJSUzI1NiJ9..", "x" * 5000]:
        with pytest.raises(oidc.TokenRefused):
            oidc.verify_id_token(token, nonce=NONCE)


def test_rotated_keys_are_read_again_once(provider) -> None:
    oidc.verify_id_token(signed(provider["key"], claims()), nonce=NONCE)  # caches k1
    newer = RSAKey.generate_key(2048, parameters={"kid": "k2"})
    provider["keys"] = [provider["key"], newer]
    assert oidc.verify_id_token(signed(newer, claims()), nonce=NONCE)["sub"]


def test_discovery_for_another_issuer_is_unusable(provider) -> None:
    provider["mock"].replace(
        responses.GET,
        f"{ISSUER}/.well-known/openid-configuration",
        json={"issuer": "https://evil.example.org", "jwks_uri": "x"},
    )
    with pytest.raises(oidc.ProviderUnavailable):
        oidc.metadata()


@pytest.mark.parametrize(
    "answer",
    [
        {"body": requests.ConnectionError("refused")},
        {"status": 500, "body": "oops"},
        {"status": 200, "body": "<html>not json</html>"},
        {"status": 200, "json": ["a", "list"]},
        {"status": 200, "json": {"issuer": ISSUER}},
    ],
)
def test_a_provider_down_or_misconfigured_is_unavailable(provider, answer) -> None:
    provider["mock"].replace(responses.GET, f"{ISSUER}/.well-known/openid-configuration", **answer)
    with pytest.raises(oidc.ProviderUnavailable):
        oidc.metadata()


def test_the_authorization_request_uses_pkce_state_and_nonce(provider) -> None:
    from urllib.parse import parse_qs, urlsplit

    outgoing = oidc.authorization_request()
    query = parse_qs(urlsplit(outgoing.url).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["state"] == [outgoing.state] and query["nonce"] == [outgoing.nonce]
    assert query["response_type"] == ["code"] and query["client_id"] == [CLIENT]
    assert outgoing.code_verifier not in outgoing.url
    assert len(outgoing.state) >= 32 and len(outgoing.nonce) >= 32
    again = oidc.authorization_request()
    assert {again.state, again.nonce, again.code_verifier}.isdisjoint(
        {outgoing.state, outgoing.nonce, outgoing.code_verifier}
    )


def test_end_session_url_carries_the_hint_and_the_return_address(provider, settings) -> None:
    settings.CAREGATE_PUBLIC_BASE_URL = "https://portal.example.org"
    url = oidc.end_session_url("the.id.token")
    assert url.startswith(f"{ISSUER}/session/end?")
    assert "id_token_hint=the.id.token" in url
    assert "post_logout_redirect_uri=https%3A%2F%2Fportal.example.org%2F" in url


def csp_form_action(client) -> str:
    header = client.get("/").headers["Content-Security-Policy"]
    return next(part for part in header.split(";") if "form-action" in part).strip()


@pytest.mark.django_db
def test_the_pages_may_post_on_to_the_provider_only_when_configured(client, settings) -> None:
    settings.CAREGATE_OIDC_ISSUER = ""
    assert csp_form_action(client) == "form-action 'self'"
    settings.CAREGATE_OIDC_ISSUER = "https://login.example.org/tenant/v2.0"
    settings.CAREGATE_OIDC_CLIENT_ID = "caregate"
    assert csp_form_action(client) == "form-action 'self' https://login.example.org"


@pytest.mark.django_db
def test_discovered_endpoints_on_another_origin_are_allowed_as_form_targets(
    provider, client, settings
) -> None:
    provider["mock"].replace(
        responses.GET,
        f"{ISSUER}/.well-known/openid-configuration",
        json={
            "issuer": ISSUER,
            "authorization_endpoint": "https://login.idp.example.org/authorize",
            "token_endpoint": f"{ISSUER}/token",
            "jwks_uri": f"{ISSUER}/jwks",
        },
    )
    oidc.metadata()
    assert "https://login.idp.example.org" in csp_form_action(client)


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://Login.Example.org/tenant/v2.0", "https://login.example.org"),
        ("http://127.0.0.1:9100/authorize", "http://127.0.0.1:9100"),
        ("https://[::1]:8443/end", "https://[::1]:8443"),
        ("https://someone@login.example.org/", "https://login.example.org"),
        ("https://idp.example.org; script-src * 'unsafe-inline'", ""),
        ("https://idp example.org/", ""),
        ("https://idp.example.org:99999/", ""),
        ("javascript:alert(1)", ""),
        ("ftp://idp.example.org/", ""),
        ("https://", ""),
        ("", ""),
    ],
)
def test_only_well_formed_origins_reach_the_csp_header(url: str, origin: str) -> None:
    assert oidc._origin(url) == origin
