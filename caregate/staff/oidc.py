"""The operator's identity provider, as an OpenID Connect relying party sees it.

Authorization code flow with PKCE (RFC 7636, S256), ``state`` and ``nonce``: Authlib builds
the authorization request and exchanges the code; joserfc verifies the ID token's
signature against the provider's published keys and its claims (issuer, audience,
expiry, issue time, nonce, authorized party) with a small clock skew. Nothing here is
hand-rolled cryptography; this module only wires the libraries to the discovery document
and turns every failure into one of two exceptions the staff LOGIN shows plainly:

- :class:`ProviderUnavailable`: the provider cannot be reached or answers nonsense
  (down, misconfigured, a discovery document for another issuer);
- :class:`TokenRefused`: the provider answered, but what it sent cannot be trusted or
  used (a refused code, a bad signature, another audience, an expired token, ...).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from authlib.common.security import generate_token
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError, MissingKeyError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

log = logging.getLogger(__name__)

# Asymmetric signatures only: "none" and the HMAC family (keyed by the client secret,
# which the provider is not the only holder of) are never accepted for an ID token.
ACCEPTED_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")
METADATA_SECONDS = 600  # discovery and keys are re-read this often (key rotation)
# Origins of the provider's browser-facing endpoints seen in this process's last discovery
# (see form_action_origins); filled by metadata(), never by a request's values.
_ENDPOINT_ORIGINS: dict[str, set[str]] = {}  # issuer → origins


class ProviderUnavailable(Exception):
    """The identity provider could not be reached or answered something unusable."""


class TokenRefused(Exception):
    """The provider's answer (code exchange or ID token) cannot be accepted."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason  # a short slug for the audit log
        self.detail = detail


def configured() -> bool:
    return bool(settings.CAREGATE_OIDC_ISSUER and settings.CAREGATE_OIDC_CLIENT_ID)


def redirect_uri() -> str:
    """Where the provider sends the browser back: the staff LOGIN's one stage."""
    return f"{settings.CAREGATE_PUBLIC_BASE_URL.rstrip('/')}/staff-login/identity-provider/"


def post_logout_redirect_uri() -> str:
    return f"{settings.CAREGATE_PUBLIC_BASE_URL.rstrip('/')}/"


def _get_json(url: str) -> dict[str, Any]:
    try:
        response = requests.get(url, timeout=settings.CAREGATE_OIDC_TIMEOUT_SECONDS)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as error:
        raise ProviderUnavailable(f"{url}: {error}") from error
    if not isinstance(document, dict):
        raise ProviderUnavailable(f"{url}: not a JSON object")
    return document


def _cache_key(what: str) -> str:
    return f"caregate:oidc:{what}:{settings.CAREGATE_OIDC_ISSUER}"


def metadata(*, refresh: bool = False) -> dict[str, Any]:
    """The provider's discovery document (OpenID Connect Discovery 1.0), cached."""
    key = _cache_key("metadata")
    document = None if refresh else cache.get(key)
    if document is None:
        issuer = settings.CAREGATE_OIDC_ISSUER
        document = _get_json(f"{issuer}/.well-known/openid-configuration")
        # Discovery §4.3: the document must name exactly the issuer we asked; otherwise
        # it is another provider's (or an attacker's) and its keys prove nothing.
        if document.get("issuer") != issuer:
            raise ProviderUnavailable(
                f"discovery names issuer {document.get('issuer')!r}, expected {issuer!r}"
            )
        for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not isinstance(document.get(field), str):
                raise ProviderUnavailable(f"discovery document has no {field}")
        cache.set(key, document, METADATA_SECONDS)
    _note_origins(document)
    return document


_ORIGIN_CHECK = URLValidator(schemes=["http", "https"])


def _origin(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, or "" unless that is a well-formed http(s)
    origin. The value goes into every page's CSP header, where a ";" or a space from a
    discovery document would start directives of its own (attacker review, session 13):
    it is rebuilt from the parsed host and port, then checked as a URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"  # an IPv6 literal
    origin = f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")
    try:
        _ORIGIN_CHECK(origin)
    except ValidationError:
        return ""
    return origin


def _note_origins(document: dict[str, Any]) -> None:
    origins = set()
    for field in ("authorization_endpoint", "end_session_endpoint"):
        value = document.get(field)
        origins.add(_origin(value) if isinstance(value, str) else "")
    _ENDPOINT_ORIGINS[document["issuer"]] = origins - {""}


def form_action_origins() -> list[str]:
    """Origins the pages' forms may end up at: LOGIN and Sign out post to Caregate, which
    redirects the browser on to the provider, and Chromium applies the CSP ``form-action``
    to every redirect after a form submission. The issuer's origin, plus the endpoints'
    origins this process has seen in discovery (no request is made for this)."""
    if not configured():
        return []
    issuer = settings.CAREGATE_OIDC_ISSUER
    return sorted({_origin(issuer), *_ENDPOINT_ORIGINS.get(issuer, set())} - {""})


def _key_set(*, refresh: bool = False) -> KeySet:
    key = _cache_key("jwks")
    keys = None if refresh else cache.get(key)
    if keys is None:
        keys = _get_json(metadata()["jwks_uri"])
        cache.set(key, keys, METADATA_SECONDS)
    try:
        return KeySet.import_key_set(keys)
    except (JoseError, ValueError, TypeError, KeyError) as error:
        raise ProviderUnavailable(f"unusable JWKS: {error}") from error


def _session() -> OAuth2Session:
    return OAuth2Session(
        client_id=settings.CAREGATE_OIDC_CLIENT_ID,
        client_secret=settings.CAREGATE_OIDC_CLIENT_SECRET or None,
        token_endpoint_auth_method=(
            "client_secret_basic" if settings.CAREGATE_OIDC_CLIENT_SECRET else "none"
        ),
        scope=settings.CAREGATE_OIDC_SCOPES,
        redirect_uri=redirect_uri(),
        code_challenge_method="S256",
        default_timeout=settings.CAREGATE_OIDC_TIMEOUT_SECONDS,
    )


@dataclass(frozen=True)
class AuthorizationRequest:
    """What one staff LOGIN keeps (server-side, in its flow instance) until the callback."""

    url: str
    state: str
    nonce: str
    code_verifier: str


def authorization_request(*, prompt: str = "") -> AuthorizationRequest:
    """A fresh authorization request: random state, nonce and PKCE verifier; ``prompt``
    ("login") asks the provider to authenticate again even with a session there."""
    endpoint = metadata()["authorization_endpoint"]
    state, nonce, verifier = generate_token(32), generate_token(32), generate_token(64)
    extra = {"prompt": prompt} if prompt else {}
    url, _ = _session().create_authorization_url(
        endpoint, state=state, nonce=nonce, code_verifier=verifier, **extra
    )
    return AuthorizationRequest(url=url, state=state, nonce=nonce, code_verifier=verifier)


def exchange_code(code: str, code_verifier: str) -> dict[str, Any]:
    """The token endpoint's answer for this code (it holds the ``id_token``)."""
    try:
        token = _session().fetch_token(
            metadata()["token_endpoint"],
            grant_type="authorization_code",
            code=code,
            code_verifier=code_verifier,
        )
    except requests.RequestException as error:
        raise ProviderUnavailable(f"token endpoint: {error}") from error
    except (OAuthError, ValueError) as error:  # the provider refused the code
        raise TokenRefused("code-refused", str(error)) from error
    if not isinstance(token.get("id_token"), str):
        raise TokenRefused("no-id-token")
    return dict(token)


def _decode(id_token: str) -> jwt.Token:
    """Verify the signature with the provider's keys; re-read them once for an unknown
    key id (the provider rotated its keys since we cached them)."""
    for refresh in (False, True):
        try:
            return jwt.decode(id_token, _key_set(refresh=refresh), algorithms=ACCEPTED_ALGORITHMS)
        except (MissingKeyError, InvalidKeyIdError) as error:
            if refresh:
                raise TokenRefused("unknown-key", type(error).__name__) from error
        except JoseError as error:
            raise TokenRefused("bad-signature", type(error).__name__) from error
        except ValueError as error:
            raise TokenRefused("malformed-token", str(error)) from error
    raise AssertionError("unreachable")


def verify_id_token(id_token: str, *, nonce: str) -> dict[str, Any]:
    """The ID token's claims, once signature and claims are checked (OIDC Core §3.1.3.7)."""
    token = _decode(id_token)
    claims = dict(token.claims)
    client_id = settings.CAREGATE_OIDC_CLIENT_ID
    registry = JWTClaimsRegistry(
        leeway=settings.CAREGATE_OIDC_CLOCK_SKEW_SECONDS,
        iss={"essential": True, "value": settings.CAREGATE_OIDC_ISSUER},
        aud={"essential": True, "value": client_id},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    )
    try:
        registry.validate(claims)
    except JoseError as error:
        claim = getattr(error, "claim", "") or ""
        raise TokenRefused(f"bad-claim-{claim}" if claim else "bad-claims", str(error)) from error
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise TokenRefused("bad-claim-azp", "several audiences and azp is not this client")
    return claims


def end_session_url(id_token: str) -> str:
    """RP-initiated logout at the provider, or "" when it offers none (or is down)."""
    try:
        endpoint = metadata().get("end_session_endpoint")
    except ProviderUnavailable as error:
        log.warning("staff sign out: identity provider unavailable: %s", error)
        return ""
    if not isinstance(endpoint, str) or not endpoint:
        return ""
    params = {
        "id_token_hint": id_token,
        "post_logout_redirect_uri": post_logout_redirect_uri(),
        "client_id": settings.CAREGATE_OIDC_CLIENT_ID,
    }
    return requests.Request("GET", endpoint, params=params).prepare().url or ""
