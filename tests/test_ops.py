"""Operations: /healthz and /readyz, the request id in headers and logs, Prometheus metrics."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from unittest import mock

import pytest
from django.db import OperationalError, ProgrammingError
from prometheus_client import REGISTRY

from caregate.audit.log import record
from caregate.audit.models import AuditEvent
from caregate.ops import health, logs, metrics, queue
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

OUTSIDE = "203.0.113.9"  # TEST-NET-3: an address on the internet
TOKEN = "scrape-token-0123456789abcdefghijklmnopqrstuvwxyz"


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- /healthz and /readyz ---------------------------------------------------------------


def test_healthz_answers_without_touching_any_service(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200 and response.content == b"ok"


def test_readyz_names_each_check(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["database"] == "ok" and body["checks"]["cache"] == "ok"
    assert set(body["checks"]) == set(health.checks())


def test_readyz_when_the_cache_is_down(client):
    with mock.patch.object(health.cache, "set", side_effect=ConnectionError("Redis down")):
        response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"]["cache"] == "failed" and body["checks"]["database"] == "ok"
    assert "Redis" not in response.content.decode()  # the reason is logged, not shown


def test_readyz_when_the_cache_loses_writes(client, settings):
    # A cache that accepts every write and keeps nothing cannot hold a rate limit.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"}}
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["cache"] == "failed"


def test_readyz_when_the_database_is_down(client):
    broken = mock.MagicMock()
    broken.cursor.side_effect = OperationalError("connection refused")
    with mock.patch.object(health, "connection", broken):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "failed"


def test_readyz_when_the_task_queue_cannot_be_read(client):
    with (
        mock.patch.object(queue, "installed", return_value=True),
        mock.patch.object(
            queue, "task_results", side_effect=ProgrammingError("relation does not exist")
        ),
    ):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["task_queue"] == "failed"


def test_probes_are_not_redirected_to_https_in_production(client, settings):
    # Load balancers and the scraper speak plain http to the app process.
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/home/").status_code == 301  # everything else still is


# --- request id -------------------------------------------------------------------------


def test_a_request_id_is_made_for_every_request(client):
    first = client.get("/healthz")["X-Request-ID"]
    second = client.get("/healthz")["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first) and first != second


def test_the_trusted_proxys_request_id_is_kept(client, settings):
    settings.CAREGATE_TRUSTED_PROXY_COUNT = 1
    proxy_id = "7f3c2a9e41d04b6f9a1e0c5d2b8a6f13"
    response = client.get("/healthz", headers={"X-Request-ID": proxy_id})
    assert response["X-Request-ID"] == proxy_id


@pytest.mark.parametrize(
    "bad",
    [
        "short",
        "x" * 200,
        "abcdefgh\nforged log line",
        "abcdefgh ijklmnop",
        '<script>alert("id")</script>',
        '"},"level":"CRITICAL',
    ],
)
def test_a_malformed_request_id_is_replaced(client, settings, bad):
    settings.CAREGATE_TRUSTED_PROXY_COUNT = 1
    response = client.get("/healthz", headers={"X-Request-ID": bad})
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


def test_without_a_proxy_the_client_cannot_choose_its_request_id(client, settings):
    settings.CAREGATE_TRUSTED_PROXY_COUNT = 0
    chosen = "someone-elses-request-0001"
    response = client.get("/healthz", headers={"X-Request-ID": chosen})
    assert response["X-Request-ID"] != chosen


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """Every record of the django loggers, as the production handler formats it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(logs.RequestIdFilter())
    handler.setFormatter(logs.JsonFormatter())
    logger = logging.getLogger("django")
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def log_lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_json_log_line_carries_the_request_id(client, json_log):
    response = client.get("/no-such-page/")  # Django logs "Not Found" inside the request
    assert response.status_code == 404
    (line,) = [entry for entry in log_lines(json_log) if entry["logger"] == "django.request"]
    assert line["request_id"] == response["X-Request-ID"]
    assert line["level"] == "WARNING" and "/no-such-page/" in line["message"]
    assert "request" not in line  # the HttpRequest object (headers, cookies) is left out
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])  # UTC


def test_a_response_logged_after_the_middleware_still_has_the_request_id(client, json_log):
    # A returned 403 is logged by Django after the middleware chain has returned.
    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 403
    (line,) = [entry for entry in log_lines(json_log) if entry["logger"] == "django.request"]
    assert line["request_id"] == response["X-Request-ID"]


def test_outside_a_request_the_request_id_is_a_dash(client, json_log):
    client.get("/healthz")
    logging.getLogger("django.test").warning("between requests")
    assert log_lines(json_log)[-1]["request_id"] == "-"


def test_the_readable_format_carries_the_request_id_too():
    config = logs.logging_config(json_lines=False, level="INFO")
    assert "%(request_id)s" in config["formatters"]["caregate"]["format"]
    assert config["handlers"]["console"]["filters"] == ["request_id"]


def test_gunicorn_access_lines_are_json_without_the_query_or_link_tokens():
    atoms = {
        "h": "10.0.0.5",
        "m": "GET",
        "U": "/registration-link/s3cr3t-token-value/",
        "q": "code=123456",
        "s": "302",
        "B": 0,
        "D": 12345,
        "a": "Mozilla/5.0",
        "{x-request-id}o": "7f3c2a9e41d04b6f9a1e0c5d2b8a6f13",
    }
    entry = logging.LogRecord("gunicorn.access", logging.INFO, "", 0, "%(h)s", (atoms,), None)
    line = json.loads(logs.AccessJsonFormatter().format(entry))
    assert line["path"] == "/registration-link/<token>/"
    assert line["status"] == 302 and line["duration_ms"] == 12.3
    assert line["request_id"] == atoms["{x-request-id}o"]
    assert "s3cr3t" not in json.dumps(line) and "123456" not in json.dumps(line)


# --- business counters (from the audit hook) --------------------------------------------


def test_an_email_login_moves_the_counters(client, email_user, outbox_code):
    signins = ("caregate_signins_total", {"method": "email", "outcome": "success"})
    sent = ("caregate_codes_sent_total", {"channel": "email"})
    checked = ("caregate_code_checks_total", {"channel": "email", "outcome": "ok"})
    steps = ("caregate_request_duration_seconds_count", {"route": "flows:stage", "method": "POST"})
    before = {name: sample(name, **labels) for name, labels in (signins, sent, checked, steps)}

    client.post("/login/start/", {"method": "email"})
    client.post("/email-login/credentials/", {"email": email_user.email, "password": PASSWORD})
    client.post("/email-login/email-code/", {"action": "send"})
    code = outbox_code(email_user.email)
    client.post("/email-login/email-code/", {"action": "verify", "code": code})
    response = client.post("/email-login/email-code/", {"action": "continue"})
    assert response.status_code == 302 and response.url == "/home/"

    def moved(metric: tuple[str, dict]) -> float:
        return sample(metric[0], **metric[1]) - before[metric[0]]

    assert moved(signins) == 1
    assert moved(sent) == 1
    assert moved(checked) == 1
    assert moved(steps) == 4  # credentials, send, verify, continue: one route, not four paths


def test_wrong_passwords_and_the_throttle_are_counted(client, email_user, settings):
    settings.CAREGATE_RATE_LIMITS = {**settings.CAREGATE_RATE_LIMITS, "signin:account": (2, 900)}
    failed = {"method": "email", "outcome": "failure"}
    throttled = {"method": "email", "outcome": "throttled"}
    before = (
        sample("caregate_signins_total", **failed),
        sample("caregate_signins_total", **throttled),
        sample("caregate_throttled_total", event="signin.password"),
    )
    client.post("/login/start/", {"method": "email"})
    for _ in range(3):
        client.post("/email-login/credentials/", {"email": email_user.email, "password": "nope"})
    after = (
        sample("caregate_signins_total", **failed),
        sample("caregate_signins_total", **throttled),
        sample("caregate_throttled_total", event="signin.password"),
    )
    assert [b - a for a, b in zip(before, after, strict=True)] == [2, 1, 1]


def test_a_failed_send_is_a_delivery_failure():
    before = sample("caregate_delivery_failures_total", event="phone.send", channel="sms")
    record("phone.send", "failed", channel="sms", error="30003")
    after = sample("caregate_delivery_failures_total", event="phone.send", channel="sms")
    assert after - before == 1


def test_a_metrics_fault_never_fails_the_audited_step():
    with mock.patch.object(metrics.SIGNINS, "labels", side_effect=OSError("disk full")):
        entry = record("signin", "success", method="email")
    assert AuditEvent.objects.filter(pk=entry.pk).exists()


def test_unknown_paths_and_methods_make_no_new_series(client):
    labels = {"route": "<unmatched>", "method": "other"}
    before = sample("caregate_request_duration_seconds_count", **labels)
    for path in ("/probe-aaaa/", "/probe-bbbb/", "/probe-cccc/"):
        client.generic("BREW", path)
    body = client.get("/metrics").content.decode()
    assert "probe-" not in body and "BREW" not in body
    assert sample("caregate_request_duration_seconds_count", **labels) - before == 3


# --- /metrics access --------------------------------------------------------------------


def test_metrics_from_loopback(client):
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert b"caregate_signins_total" in response.content


def test_metrics_refused_from_an_outside_address(client):
    response = client.get("/metrics", REMOTE_ADDR=OUTSIDE)
    assert response.status_code == 403
    assert b"caregate_" not in response.content


def test_metrics_refused_through_a_proxy_on_loopback_that_is_not_configured(client, settings):
    # nginx on the same host makes every request come from 127.0.0.1.
    settings.CAREGATE_TRUSTED_PROXY_COUNT = 0
    response = client.get("/metrics", headers={"X-Forwarded-For": OUTSIDE})
    assert response.status_code == 403


def test_metrics_refused_with_a_forged_forwarded_address(client, settings):
    settings.CAREGATE_TRUSTED_PROXY_COUNT = 1
    # The client wrote 127.0.0.1 itself; our proxy appended the address it really saw.
    response = client.get("/metrics", headers={"X-Forwarded-For": f"127.0.0.1, {OUTSIDE}"})
    assert response.status_code == 403


def test_metrics_from_an_allowed_network(client, settings):
    settings.CAREGATE_METRICS_ALLOWED_IPS = ["10.20.0.0/16"]
    assert client.get("/metrics", REMOTE_ADDR="10.20.3.4").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="10.21.3.4").status_code == 403
    assert client.get("/metrics").status_code == 403  # loopback is no longer in the list


def test_metrics_from_ipv4_mapped_loopback(client):
    assert client.get("/metrics", REMOTE_ADDR="::ffff:127.0.0.1").status_code == 200


def test_metrics_with_the_bearer_token(client, settings):
    settings.CAREGATE_METRICS_TOKEN = TOKEN
    good = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, headers=good).status_code == 200
    wrong = {"Authorization": f"Bearer {TOKEN[:-1]}x"}
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, headers=wrong).status_code == 403
    basic = {"Authorization": f"Basic {TOKEN}"}
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, headers=basic).status_code == 403


def test_an_empty_bearer_token_opens_nothing_when_no_token_is_set(client, settings):
    settings.CAREGATE_METRICS_TOKEN = ""
    headers = {"Authorization": "Bearer "}
    assert client.get("/metrics", REMOTE_ADDR=OUTSIDE, headers=headers).status_code == 403


def test_metrics_only_answers_get(client):
    assert client.post("/metrics").status_code == 405


def test_a_bad_allowed_network_stops_start_up(settings):
    settings.CAREGATE_METRICS_ALLOWED_IPS = ["10.0.0.0/33"]
    with pytest.raises(Exception, match="CAREGATE_METRICS_ALLOWED_IPS"):
        metrics.allowed_networks()
