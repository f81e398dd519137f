"""Server-side session lifetimes (HIPAA automatic logoff) and no-store caching."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from functools import lru_cache
from typing import Any

from csp.constants import HEADER
from csp.middleware import CheckableLazyObject, CSPMiddleware, PolicyParts
from csp.utils import build_policy
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from caregate.audit.log import record
from caregate.flows import keys
from caregate.staff import oidc
from caregate.verification import remember

# Write the last-seen time at most this often: a session write on every request would
# cost the 8 a.m. rush a database/Redis write per page, for no real gain in precision.
_TOUCH_EVERY = 15

Handler = Callable[[HttpRequest], HttpResponse]


class SessionLifetimeMiddleware:
    """Sign the user out after the idle timeout or the absolute lifetime, whichever first."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., HttpResponse],
        view_args: tuple[object, ...],
        view_kwargs: dict[str, object],
    ) -> HttpResponse | None:
        # Checked here rather than in __call__: this middleware sits before
        # MessageMiddleware, whose storage (for the signed-out message) only exists once
        # every middleware has seen the request; a response returned from process_view
        # still goes back out through MessageMiddleware, which saves the message.
        if request.user.is_authenticated:
            expired = self._expired(request)
            if expired:
                return self._sign_out(request, expired)
        return None

    def _expired(self, request: HttpRequest) -> str:
        now = time.time()
        session = request.session
        auth_time = session.get(keys.AUTH_TIME)
        last_seen = session.get(keys.LAST_SEEN)
        if auth_time is None or last_seen is None:
            return "unknown"
        if now - auth_time >= settings.CAREGATE_SESSION_MAX_SECONDS:
            return "absolute"
        if keys.REMEMBER_UNTIL in session:
            # Created from a Remember Me token: it may not outlive the token's four hours,
            # nor the token itself (deleted at Sign out from any browser that held it, or
            # voided by an account change). One indexed read per request, for these only.
            if now >= session[keys.REMEMBER_UNTIL]:
                return "remember-expired"
            if not remember.session_token_valid(request):
                return "remember-ended"
        if now - last_seen >= settings.CAREGATE_IDLE_TIMEOUT_SECONDS:
            return "idle"
        if now - last_seen >= min(_TOUCH_EVERY, settings.CAREGATE_IDLE_TIMEOUT_SECONDS / 4):
            session[keys.LAST_SEEN] = int(now)
        return ""

    def _sign_out(self, request: HttpRequest, reason: str) -> HttpResponse:
        user = request.user
        record("session.timeout", reason, request=request, user=user)
        logout(request)  # flushes the server-side session
        if reason == "idle":
            minutes = settings.CAREGATE_IDLE_TIMEOUT_SECONDS // 60
            text = (
                "For your security you were signed out after "
                f"{minutes} minute{'s' if minutes != 1 else ''} without activity. "
                "Please sign in again."
            )
        else:
            text = "Your session has ended. Please sign in again."
        messages.info(request, text)
        return redirect("portal:login")


class NoStoreMiddleware:
    """Tell browsers and proxies not to keep copies of pages (PHI, sign-in state)."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not request.path.startswith("/static/"):
            response.setdefault("Cache-Control", "no-store")
        return response


# What a response may carry that makes its policy its own (django-csp's decorators).
_PER_RESPONSE = (
    "_csp_config",
    "_csp_update",
    "_csp_replace",
    "_csp_exempt",
    "_csp_config_ro",
    "_csp_update_ro",
    "_csp_replace_ro",
    "_csp_exempt_ro",
)


@lru_cache(maxsize=16)
def _site_policy(form_action_origins: tuple[str, ...]) -> str:
    """The header every plain response gets, built once per set of identity provider
    origins: django-csp rebuilt it (asdict's deep copies, every directive) twice per
    response, about a third of a millisecond of each request's CPU here."""
    update = {"form-action": list(form_action_origins)} if form_action_origins else None
    return build_policy(**asdict(PolicyParts(update=update)))


@receiver(setting_changed)
def _forget_site_policy(**_: Any) -> None:
    _site_policy.cache_clear()


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's policy, with the staff LOGIN's identity provider allowed as a form
    target: LOGIN and Sign out are forms posted to Caregate that redirect on to the
    provider, and Chromium blocks such a redirect unless ``form-action`` allows it.

    A plain response (no nonce drawn, no per-view policy, no report-only policy
    configured, no excluded prefixes) gets the site's policy from a cache; anything else
    goes through django-csp's own process_response."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not self._plain(request, response):
            return super().process_response(request, response)
        if HEADER not in response:
            response[HEADER] = _site_policy(tuple(oidc.form_action_origins()))
        # As django-csp does: a nonce asked for after the header was written is an error.
        request.csp_nonce = CheckableLazyObject(self._csp_nonce_post_response)  # type: ignore[attr-defined]
        return response

    @staticmethod
    def _plain(request: HttpRequest, response: HttpResponse) -> bool:
        policy = getattr(settings, "CONTENT_SECURITY_POLICY", None)
        return (
            bool(policy)
            and not policy.get("EXCLUDE_URL_PREFIXES")
            and not getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None)
            and not settings.DEBUG
            and getattr(request, "_csp_nonce", None) is None
            and not any(hasattr(response, name) for name in _PER_RESPONSE)
        )

    def get_policy_parts(
        self, request: HttpRequest, response: HttpResponse, report_only: bool = False
    ) -> PolicyParts:
        parts = super().get_policy_parts(request, response, report_only)
        origins = oidc.form_action_origins()
        if report_only or not origins:
            return parts
        update = dict(parts.update or {})
        update["form-action"] = [*update.get("form-action", []), *origins]
        parts.update = update
        return parts
