"""Attack session 12: the hand-written SQL for the session and flow rows (caregate.rowsql)
and the reused redis-py client (caregate.ops.redis_cache).

An attacker's view: hostile session cookies and form values reaching the raw statements,
concurrent requests of one session on a flow step (real threads, real PostgreSQL rows),
replayed and fixated session keys through the raw read and delete, the expiry boundary,
and rate limits hammered through the shared client or with Redis gone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.db import connections
from django.test import Client
from django.utils import timezone

from caregate.flows import keys
from caregate.flows.models import FlowInstance
from tests.conftest import PASSWORD

SESSION_ENGINES = [
    "caregate.security.session_store_db",
    "caregate.security.session_store",
]
CODE_URL = "/email-login/email-code/"
COOKIE = django_settings.SESSION_COOKIE_NAME


def cookie_of(client: Client) -> str:
    return client.cookies[COOKIE].value


def to_code_stage(client: Client, user) -> None:
    client.post("/login/start/", {"method": "email"})
    response = client.post(
        "/email-login/credentials/", {"email": user.email, "password": PASSWORD}
    )
    assert response.status_code == 302 and response.url == CODE_URL, response


def sign_in(client: Client, user, outbox_code: Callable[[str], str]) -> None:
    to_code_stage(client, user)
    client.post(CODE_URL, {"action": "send"})
    client.post(CODE_URL, {"action": "verify", "code": outbox_code(user.email)})
    response = client.post(CODE_URL, {"action": "continue"})
    assert response.status_code == 302 and response.url == "/home/", response


def with_cookie(value: str) -> Client:
    twin = Client()
    twin.cookies[COOKIE] = value
    return twin


# --- hostile session cookies reach the raw SELECT and DELETE ---------------------------

HOSTILE_KEYS = [
    "' OR '1'='1",
    "abcdefgh' OR 1=1 --",
    'x"; DROP TABLE django_session; --',
    "aaaaaaaa%s%s%(x)s",
    "k" * 10_000,
    "é" * 40,
    "ÿþýüabcdefghij",  # latin-1: all a WSGI header can carry
    "a\x00bcdefghijkl",
    "\x00" * 32,
]


@pytest.mark.django_db
@pytest.mark.parametrize("engine", SESSION_ENGINES)
@pytest.mark.parametrize("value", HOSTILE_KEYS)
def test_a_hostile_session_cookie_is_a_parameter_and_no_500(
    settings, email_user, outbox_code, engine, value
):
    settings.SESSION_ENGINE = engine
    victim = Client()
    sign_in(victim, email_user, outbox_code)
    attacker = with_cookie(value)
    for response in (
        attacker.get("/home/"),
        attacker.get("/"),
        attacker.post("/logout/"),
        attacker.post("/login/start/", {"method": "email"}),
    ):
        assert response.status_code < 500, (value[:40], response.status_code)
        assert response.status_code != 503, "a hostile cookie is not an outage"
    assert SESSION_KEY not in attacker.session
    assert Session.objects.count() >= 1
    assert victim.get("/home/").status_code == 200, "the victim's session is untouched"


@pytest.mark.django_db
@pytest.mark.parametrize("engine", SESSION_ENGINES)
def test_a_nul_smuggled_by_an_octal_escape_in_the_cookie_header_is_no_500(
    settings, email_user, engine
):
    """No browser sends NUL in a header, and gunicorn refuses one; but the cookie parser
    decodes a quoted value's octal escapes: ``"\\000..."`` arrives as a NUL in the key."""
    settings.SESSION_ENGINE = engine
    header = f'{COOKIE}="\\000abcdefghijklmnop"'
    client = Client()
    response = client.get("/", HTTP_COOKIE=header)
    assert response.status_code == 200, response.status_code
    response = client.post("/login/start/", {"method": "email"}, HTTP_COOKIE=header)
    assert response.status_code == 302, response.status_code


# --- concurrent requests of one session on a flow step (threads, committed rows) -------


def race(cookie: str, calls: list[Callable[[Client], object]]) -> list:
    """Run each call at the same moment in its own thread, each with its own client
    holding the same session cookie (two tabs, a double click, a scripted burst)."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(index: int, call: Callable[[Client], object]) -> None:
        client = with_cookie(cookie)
        try:
            barrier.wait()
            results[index] = call(client)
        except Exception as exc:
            results[index] = exc
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for result in results:
        assert not isinstance(result, Exception), repr(result)
        assert result.status_code < 500, result.status_code
    return results


def signin_successes(user) -> int:
    from caregate.audit.models import AuditEvent

    return AuditEvent.objects.filter(
        event="signin", outcome="success", user_id_snapshot=user.pk
    ).count()


def post(url: str, data: dict) -> Callable[[Client], object]:
    return lambda client: client.post(url, data)


def home_redirects(results) -> int:
    return sum(1 for r in results if r.status_code == 302 and r.url == "/home/")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("engine", SESSION_ENGINES)
def test_continue_fired_many_times_at_once_signs_in_exactly_once(
    settings, email_user, outbox_code, engine
):
    settings.SESSION_ENGINE = engine
    client = Client()
    to_code_stage(client, email_user)
    client.post(CODE_URL, {"action": "send"})
    client.post(CODE_URL, {"action": "verify", "code": outbox_code(email_user.email)})
    results = race(cookie_of(client), [post(CODE_URL, {"action": "continue"})] * 6)
    assert home_redirects(results) == 1, [(r.status_code, r.get("Location")) for r in results]
    assert signin_successes(email_user) == 1
    assert not FlowInstance.objects.exists(), "the finished flow is gone"
    # Exactly one signed-in session row exists for the user, under a fresh key.
    winner = next(r for r in results if r.status_code == 302 and r.url == "/home/")
    new_key = winner.cookies[COOKIE].value
    assert new_key != cookie_of(client)
    assert with_cookie(new_key).get("/home/").status_code == 200
    assert with_cookie(cookie_of(client)).get("/home/").status_code == 302


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("engine", SESSION_ENGINES)
def test_the_same_code_verified_many_times_at_once_is_accepted_once_and_not_rolled_back(
    settings, email_user, outbox_code, engine
):
    settings.SESSION_ENGINE = engine
    client = Client()
    to_code_stage(client, email_user)
    client.post(CODE_URL, {"action": "send"})
    code = outbox_code(email_user.email)
    pointer = client.session[keys.FLOWS]["email-login"]
    results = race(cookie_of(client), [post(CODE_URL, {"action": "verify", "code": code})] * 6)
    row = FlowInstance.objects.get(pk=pointer)
    # Whatever interleaving: each request either wrote one revision or wrote nothing.
    assert row.revision <= 1 + len(results)
    # The verified mark survives: Continue now signs in (the state was not rolled back).
    response = client.post(CODE_URL, {"action": "continue"})
    assert response.status_code == 302 and response.url == "/home/", response
    assert signin_successes(email_user) == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("engine", SESSION_ENGINES)
def test_continue_racing_cancel_and_start_again_never_signs_in_twice(
    settings, email_user, outbox_code, engine
):
    settings.SESSION_ENGINE = engine
    for _ in range(3):
        client = Client()
        to_code_stage(client, email_user)
        client.post(CODE_URL, {"action": "send"})
        client.post(CODE_URL, {"action": "verify", "code": outbox_code(email_user.email)})
        before = signin_successes(email_user)
        results = race(
            cookie_of(client),
            [
                post(CODE_URL, {"action": "continue"}),
                post("/email-login/cancel/", {}),
                post("/login/start/", {"method": "email"}),
                post(CODE_URL, {"action": "continue"}),
            ],
        )
        assert signin_successes(email_user) - before <= 1
        assert home_redirects(results) == signin_successes(email_user) - before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("engine", SESSION_ENGINES)
def test_double_send_at_once_sends_one_code(settings, email_user, engine):
    from caregate.delivery.models import OutboxMessage

    settings.SESSION_ENGINE = engine
    client = Client()
    to_code_stage(client, email_user)
    results = race(cookie_of(client), [post(CODE_URL, {"action": "send"})] * 5)
    sent = OutboxMessage.objects.filter(to__icontains=email_user.email).count()
    assert sent == 1, (sent, [r.status_code for r in results])


# --- replayed, fixated and expired session keys through the raw read and delete --------


@pytest.mark.django_db
@pytest.mark.parametrize("engine", SESSION_ENGINES)
def test_the_pre_sign_in_key_and_the_signed_out_key_open_nothing(
    settings, email_user, outbox_code, engine
):
    settings.SESSION_ENGINE = engine
    client = Client()
    to_code_stage(client, email_user)
    fixated = cookie_of(client)
    client.post(CODE_URL, {"action": "send"})
    client.post(CODE_URL, {"action": "verify", "code": outbox_code(email_user.email)})
    assert client.post(CODE_URL, {"action": "continue"}).url == "/home/"
    signed_in_key = cookie_of(client)
    assert signed_in_key != fixated
    assert not Session.objects.filter(session_key=fixated).exists()
    assert with_cookie(fixated).get("/home/").status_code == 302
    client.post("/logout/")
    assert not Session.objects.filter(session_key=signed_in_key).exists()
    replay = with_cookie(signed_in_key)
    assert replay.get("/home/").status_code == 302
    assert SESSION_KEY not in replay.session


@pytest.mark.django_db
def test_an_expired_row_is_not_accepted_at_or_after_its_expiry(settings, email_user, outbox_code):
    settings.SESSION_ENGINE = "caregate.security.session_store_db"
    client = Client()
    sign_in(client, email_user, outbox_code)
    key = cookie_of(client)
    expiry = timezone.now() + timedelta(minutes=5)
    Session.objects.filter(session_key=key).update(expire_date=expiry)
    # A second before: still the session. At the very instant, and after: gone.
    for moment, open_ in ((expiry - timedelta(seconds=1), True), (expiry, False)):
        with mock.patch("caregate.security.session_store.timezone.now", return_value=moment):
            response = with_cookie(key).get("/setup/my-account/")
        assert (response.status_code == 200) is open_, (moment, response.status_code)
    Session.objects.filter(session_key=key).update(expire_date=timezone.now() - timedelta(1))
    assert with_cookie(key).get("/home/").status_code == 302


@pytest.mark.django_db
def test_a_step_url_of_another_flow_and_a_replayed_last_step_open_nothing(email_user, outbox_code):
    client = Client()
    sign_in(client, email_user, outbox_code)
    assert signin_successes(email_user) == 1
    for url in (CODE_URL, "/phone-login/phone/", "/email-login/credentials/"):
        response = client.post(url, {"action": "continue"})
        assert response.status_code == 302 and response.url != "/home/", (url, response)
    assert signin_successes(email_user) == 1
    other = Client()
    to_code_stage(other, email_user)
    response = other.post("/phone-login/phone/", {"action": "verify-sms", "code": "123456"})
    assert response.status_code == 302
    assert SESSION_KEY not in other.session


@pytest.mark.django_db
def test_a_hostile_flow_pointer_in_the_session_is_a_parameter(client, email_user):
    to_code_stage(client, email_user)
    session = client.session
    session[keys.FLOWS] = {"email-login": "x' OR '1'='1", "phone-login": "p'; DELETE --"}
    session.save()
    for url in (CODE_URL, "/phone-login/phone/"):
        response = client.post(url, {"action": "continue"})
        assert response.status_code == 302, (url, response.status_code)
    assert FlowInstance.objects.count() == 1


# --- rate limits through the reused redis-py client ------------------------------------


@pytest.fixture
def redis_default():
    from django.core.cache import caches

    from caregate.ops.redis_cache import RedisCache

    redis_cache = caches["default"]
    assert isinstance(redis_cache, RedisCache), "the tests run with REDIS_URL set"
    return redis_cache


@pytest.mark.django_db
def test_rate_limit_hits_at_once_are_counted_exactly(redis_default):
    from caregate.verification import ratelimit

    barrier = threading.Barrier(8)
    allowed: list[bool] = []
    lock = threading.Lock()

    def hammer() -> None:
        barrier.wait()
        for _ in range(25):
            ok = ratelimit.hit("signin:account", "hammered-account")
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    limit = ratelimit.limit_for("signin:account").count
    assert allowed.count(True) == limit and len(allowed) == 200
    assert ratelimit.is_limited("signin:account", "hammered-account")


@pytest.mark.django_db
def test_rate_limits_fail_closed_when_redis_goes_away_under_the_reused_client_and_recover(
    redis_default, email_user
):
    from caregate.verification import ratelimit

    client_ = redis_default._cache.get_client(write=True)
    pool = client_.connection_pool
    port = pool.connection_kwargs["port"]
    pool.connection_kwargs["port"] = 1  # nothing listens there: Redis "down"
    pool.disconnect()
    pool.reset()  # drop the pooled connections (each keeps the port it was made with)
    try:
        assert ratelimit.hit("signin:account", "gone") is False
        assert ratelimit.is_limited("code-verify:client", "127.0.0.1") is True
        browser = Client(raise_request_exception=False)
        browser.post("/login/start/", {"method": "email"})
        response = browser.post(
            "/email-login/credentials/", {"email": email_user.email, "password": PASSWORD}
        )
        assert response.status_code == 503, response.status_code
        assert "please try again in a minute" in response.content.decode()
    finally:
        pool.connection_kwargs["port"] = port
        pool.disconnect()
        pool.reset()
    assert redis_default._cache.get_client(write=True) is client_
    assert ratelimit.hit("signin:account", "back") is True
    browser = Client()
    to_code_stage(browser, email_user)


@pytest.mark.django_db(transaction=True)
def test_double_sms_send_at_once_sends_one_text(settings, make_user):
    """The same cooldown race on LOGIN WITH PHONE: every text is a paid Twilio message."""
    from caregate.delivery.models import OutboxMessage
    from tests.phone_steps import PHONE_STAGE, to_phone_stage

    user = make_user(mfa="phone")
    client = Client()
    to_phone_stage(client, user)
    race(cookie_of(client), [post(PHONE_STAGE, {"action": "sms"})] * 5)
    texts = OutboxMessage.objects.filter(channel="sms").count()
    assert texts == 1, texts


@pytest.mark.django_db(transaction=True)
def test_wrong_codes_fired_at_once_still_void_the_code_after_the_limit(
    settings, email_user, outbox_code
):
    client = Client()
    to_code_stage(client, email_user)
    client.post(CODE_URL, {"action": "send"})
    code = outbox_code(email_user.email)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    limit = settings.CAREGATE_CODE_MAX_ATTEMPTS
    race(cookie_of(client), [post(CODE_URL, {"action": "verify", "code": wrong})] * (limit + 3))
    client.post(CODE_URL, {"action": "verify", "code": code})
    response = client.post(CODE_URL, {"action": "continue"})
    assert not (response.status_code == 302 and response.url == "/home/")
    assert signin_successes(email_user) == 0


@pytest.mark.django_db
def test_a_sign_out_landing_inside_a_concurrent_session_write_does_not_revive_the_session(
    settings, email_user, outbox_code
):
    """cached_db writes the row, then the Redis copy. A Sign out of the same session (from
    another tab) that lands between the two deletes the copy and the row; the slower
    request then puts the copy back, and the copy is read before the row: the signed-out
    key is signed in again for as long as the copy lives."""
    import time

    from django.core.cache import caches

    settings.SESSION_ENGINE = "caregate.security.session_store"
    client = Client()
    sign_in(client, email_user, outbox_code)
    key = cookie_of(client)
    session = client.session
    session[keys.LAST_SEEN] = int(time.time()) - 60  # this request touches LAST_SEEN
    session.save()
    session_cache = caches[django_settings.SESSION_CACHE_ALIAS]
    real_set = session_cache.set
    signed_out = []

    def set_after_a_sign_out(cache_key, *args, **kwargs):
        if key in cache_key and not signed_out:
            signed_out.append(with_cookie(key).post("/logout/"))
        return real_set(cache_key, *args, **kwargs)

    with mock.patch.object(session_cache, "set", side_effect=set_after_a_sign_out):
        slower = with_cookie(key).get("/home/")
    # Its save finds the row gone: Django's "session deleted before the request completed"
    # (SessionInterrupted, a 400), and the copy it wrote is dropped again.
    assert slower.status_code == 400
    assert signed_out and signed_out[0].status_code == 302
    assert not Session.objects.filter(session_key=key).exists(), "the row is gone"
    replay = with_cookie(key)
    assert replay.get("/home/").status_code == 302, "the signed-out key opens the portal"


# --- hostile form values on every stage reach the state written by rowsql.update --------

# Each value walks every stage of every flow (about 6 s): three that stand for the rest
# (a NUL, a 10 kB value, JSON that names a state key). Quotes and other characters are
# covered by test_a_hostile_session_cookie_is_a_parameter_and_no_500 and tests/test_bad_input.
HOSTILE_VALUES = ["a\x00b", "x" * 10_000, '{"reached": 99}']


@pytest.mark.django_db
@pytest.mark.parametrize("value", HOSTILE_VALUES)
def test_hostile_form_values_on_every_stage_write_no_bad_json_and_no_500(
    settings, make_user, org, value
):
    from caregate.flows.registry import FLOWS
    from tests.security.test_concurrency import (
        ACTIONS,
        STAGES,
        _fields,
        _identity_provider,
        flow_data,
    )
    from tests.security.test_concurrency import put_at_stage as at_stage

    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    for flow_name, index, stage_key in STAGES:
        flow = FLOWS[flow_name]
        user = make_user(mfa="phone" if flow_name == "phone-login" else "email")
        data = flow_data(user, org, flow_name, stage_key)
        fields = {name: value for name in _fields(user, org)}
        fields.update(factor=value, link=value, credential=value)
        for action in ACTIONS:
            client = Client()
            state = at_stage(client, flow, index, data)
            with _identity_provider(flow_name):
                response = client.post(flow.url(stage_key), {**fields, "action": action})
            assert response.status_code < 500, (flow_name, stage_key, action)
            row = FlowInstance.objects.filter(pk=state.id).first()
            if row is not None:
                assert row.state["reached"] <= len(flow.stages), (flow_name, stage_key)


# --- the session expiry boundary on the SQLite default (a child process) ---------------

SQLITE_BOUNDARY = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from datetime import UTC, datetime, timedelta
from unittest import mock
from django.contrib.sessions.models import Session
from caregate.security.session_store import LeanDatabaseStore
results = []
for expire in (
    datetime(2031, 3, 9, 7, 0, 0, 0, tzinfo=UTC),  # whole second (no ".000000" stored)
    datetime(2031, 3, 9, 7, 0, 0, 500000, tzinfo=UTC),
    datetime(2031, 11, 2, 5, 30, 0, 0, tzinfo=UTC),  # around the New York DST change
):
    Session.objects.all().delete()
    store = LeanDatabaseStore()
    store["x"] = 1
    store.save()
    Session.objects.filter(session_key=store.session_key).update(expire_date=expire)
    for delta, alive in ((timedelta(microseconds=-1), True), (timedelta(0), False),
                         (timedelta(microseconds=1), False), (timedelta(seconds=-1), True),
                         (timedelta(hours=-4, seconds=1), True), (timedelta(hours=5), False)):
        now = "caregate.security.session_store.timezone.now"
        with mock.patch(now, return_value=expire + delta):
            got = LeanDatabaseStore(store.session_key).load()
        results.append((str(expire), str(delta), bool(got) == alive))
bad = [r for r in results if not r[2]]
print("ok" if not bad else bad)
"""


def test_the_session_expiry_boundary_on_sqlite_matches_postgresql(tmp_path):
    """SQLite compares the stored text: a whole-second expiry is stored without
    ".000000", and TIME_ZONE is America/New_York (stored values are UTC). At the instant
    and after: gone; a microsecond before: still the session."""
    import subprocess
    import sys
    from pathlib import Path

    from tests.test_settings import clean_env

    result = subprocess.run(
        [sys.executable, "-c", SQLITE_BOUNDARY],
        cwd=Path(__file__).resolve().parents[2],
        env=clean_env(DJANGO_SETTINGS_MODULE="caregate.settings", CAREGATE_VAR_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", (
        result.stdout[-2000:],
        result.stderr[-2000:],
    )
