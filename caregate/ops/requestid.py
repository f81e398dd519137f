"""The request id: one per request, on the response header and in every log record.

Behind our own proxy (CAREGATE_TRUSTED_PROXY_COUNT > 0) the proxy's X-Request-ID is kept
when it is well formed, so the proxy's access log and ours name the same request. Without
a proxy the header comes from the client, and a client must not choose the id under which
its requests are logged: then, as for a malformed value, a fresh one is made here.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from django.conf import settings
from django.core.signals import request_finished
from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
NO_REQUEST = "-"
# UUIDs, nginx's $request_id (32 hex digits) and the like; nothing that could split a log
# line or smuggle markup into a log viewer.
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{7,127}")

_current: ContextVar[str] = ContextVar("caregate_request_id", default=NO_REQUEST)


def current_request_id() -> str:
    """The id of the request this thread is handling, or "-" outside a request."""
    return _current.get()


def choose_request_id(request: HttpRequest) -> str:
    """The proxy's id when a trusted proxy sent a well-formed one, else a new one."""
    incoming = request.headers.get(HEADER, "")
    if settings.CAREGATE_TRUSTED_PROXY_COUNT > 0 and _WELL_FORMED.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Set the request id first, so every later middleware and view logs with it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = choose_request_id(request)
        # Not reset on the way out: Django logs a returned 4xx/5xx after the middleware
        # chain, and that line must carry the id too. request_finished clears it.
        _current.set(request_id)
        response = self.get_response(request)
        response[HEADER] = request_id
        return response


def _clear(**_kwargs: Any) -> None:
    _current.set(NO_REQUEST)


request_finished.connect(_clear, dispatch_uid="caregate.ops.requestid.clear")
