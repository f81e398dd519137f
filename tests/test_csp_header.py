"""The Content-Security-Policy header: the cached site policy is exactly django-csp's.

ContentSecurityPolicyMiddleware builds the site's policy once per set of identity provider
origins; anything that makes a response's policy its own (a nonce, django-csp's decorators,
a report-only policy, excluded prefixes, DEBUG) goes through django-csp's own code.
"""

from __future__ import annotations

import pytest
from csp.constants import HEADER, HEADER_REPORT_ONLY, NONCE, SELF
from csp.decorators import csp_exempt, csp_update
from csp.middleware import CSPMiddleware
from django.http import HttpRequest, HttpResponse
from django.test import RequestFactory

from caregate.security.middleware import ContentSecurityPolicyMiddleware, _site_policy

ISSUER = "https://login.example.org/tenant/v2.0"


def _respond(response: HttpResponse | None = None):
    return lambda request: response if response is not None else HttpResponse("ok")


def headers_of(middleware_class, response: HttpResponse | None = None, *, nonce: bool = False):
    """One request through the middleware (process_request, the view, process_response)."""
    request = RequestFactory().get("/")
    middleware = middleware_class(_respond(response))
    middleware.process_request(request)
    if nonce:
        str(request.csp_nonce)  # a template that draws a nonce
    answer = middleware.process_response(request, middleware.get_response(request))
    return answer, request


def djangos(response: HttpResponse | None = None, *, nonce: bool = False) -> str:
    """django-csp's own answer, with our one addition (the provider's origins)."""

    class Reference(ContentSecurityPolicyMiddleware):
        process_response = CSPMiddleware.process_response  # no cache: built every time

    answer, _ = headers_of(Reference, response, nonce=nonce)
    return answer.get(HEADER, "")


def ours(response: HttpResponse | None = None, *, nonce: bool = False) -> str:
    answer, _ = headers_of(ContentSecurityPolicyMiddleware, response, nonce=nonce)
    return answer.get(HEADER, "")


def test_the_cached_policy_is_django_csps(settings) -> None:
    settings.CAREGATE_OIDC_ISSUER = ""
    assert ours() == djangos() != ""
    assert "form-action 'self'" in ours() and "frame-ancestors 'none'" in ours()


def test_the_cache_follows_the_providers_origins(settings) -> None:
    settings.CAREGATE_OIDC_ISSUER = ""
    without = ours()
    settings.CAREGATE_OIDC_ISSUER = ISSUER
    settings.CAREGATE_OIDC_CLIENT_ID = "caregate"
    with_provider = ours()
    assert with_provider == djangos() != without
    assert "form-action 'self' https://login.example.org" in with_provider


def test_a_changed_policy_setting_is_not_answered_from_the_cache(settings) -> None:
    ours()  # fills the cache
    policy = {"DIRECTIVES": {**settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]}}
    policy["DIRECTIVES"]["img-src"] = ["'self'", "https://images.example.org"]
    settings.CONTENT_SECURITY_POLICY = policy
    assert "https://images.example.org" in ours()
    assert ours() == djangos()


def test_a_drawn_nonce_goes_into_the_header(settings) -> None:
    policy = {"DIRECTIVES": {**settings.CONTENT_SECURITY_POLICY["DIRECTIVES"]}}
    policy["DIRECTIVES"]["script-src"] = [SELF, NONCE]
    settings.CONTENT_SECURITY_POLICY = policy
    answer, request = headers_of(ContentSecurityPolicyMiddleware, nonce=True)
    assert f"'nonce-{request._csp_nonce}'" in answer[HEADER]
    again, other = headers_of(ContentSecurityPolicyMiddleware, nonce=True)
    assert request._csp_nonce != other._csp_nonce
    assert f"'nonce-{other._csp_nonce}'" in again[HEADER]


def test_a_nonce_asked_for_after_the_header_is_an_error() -> None:
    from csp.exceptions import CSPNonceError

    _, request = headers_of(ContentSecurityPolicyMiddleware)
    with pytest.raises(CSPNonceError):
        str(request.csp_nonce)


def test_a_views_own_policy_is_built_for_it() -> None:
    @csp_update({"img-src": "https://images.example.org"})
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    response = view(RequestFactory().get("/"))
    header = ours(response)
    assert "https://images.example.org" in header
    assert header == djangos(view(RequestFactory().get("/")))
    assert "https://images.example.org" not in ours()  # the cache was not touched


def test_an_exempt_view_gets_no_header() -> None:
    @csp_exempt()
    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse("ok")

    assert ours(view(RequestFactory().get("/"))) == ""


def test_a_header_the_view_set_is_kept() -> None:
    response = HttpResponse("ok")
    response[HEADER] = "default-src 'none'"
    assert ours(response) == "default-src 'none'"


def test_a_report_only_policy_is_still_sent(settings) -> None:
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY = {"DIRECTIVES": {"default-src": ["'none'"]}}
    answer, _ = headers_of(ContentSecurityPolicyMiddleware)
    assert answer[HEADER_REPORT_ONLY] == "default-src 'none'"
    assert answer[HEADER] == djangos()


def test_excluded_prefixes_are_still_honoured(settings) -> None:
    settings.CONTENT_SECURITY_POLICY = {
        **settings.CONTENT_SECURITY_POLICY,
        "EXCLUDE_URL_PREFIXES": ["/"],
    }
    assert ours() == ""


def test_every_page_of_the_site_carries_the_cached_policy(client, settings) -> None:
    settings.CAREGATE_OIDC_ISSUER = ""
    _site_policy.cache_clear()
    for path in ("/", "/healthz", "/no-such-page/", "/trouble-logging-in/"):
        assert client.get(path).headers[HEADER] == djangos(), path
    assert _site_policy.cache_info().misses == 1
