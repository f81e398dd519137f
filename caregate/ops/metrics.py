"""Prometheus metrics: business counters from the audit log's one hook, request latency.

Every sign-in step, send, code check and throttle is an audit event, so ``observe`` (called
by caregate.audit.log.record) is the only place the business counters move: a new step
that is audited is counted without another call site.

Under gunicorn every worker is a process: with PROMETHEUS_MULTIPROC_DIR set (before the
process starts) prometheus-client keeps each process's values in files there and /metrics
adds them up (docs/deployment.md).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric

from caregate.ops import queue
from caregate.security.client import client_ip

logger = logging.getLogger(__name__)

SIGNINS = Counter(
    "caregate_signins",
    "Completed sign-ins, and sign-in attempts refused, by method and outcome",
    ["method", "outcome"],
)
CODES_SENT = Counter("caregate_codes_sent", "Codes sent (emailed, texted, called)", ["channel"])
CODE_CHECKS = Counter(
    "caregate_code_checks", "Codes checked, by channel and outcome", ["channel", "outcome"]
)
DELIVERY_FAILURES = Counter(
    "caregate_delivery_failures",
    "Messages that could not be sent, by audit event and channel",
    ["event", "channel"],
)
THROTTLED = Counter(
    "caregate_throttled", "Actions refused by a rate limit, by audit event", ["event"]
)
REQUEST_SECONDS = Histogram(
    "caregate_request_duration_seconds",
    "Time to answer a request, by route name (never the raw path) and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
RESPONSES = Counter(
    "caregate_responses", "Responses by route name and status code", ["route", "status"]
)

# The password step names its flow; the sign-in it belongs to is named by method.
_FLOW_METHOD = {"email-login": "email", "phone-login": "phone"}
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_UNMATCHED = "<unmatched>"  # no route: 404s, redirects to https, refused hosts


def _label(value: Any) -> str:
    # Label values come from code (event names, outcomes); the cap is a backstop against
    # a value that would make a new time series per request.
    return str(value or "-")[:48]


def observe(event: str, outcome: str, detail: Mapping[str, Any], *, flow: str = "") -> None:
    """Count one audit event in the counters it belongs to; never raise."""
    try:
        _count(event, outcome, detail, flow)
    except Exception:
        # A metrics fault (a full disk under PROMETHEUS_MULTIPROC_DIR) must not fail the
        # sign-in whose audit event is already written.
        logger.exception("could not count the audit event %s in the metrics", event)


def _count(event: str, outcome: str, detail: Mapping[str, Any], flow: str) -> None:
    channel = _label(detail.get("channel"))
    method = _signin_method(event, outcome, detail, flow)
    if method:
        SIGNINS.labels(method=_label(method), outcome=_label(outcome)).inc()
    if (event, outcome) in {("code.send", "sent"), ("phone.send", "sent")}:
        CODES_SENT.labels(channel=channel).inc()
    elif (event, outcome) == ("phone.send", "placed"):
        CODES_SENT.labels(channel="voice").inc()
    if event == "code.verify":
        CODE_CHECKS.labels(channel=channel, outcome=_label(outcome)).inc()
    elif event == "call.keys":  # the digits keyed in a call are its code
        CODE_CHECKS.labels(
            channel="voice", outcome="ok" if outcome == "approved" else "wrong"
        ).inc()
    if outcome == "failed":
        # Events without a channel that can fail are all emails (links, notices).
        DELIVERY_FAILURES.labels(
            event=_label(event), channel=_label(detail.get("channel", "email"))
        ).inc()
    if outcome == "throttled":
        THROTTLED.labels(event=_label(event)).inc()


def _signin_method(event: str, outcome: str, detail: Mapping[str, Any], flow: str) -> str:
    """The sign-in method this event counts for, or "" when it is not a sign-in's end."""
    if event == "signin":
        return str(detail.get("method", ""))
    if outcome == "success":
        return ""  # a passed step, not yet a sign-in
    if event == "signin.password":
        return _FLOW_METHOD.get(flow, flow or "password")
    if event == "remember.use":
        return f"remembered-{detail.get('method', '')}"
    if event.startswith("staff-login."):
        return "staff-sso"
    return ""


class RequestMetricsMiddleware:
    """Time every request; label it with the route's name, resolved after the view ran."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        response = self.get_response(request)
        elapsed = time.perf_counter() - started
        match = getattr(request, "resolver_match", None)
        route = match.view_name if match is not None else _UNMATCHED
        method = request.method if request.method in _METHODS else "other"
        REQUEST_SECONDS.labels(route=route, method=method).observe(elapsed)
        RESPONSES.labels(route=route, status=str(response.status_code)).inc()
        return response


# --- /metrics -------------------------------------------------------------------------

_PROXY_HEADERS = (
    "HTTP_X_FORWARDED_FOR",
    "HTTP_X_FORWARDED_PROTO",
    "HTTP_X_REAL_IP",
    "HTTP_FORWARDED",
)


@cache
def _networks(
    entries: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    try:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)
    except ValueError as error:
        raise ImproperlyConfigured(f"CAREGATE_METRICS_ALLOWED_IPS: {error}") from error


def allowed_networks() -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The networks that may read /metrics (raises ImproperlyConfigured on a bad entry)."""
    return _networks(tuple(settings.CAREGATE_METRICS_ALLOWED_IPS))


def _address_allowed(request: HttpRequest) -> bool:
    if settings.CAREGATE_TRUSTED_PROXY_COUNT == 0 and any(
        header in request.META for header in _PROXY_HEADERS
    ):
        # A proxy we were not told about: REMOTE_ADDR is the proxy (often loopback), not
        # the client, so the address proves nothing.
        return False
    try:
        address = ipaddress.ip_address(client_ip(request))
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in allowed_networks())


def _token_allowed(request: HttpRequest) -> bool:
    token = settings.CAREGATE_METRICS_TOKEN
    scheme, _, supplied = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and constant_time_compare(supplied, token)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


class BacklogCollector:
    """The task queue's backlog, read from the database at each scrape (one process's
    view is the whole queue's, so it is not a per-process value)."""

    def collect(self) -> Iterator[Metric]:
        try:
            backlog = queue.backlog()
        except Exception:
            # Absent gauges (alert on absent()) rather than a failed scrape of everything.
            logger.exception("could not read the task queue for the metrics")
            return
        yield GaugeMetricFamily(
            "caregate_tasks_waiting", "Tasks due and not yet started", value=backlog.waiting
        )
        yield GaugeMetricFamily(
            "caregate_tasks_oldest_waiting_seconds",
            "How long the oldest due task has waited for a worker",
            value=backlog.oldest_seconds,
        )


def exposition() -> bytes:
    """Every metric in Prometheus's text format."""
    text = generate_latest(_registry())
    if queue.installed():
        backlog_registry = CollectorRegistry(auto_describe=False)
        backlog_registry.register(BacklogCollector())
        text += generate_latest(backlog_registry)
    return text


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """Prometheus's scrape: only from an allowed network or with the bearer token."""
    if not (_token_allowed(request) or _address_allowed(request)):
        return HttpResponse("Forbidden", status=403, content_type="text/plain")
    return HttpResponse(exposition(), content_type=CONTENT_TYPE_LATEST)
