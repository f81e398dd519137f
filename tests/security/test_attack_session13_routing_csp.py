"""Attack session 13: the cached Content-Security-Policy header and the flow-first URLconf.

ab19e28 builds the site's CSP header once per set of identity provider origins
(caregate/security/middleware.py, _site_policy); e2376f5 puts the flow stages first in the
URLconf behind a ``flow`` converter that only accepts a registered flow's name
(caregate/flows/urls.py). What was tried against both, as tests: every one passes where
the defence held, and fails where there is a bug.

This module is also the URLconf of the tests marked ``pytest.mark.urls(__name__)``: the
site's own patterns plus a few views that raise, draw a nonce or carry a view's own policy.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from csp.constants import HEADER, NONCE, SELF
from csp.decorators import csp_update
from csp.middleware import CSPMiddleware
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.test import Client, RequestFactory
from django.urls import (
    Resolver404,
    URLPattern,
    URLResolver,
    get_resolver,
    include,
    path,
    resolve,
)

from caregate.flows import views as flow_views
from caregate.flows.registry import FLOWS
from caregate.security.middleware import ContentSecurityPolicyMiddleware, _site_policy
from caregate.staff import oidc
from tests.conftest import PASSWORD

ISSUER = "https://login.example.org/tenant/v2.0"
ISSUER_ORIGIN = "https://login.example.org"


# --- the URLconf of the marked tests -------------------------------------------------------


def _boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug in a view")


def _forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


def _draws_nonce(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"<script nonce='{request.csp_nonce}'></script>")


@csp_update({"img-src": "https://images.example.org"})
def _own_policy(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("attack13/boom/", _boom),
    path("attack13/forbidden/", _forbidden),
    path("attack13/nonce/", _draws_nonce),
    path("attack13/own-policy/", _own_policy),
    path("", include("caregate.urls")),
]


# --- helpers -------------------------------------------------------------------------------


def directives(header: str) -> dict[str, list[str]]:
    """A CSP header as {directive: values}; a repeated directive keeps its first value, as
    browsers do (CSP3 §2.2.1), and is listed under "!repeated"."""
    parsed: dict[str, list[str]] = {}
    for part in header.split(";"):
        tokens = part.split()
        if not tokens:
            continue
        name = tokens[0].lower()
        if name in parsed:
            parsed.setdefault("!repeated", []).append(name)
            continue
        parsed[name] = tokens[1:]
    return parsed


def djangos_header() -> str:
    """django-csp's own answer for a plain response (no cache), with the middleware's one
    addition (the identity provider's form-action origins)."""

    class Reference(ContentSecurityPolicyMiddleware):
        process_response = CSPMiddleware.process_response

    request = RequestFactory().get("/")
    middleware = Reference(lambda r: HttpResponse("ok"))
    middleware.process_request(request)
    return middleware.process_response(request, HttpResponse("ok")).get(HEADER, "")


def same_policy(header: str | None, reference: str) -> bool:
    return header is not None and directives(header) == directives(reference)


@pytest.fixture
def no_provider(settings) -> None:
    settings.CAREGATE_OIDC_ISSUER = ""
    _site_policy.cache_clear()


@pytest.fixture
def forget_endpoints() -> Iterator[None]:
    saved = dict(oidc._ENDPOINT_ORIGINS)
    yield
    oidc._ENDPOINT_ORIGINS.clear()
    oidc._ENDPOINT_ORIGINS.update(saved)


# --- routing: no page changed views --------------------------------------------------------


def _literal_first_segments(patterns: list, prefix: str = "") -> set[str]:
    found: set[str] = set()
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            found |= _literal_first_segments(entry.url_patterns, route)
        elif isinstance(entry, URLPattern):
            first = route.split("/", 1)[0]
            if first and "<" not in first:
                found.add(first)
    return found


def test_no_flow_is_named_like_the_first_segment_of_another_page() -> None:
    # Held: the flow patterns come first, so a flow named "setup", "account", "support",
    # "dev", "login"... would take over that page's two-segment addresses. None is.
    firsts = _literal_first_segments(get_resolver("caregate.urls").url_patterns)
    assert {"setup", "account", "support", "dev", "login", "staff"} <= firsts
    assert firsts & set(FLOWS) == {"register", "mfa-registration", "forgot-password"}
    # Those three are one-segment start links only ("/register/"), never /<x>/<y>/.
    for name in ("register", "mfa-registration", "forgot-password"):
        assert resolve(f"/{name}/").func is flow_views.start
        assert resolve(f"/{name}/{FLOWS[name].stages[0].key}/").func is flow_views.stage


PAGES_THAT_ARE_NOT_FLOWS = [
    "/login/start/",
    "/login/passkey/",
    "/staff/login/",
    "/setup/users/",
    "/setup/my-account/",
    "/setup/my-account/end-session/",
    "/support/",
    "/account/passkeys/",
    "/account/recovery-codes/",
    "/dev/outbox/",
    "/dev/outbox.json",
    "/trouble-logging-in/help/",
    "/registration-error/reset/",
    "/registration-link/abc/",
    "/unavailable/feature/",
    "/modules/cases/",
    "/delivery/email-login/status.json",
    "/twilio/sms/token/status",
]


@pytest.mark.parametrize("url", PAGES_THAT_ARE_NOT_FLOWS)
def test_other_pages_still_resolve_to_their_own_view(url: str) -> None:
    assert resolve(url).func not in (flow_views.stage, flow_views.cancel, flow_views.call_status)


# Near misses of a registered flow's name: case, percent-encoding left undecoded, unicode
# look-alikes (dotless i, Kelvin sign, fullwidth e), zero-width and line separators,
# trailing newline/NUL/space/semicolon, dot segments and doubled slashes.
NOT_A_FLOW = [
    "/Email-Login/credentials/",
    "/EMAIL-LOGIN/credentials/",
    "/email%2Dlogin/credentials/",
    "/emaıl-login/credentials/",
    "/\uff45mail-login/credentials/",
    "/email-login\u200b/credentials/",
    "/email-login\n/credentials/",
    "/email-login\x00/credentials/",
    "/email-login /credentials/",
    "/email-login;x/credentials/",
    "/email-login./credentials/",
    "/./email-login/credentials/",
    "/x/../email-login/credentials/",
    "/email-login//credentials/",
    "/email-login/credentials/\n",
    "/email-login/cr\u0130dentials/",
    "/email-login/\u212aredentials/",
    "/email-login/call-status.json\n",
    "/email-login/call-statusXjson/x",
    "/__proto__/credentials/",
    "/constructor/cancel/",
    "/" + "a" * 20000 + "/credentials/",
]


@pytest.mark.parametrize("url", NOT_A_FLOW, ids=lambda u: repr(u)[:40])
def test_near_misses_of_a_flow_name_resolve_nowhere(url: str) -> None:
    with pytest.raises(Resolver404):
        resolve(url)


@pytest.mark.django_db
@pytest.mark.parametrize("url", NOT_A_FLOW, ids=lambda u: repr(u)[:40])
def test_near_misses_are_a_404_with_the_sites_policy(
    client: Client, url: str, no_provider
) -> None:
    # Percent-encoded on the wire (as a browser sends them), so the server decodes them to
    # exactly the path resolve() was given above.
    response = client.get(quote(url, safe="/"))
    assert response.status_code == 404
    assert same_policy(response.get(HEADER), djangos_header())


@pytest.mark.django_db
def test_percent_encoding_is_decoded_before_the_converter_sees_it(client: Client) -> None:
    # As before e2376f5: /email%2Dlogin/ is /email-login/ (the server decodes the path).
    assert client.get("/email%2Dlogin/credentials/").status_code == 302
    assert client.get("/email-login%2Fcredentials/").status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "/email-login/" + "a" * 20000 + "/",
        "/email-login/credentials/?" + "x=" + "y" * 5000,
        "/email-login/%ff/",
        "/email-login/%C4%B1/",
        "/passkey-login/call-status.json",
        "/staff-login/cancel/",
    ],
    ids=lambda u: repr(u)[:40],
)
def test_odd_flow_addresses_never_answer_500(client: Client, url: str) -> None:
    client.post("/login/start/", {"method": "email"})  # a flow in progress
    assert client.get(url).status_code in (200, 302, 404)


# --- the cached header on every kind of response ------------------------------------------


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_error_pages_and_redirects_carry_the_sites_policy(no_provider) -> None:
    reference = djangos_header()
    client = Client(raise_request_exception=False, enforce_csrf_checks=True)
    answers = {
        "500 (a view's bug)": client.get("/attack13/boom/"),
        "403 (PermissionDenied)": client.get("/attack13/forbidden/"),
        "403 (CSRF, a flow stage)": client.post("/email-login/credentials/", {"email": "x"}),
        "403 (CSRF, login start)": client.post("/login/start/", {"method": "email"}),
        "404": client.get("/no-such-page/"),
        "405": client.put("/email-login/credentials/"),
        "302 (flow redirect)": client.get("/email-login/credentials/"),
        "302 (login required)": client.get("/setup/users/"),
        "JSON 404 (call status)": client.get("/email-login/call-status.json"),
        "JSON (outbox)": client.get("/dev/outbox.json"),
        "dev outbox": client.get("/dev/outbox/"),
        "healthz": client.get("/healthz"),
    }
    assert answers["500 (a view's bug)"].status_code == 500
    wrong = {
        what: (r.status_code, r.get(HEADER))
        for what, r in answers.items()
        if not same_policy(r.get(HEADER), reference)
    }
    assert wrong == {}


@pytest.mark.urls(__name__)
@pytest.mark.django_db
def test_a_nonce_or_a_views_policy_never_reaches_the_cache(client: Client, settings) -> None:
    policy = {"DIRECTIVES": {**settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]}}
    policy["DIRECTIVES"]["script-src"] = [SELF, NONCE]
    settings.CONTENT_SECURITY_POLICY = policy
    settings.CAREGATE_OIDC_ISSUER = ""
    plain_before = client.get("/healthz")[HEADER]
    nonced = client.get("/attack13/nonce/")
    nonce = re.search(r"nonce='([^']+)'", nonced.content.decode()).group(1)
    assert f"'nonce-{nonce}'" in nonced[HEADER]
    own = client.get("/attack13/own-policy/")[HEADER]
    assert "https://images.example.org" in own
    for _ in range(3):
        plain = client.get("/healthz")[HEADER]
        assert plain == plain_before
        assert "nonce-" not in plain and "images.example.org" not in plain
    again = client.get("/attack13/nonce/")
    assert f"'nonce-{nonce}'" not in again[HEADER]  # a fresh nonce, never a cached one


@pytest.mark.django_db
def test_the_header_follows_an_issuer_change_both_ways(client: Client, settings) -> None:
    settings.CAREGATE_OIDC_ISSUER = ""
    without = client.get("/")[HEADER]
    assert directives(without)["form-action"] == ["'self'"]
    settings.CAREGATE_OIDC_ISSUER = ISSUER
    settings.CAREGATE_OIDC_CLIENT_ID = "caregate"
    assert directives(client.get("/")[HEADER])["form-action"] == ["'self'", ISSUER_ORIGIN]
    settings.CAREGATE_OIDC_ISSUER = "https://other-idp.example.net"
    assert directives(client.get("/healthz")[HEADER])["form-action"] == [
        "'self'",
        "https://other-idp.example.net",
    ]
    settings.CAREGATE_OIDC_ISSUER = ""
    assert client.get("/no-such-page/")[HEADER] == without


@pytest.mark.django_db
def test_the_header_follows_discovery_without_a_setting_change(
    client: Client, settings, forget_endpoints
) -> None:
    # The endpoints' origins arrive by discovery, not by a setting (no setting_changed):
    # the cache is keyed by them, so the next page already allows them.
    settings.CAREGATE_OIDC_ISSUER = ISSUER
    settings.CAREGATE_OIDC_CLIENT_ID = "caregate"
    assert directives(client.get("/")[HEADER])["form-action"] == ["'self'", ISSUER_ORIGIN]
    oidc._note_origins(
        {
            "issuer": ISSUER,
            "authorization_endpoint": "https://auth.example.org/authorize",
            "end_session_endpoint": "https://logout.example.org/end",
        }
    )
    header = client.get("/")[HEADER]
    assert directives(header)["form-action"] == [
        "'self'",
        "https://auth.example.org",
        ISSUER_ORIGIN,
        "https://logout.example.org",
    ]
    assert same_policy(header, djangos_header())


@pytest.mark.django_db
def test_requests_cannot_grow_or_key_the_cache(client: Client, no_provider) -> None:
    # Host, path, query, cookies, headers: none of it is part of the key.
    for n in range(40):
        client.get(
            f"/no-such-{n}/?form-action=https://evil.example/{n}",
            HTTP_ORIGIN=f"https://evil{n}.example",
            HTTP_REFERER=f"https://evil{n}.example/",
            HTTP_X_FORWARDED_HOST=f"evil{n}.example",
        )
        client.get(f"/email-login/stage-{n}/")
    assert _site_policy.cache_info().currsize == 1
    assert "evil" not in client.get("/")[HEADER]


@pytest.mark.django_db
def test_debug_pages_are_answered_as_django_csp_does(client: Client, settings) -> None:
    # make run has DEBUG on: every response goes through django-csp's own code, which
    # leaves its debug 404 without a header and gives every other page the policy.
    settings.DEBUG = True
    settings.CAREGATE_OIDC_ISSUER = ""
    assert same_policy(client.get("/")[HEADER], djangos_header())
    assert HEADER not in client.get("/no-such-page/")


@pytest.mark.django_db
def test_an_identity_providers_endpoint_cannot_write_directives(
    client: Client, settings, forget_endpoints
) -> None:
    # Found failing (Low; pre-existing, then also memoised by the CSP cache): the
    # discovery document's authorization/end-session endpoints went into form-action as
    # scheme://netloc without a check, and urlsplit keeps ";" and spaces in a netloc. A
    # provider (or whoever can answer or cache its discovery document) added directives to
    # every page's header; where the site's own script-src came after form-action (a
    # set's order, per process), the injected one was the one browsers apply. Fixed:
    # oidc._origin rebuilds the origin from the parsed host and port and checks it.
    settings.CAREGATE_OIDC_ISSUER = ISSUER
    settings.CAREGATE_OIDC_CLIENT_ID = "caregate"
    oidc._note_origins(
        {
            "issuer": ISSUER,
            "authorization_endpoint": "https://auth.example.org/authorize",
            "end_session_endpoint": (
                "https://idp.example.org; script-src * 'unsafe-inline'; report-uri https:"
            ),
        }
    )
    header = client.get("/")[HEADER]
    parsed = directives(header)
    origin = re.compile(r"^'self'$|^https?://[A-Za-z0-9.-]+(:[0-9]+)?$")
    assert "!repeated" not in parsed, header
    assert "report-uri" not in parsed, header
    assert all(origin.match(value) for value in parsed["form-action"]), header


# --- the flows still work end to end --------------------------------------------------------


@pytest.mark.django_db
def test_email_login_end_to_end_with_the_sites_policy_on_every_step(
    client: Client, email_user, outbox_code, no_provider
) -> None:
    reference = djangos_header()
    steps = [
        client.get("/"),
        client.post("/login/start/", {"method": "email"}),
        client.get("/email-login/credentials/"),
        client.post(
            "/email-login/credentials/", {"email": email_user.email, "password": PASSWORD}
        ),
        client.post("/email-login/email-code/", {"action": "send"}),
        client.get("/email-login/call-status.json"),
    ]
    steps.append(
        client.post(
            "/email-login/email-code/",
            {"action": "verify", "code": outbox_code(email_user.email)},
        )
    )
    done = client.post("/email-login/email-code/", {"action": "continue"})
    steps.append(done)
    assert done.status_code == 302 and done.url == "/home/"
    home = client.get("/home/", follow=True)
    steps.append(home)
    assert home.status_code == 200
    assert all(same_policy(r.get(HEADER), reference) for r in steps), [
        (r.status_code, r.get(HEADER)) for r in steps
    ]
    assert _site_policy.cache_info().currsize == 1


@pytest.mark.django_db
def test_a_flow_cancel_and_call_status_are_the_flow_views(client: Client, make_user) -> None:
    user = make_user(mfa="phone")
    client.post("/login/start/", {"method": "phone"})
    response = client.post(
        "/phone-login/credentials/", {"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 302 and response.url == "/phone-login/phone/"
    status = client.get("/phone-login/call-status.json")
    assert status.status_code == 200 and status.json()["status"] == "none"
    assert client.post("/phone-login/cancel/").status_code == 302
    assert client.get("/phone-login/call-status.json").status_code == 404
