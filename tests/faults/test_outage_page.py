"""In-process: the rate limits fail closed when the cache cannot be reached, and a cache or
database outage answers the 503 "try again in a minute" page, never a 500 (the served
process, with real servers stopped and restarted, is in test_redis_down.py and
test_postgres_restart.py)."""

from __future__ import annotations

import html
from unittest import mock

import pytest
from django.core.cache.backends.redis import RedisCache
from django.db import OperationalError, ProgrammingError
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.delivery.models import Delivery, OutboxMessage
from caregate.ops import faults
from caregate.security.session_store import LeanDatabaseStore
from caregate.verification import ratelimit
from tests.conftest import PASSWORD
from tests.faults.servers import free_port

pytestmark = pytest.mark.django_db

TROUBLE = "The portal is having trouble right now; please try again in a minute."
EMAIL_CODE = "/email-login/email-code/"


def words(response) -> str:
    return html.unescape(response.content.decode())


def assert_outage_page(response) -> None:
    assert response.status_code == 503, response.status_code
    assert TROUBLE in words(response)
    assert response["Retry-After"] == "60"
    assert response["Cache-Control"] == "no-store"
    assert "Traceback" not in words(response)


@pytest.fixture
def limits_unreachable():
    """The rate limits' cache is a Redis nothing listens on (connection refused); the
    sessions keep the test's working cache, so the limits alone are down."""
    dead = RedisCache(f"redis://127.0.0.1:{free_port()}/0", {})
    with mock.patch.object(ratelimit, "cache", dead):
        yield dead


def break_the_cache(settings) -> None:
    """From now on every use of the cache (sessions too) goes to a Redis not there."""
    settings.CACHES = {
        "default": {
            "BACKEND": "caregate.ops.redis_cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }
    settings.SESSION_ENGINE = "caregate.security.session_store"


def to_credentials(client: Client) -> None:
    assert client.post("/login/start/", {"method": "email"}).status_code == 302


def test_hits_count_as_over_the_limit_when_the_cache_is_down(limits_unreachable):
    assert ratelimit.hit("signin:account", "someone") is False
    assert ratelimit.hit_all([("signin:account", "a"), ("signin:client", "b")]) is False
    assert ratelimit.is_limited("signin:account", "someone") is True


def test_the_right_password_is_not_let_through_while_the_limits_are_down(
    client, email_user, limits_unreachable
):
    to_credentials(client)
    attempt = {"email": email_user.email, "password": PASSWORD}
    with mock.patch("caregate.accounts.models.User.check_password") as checked:
        refused = client.post("/email-login/credentials/", attempt)
    assert_outage_page(refused)
    checked.assert_not_called()  # fail closed: the password was never even tried
    event = AuditEvent.objects.filter(event="signin.password").latest("id")
    assert event.outcome == "throttled"


def test_the_flow_goes_on_once_the_limits_are_back(client, email_user):
    dead = RedisCache(f"redis://127.0.0.1:{free_port()}/0", {})
    to_credentials(client)
    attempt = {"email": email_user.email, "password": PASSWORD}
    with mock.patch.object(ratelimit, "cache", dead):
        assert_outage_page(client.post("/email-login/credentials/", attempt))
    signed = client.post("/email-login/credentials/", attempt)
    assert signed.status_code == 302 and signed.url == EMAIL_CODE


def test_no_code_is_sent_or_checked_while_the_limits_are_down(
    client, email_user, settings, outbox_code
):
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    to_credentials(client)
    attempt = {"email": email_user.email, "password": PASSWORD}
    assert client.post("/email-login/credentials/", attempt).url == EMAIL_CODE
    assert client.post(EMAIL_CODE, {"action": "send"}).status_code == 200
    code = outbox_code(email_user.email)
    dead = RedisCache(f"redis://127.0.0.1:{free_port()}/0", {})
    with mock.patch.object(ratelimit, "cache", dead):
        assert_outage_page(client.post(EMAIL_CODE, {"action": "send"}))
        # The right code is not accepted either: its check is budgeted too.
        assert_outage_page(client.post(EMAIL_CODE, {"action": "verify", "code": code}))
    assert Delivery.objects.count() == 1 and OutboxMessage.objects.count() == 1
    verified = client.post(EMAIL_CODE, {"action": "verify", "code": code})
    assert "E-mail address verified" in words(verified)


def test_sessions_on_an_unreachable_redis_give_the_page_not_a_500(make_user, settings):
    client = Client(raise_request_exception=False)
    user = make_user()
    client.force_login(user, backend="caregate.accounts.backends.EmailOrUsernameBackend")
    break_the_cache(settings)
    assert_outage_page(client.get("/home/"))
    assert_outage_page(client.post("/login/start/", {"method": "email"}))


def test_a_lost_database_connection_while_saving_the_session_gives_the_page():
    client = Client(raise_request_exception=False)
    lost = OperationalError("server closed the connection unexpectedly")
    with mock.patch.object(LeanDatabaseStore, "_write", side_effect=lost):
        # The session is saved by SessionMiddleware, after the view: Django has already
        # made a 500 of it at that layer; the outage middleware turns it into the page.
        assert_outage_page(client.post("/login/start/", {"method": "email"}))


def test_a_bug_is_not_disguised_as_an_outage():
    client = Client(raise_request_exception=False)
    bug = ProgrammingError('column "nope" does not exist')
    with mock.patch.object(LeanDatabaseStore, "_write", side_effect=bug):
        response = client.post("/login/start/", {"method": "email"})
    assert response.status_code == 500
    assert TROUBLE not in words(response)


def test_the_page_keeps_the_cookies_the_response_set():
    original = faults.HttpResponse("x")
    original.set_cookie("csrftoken", "abc")
    page = faults.outage_page(original)
    assert page.cookies["csrftoken"].value == "abc"
    assert page.status_code == 503
