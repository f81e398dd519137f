"""When a service the portal needs is down: a plain "try again in a minute" page, never a
traceback page or Django's bare 500.

Two kinds of outage end here:

- An exception from Redis (connection refused, a timeout) or from the database (the
  connection lost, the server restarting), raised by a view or by a middleware: the
  session store reads and writes both. Django turns an exception raised inside a
  middleware into a 500 response at that layer, so this middleware cannot catch it; the
  ``got_request_exception`` signal (sent with the request, inside the ``except``) marks
  the request and this middleware, outside the sessions, swaps the 500 for the page.
- A rate limit that could not reach the cache (caregate.verification.ratelimit): it has
  already refused the action (fail closed) and calls :func:`note_outage`; the page the
  view rendered would blame the user ("too many attempts", "check your password"), so
  this page replaces it.

The page is a 503 with ``Retry-After``; it is rendered without the request's context
processors, which would read the session and the user (the services that are down).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextvars import ContextVar

from django.conf import settings
from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

logger = logging.getLogger(__name__)

TEMPLATE = "503.html"
RETRY_AFTER_SECONDS = 60
_MARK = "_caregate_outage"
# The service a rate limit (or any helper without the request) could not reach during
# this request; reset by the middleware at each request.
_noted: ContextVar[str] = ContextVar("caregate_outage", default="")

# A service that is down or restarting, not a bug: IntegrityError, ProgrammingError and
# redis' ResponseError stay 500s (they mean the code is wrong).
_OUTAGES: tuple[tuple[type[BaseException], str], ...] = (
    (RedisConnectionError, "cache"),
    (RedisTimeoutError, "cache"),
    (OperationalError, "database"),
    (InterfaceError, "database"),
)


def note_outage(service: str) -> None:
    """Called where a service failed and the code went on safely (e.g. refused)."""
    _noted.set(service)


def outage_of(exc: BaseException | None) -> str:
    """Which service an exception (or one it was raised from) says is down; "" if none."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        for kind, service in _OUTAGES:
            if isinstance(exc, kind):
                return service
        # e.g. the session store's UpdateError raised from a lost connection's error
        exc = exc.__cause__ or exc.__context__
    return ""


@receiver(got_request_exception, dispatch_uid="caregate.ops.faults")
def _mark_request(sender: object, request: HttpRequest | None = None, **kwargs: object) -> None:
    service = outage_of(sys.exc_info()[1])
    if request is not None and service:
        setattr(request, _MARK, service)


def outage_page(original: HttpResponse | None = None) -> HttpResponse:
    """The 503 page; the original response's cookies are kept (a session or CSRF cookie
    it set is what the server now holds)."""
    content = render_to_string(
        TEMPLATE,
        {
            "brand": settings.CAREGATE_BRAND_NAME,
            "portal_name": settings.CAREGATE_PORTAL_NAME,
            "support_phone": settings.CAREGATE_SUPPORT_PHONE,
        },
    )
    page = HttpResponse(content, status=503)
    page["Retry-After"] = str(RETRY_AFTER_SECONDS)
    # Outside the middlewares that set these on every other page.
    page["Cache-Control"] = "no-store"
    page["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'self'; img-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    page["X-Frame-Options"] = "DENY"
    page["X-Content-Type-Options"] = "nosniff"
    if original is not None:
        page.cookies = original.cookies
    return page


class ServiceOutageMiddleware:
    """Placed outside the session and authentication middlewares (settings.MIDDLEWARE)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        token = _noted.set("")
        try:
            response = self.get_response(request)
            service = getattr(request, _MARK, "") or _noted.get()
        finally:
            _noted.reset(token)
        if not service:
            return response
        logger.warning("answered 503: the %s is not available", service)
        return outage_page(response)
