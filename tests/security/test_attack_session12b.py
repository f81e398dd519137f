"""Attack session 12b: the changes after d4297a4 seen by an attacker.

The session store's new write order (copy before row, the copy dropped again after a
delete), the advisory lock around code issue, get_user / resolve / needs_terms / the home
counters by hand-written SQL, the delivery sweep of orphaned tasks, the forgot-password
"same password" check, and PostgreSQL's server-side parameters and prepared statements.
"""

from __future__ import annotations

import threading
import time
from importlib import import_module
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import SESSION_KEY
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.db import connection, connections
from django.test import Client
from django.utils import timezone

from caregate.accounts.models import TermsAcceptance, TermsVersion
from caregate.flows import keys
from tests.conftest import PASSWORD, sign_in_as
from tests.security.test_attack_session12_rowsql import (
    CODE_URL,
    cookie_of,
    post,
    race,
    sign_in,
    to_code_stage,
    with_cookie,
)
from tests.test_delivery_stale import database_backend  # noqa: F401 (a fixture)

CACHED = "caregate.security.session_store"


def on_postgresql() -> bool:
    return connection.vendor == "postgresql"


def burst(cookie: str, calls: list) -> list:
    """race() on PostgreSQL; one after the other on the test suite's in-memory SQLite
    (its shared cache answers concurrent writers "table is locked", which a file database
    in IMMEDIATE mode does not)."""
    if on_postgresql():
        return race(cookie, calls)
    results = [call(with_cookie(cookie)) for call in calls]
    assert all(r.status_code < 500 for r in results), [r.status_code for r in results]
    return results


# --- session store: a read-through load racing a Sign out ------------------------------


@pytest.mark.django_db
def test_a_request_reading_the_row_while_a_sign_out_runs_does_not_put_the_copy_back(
    settings, email_user, outbox_code
):
    """cached_db's load(): on a Redis miss it reads the row and THEN writes the copy. A
    Sign out (or End session from My Account) landing between the two drops the copy,
    deletes the row and drops the copy again; the slower request then writes the copy of
    a session whose row is gone. A request that does not save (any page within the 15 s
    LAST_SEEN touch) never notices, and the copy is read before the row: the signed-out
    key opens the portal again. The fix of session 12 only covered save(). The miss needs
    no eviction: the Sign out's own first drop makes it for a request that reads right
    after it (reproduced on make serve: 3 of 150 Sign outs raced by 8 GETs left the key
    signed in with its row gone). Here the copy is dropped beforehand and the Sign out is
    run at the load's cache write, the order such a request lands in."""
    settings.SESSION_ENGINE = CACHED
    client = Client()
    sign_in(client, email_user, outbox_code)
    key = cookie_of(client)
    session_cache = caches[django_settings.SESSION_CACHE_ALIAS]
    session_cache.delete("django.contrib.sessions.cached_db" + key)  # evicted / expired copy
    store = import_module(CACHED).SessionStore
    real_read = store._get_session_from_db
    fired: list = []

    def read_then_a_sign_out(self):
        row = real_read(self)
        if self.session_key == key and not fired:
            fired.append(True)
            fired.append(with_cookie(key).post("/logout/"))  # lands after the row was read
        return row

    with mock.patch.object(store, "_get_session_from_db", read_then_a_sign_out):
        slower = with_cookie(key).get("/home/")
    assert fired and fired[1].status_code == 302
    assert not Session.objects.filter(session_key=key).exists(), "the row is gone"
    assert slower.status_code in (200, 302, 400)
    # The fix: the load checks the row again after writing the copy, and drops the copy
    # when the row is gone.
    assert session_cache.get("django.contrib.sessions.cached_db" + key) is None
    replay = with_cookie(key).get("/home/")
    assert replay.status_code == 302, "the signed-out key opens the portal again"
    assert replay.url.startswith("/?next="), replay.url  # to the login page


@pytest.mark.django_db
def test_a_request_saving_while_a_sign_out_runs_does_not_revive_the_key(
    settings, email_user, outbox_code
):
    """The session-12 fix (copy before row) held: a saving request racing the Sign out."""
    settings.SESSION_ENGINE = CACHED
    client = Client()
    sign_in(client, email_user, outbox_code)
    key = cookie_of(client)
    session = client.session
    session[keys.LAST_SEEN] = int(time.time()) - 60
    session.save()
    from caregate import rowsql

    real_update = rowsql.update
    fired: list = []

    def update_after_a_sign_out(model, *args, **kwargs):
        if model is Session and not fired:
            fired.append(with_cookie(key).post("/logout/"))
        return real_update(model, *args, **kwargs)

    with mock.patch.object(rowsql, "update", side_effect=update_after_a_sign_out):
        with_cookie(key).get("/home/")
    assert fired
    assert with_cookie(key).get("/home/").status_code == 302


# --- the Terms of Use gate (needs_terms in one hand-written statement) -----------------


def _terms(version: str, published_at) -> TermsVersion:
    return TermsVersion.objects.create(
        version=version, text=f"text {version}", published_at=published_at
    )


@pytest.mark.django_db
def test_the_terms_gate_wants_the_newest_published_version_and_ignores_future_ones(
    client, email_user
):
    now = timezone.now()
    old = _terms("1.0", now - timezone.timedelta(days=30))
    current = _terms("2.0", now - timezone.timedelta(days=1))
    future = _terms("3.0", now + timezone.timedelta(days=1))
    TermsAcceptance.objects.create(user=email_user, terms=old, accepted_at=now)
    TermsAcceptance.objects.create(user=email_user, terms=future, accepted_at=now)
    sign_in_as(client, email_user, "email")
    for page in ("/home/", "/cases/", "/messages/"):
        response = client.get(page)
        assert response.status_code == 302 and response.url == "/terms/", (page, response)
    # A forged terms id (the future or the old version) in the form accepts only the
    # version in force.
    response = client.post("/terms/", {"agree": "yes", "terms": future.pk, "version": "1.0"})
    assert response.status_code == 302
    accepted = set(TermsAcceptance.objects.filter(user=email_user).values_list("terms", flat=True))
    assert accepted == {old.pk, current.pk, future.pk}
    assert client.get("/home/").status_code == 200


@pytest.mark.django_db
def test_two_versions_published_at_the_same_moment_the_higher_id_is_in_force(client, email_user):
    moment = timezone.now() - timezone.timedelta(hours=1)
    first = _terms("a", moment)
    second = _terms("b", moment)
    TermsAcceptance.objects.create(user=email_user, terms=first, accepted_at=timezone.now())
    sign_in_as(client, email_user, "email")
    assert client.get("/home/").url == "/terms/"
    client.post("/terms/", {"agree": "yes"})
    assert TermsAcceptance.objects.filter(user=email_user, terms=second).exists()
    assert client.get("/home/").status_code == 200


@pytest.mark.django_db
def test_another_users_acceptance_does_not_open_the_gate(client, email_user, make_user):
    current = _terms("2.0", timezone.now() - timezone.timedelta(days=1))
    other = make_user()
    TermsAcceptance.objects.create(user=other, terms=current, accepted_at=timezone.now())
    sign_in_as(client, email_user, "email")
    assert client.get("/home/").url == "/terms/"


@pytest.mark.django_db(transaction=True)
def test_accepting_many_times_at_once_records_one_acceptance_and_no_500(settings, email_user):
    current = _terms("2.0", timezone.now() - timezone.timedelta(days=1))
    client = sign_in_as(Client(), email_user, "email")
    burst(cookie_of(client), [post("/terms/", {"agree": "yes"})] * 5)
    assert TermsAcceptance.objects.filter(user=email_user, terms=current).count() == 1


# --- get_user by hand-written SQL with the organization joined --------------------------


@pytest.mark.django_db
def test_a_deactivated_user_is_signed_out_at_the_next_request(client, email_user):
    sign_in_as(client, email_user, "email")
    assert client.get("/home/").status_code == 200
    email_user.is_active = False
    email_user.save()
    response = client.get("/home/")
    assert response.status_code == 302 and not response.url.startswith("/home")


@pytest.mark.django_db
def test_an_organization_changed_or_removed_is_seen_at_the_next_request(
    client, email_user, make_org
):
    sign_in_as(client, email_user, "email")
    assert client.get("/home/").status_code == 200
    other = make_org(name="Other Clinic Zeta")
    email_user.organization = other
    email_user.save()
    response = client.get("/home/")
    assert response.status_code == 200
    assert "Other Clinic Zeta" in response.content.decode()
    email_user.organization = None
    email_user.save()
    for page in ("/home/", "/cases/", "/messages/", "/my-account/"):
        assert client.get(page).status_code < 500, page


@pytest.mark.django_db
def test_a_session_pointing_at_another_users_id_does_not_sign_in_as_them(
    client, email_user, make_user
):
    victim = make_user()
    sign_in_as(client, email_user, "email")
    session = client.session
    session[SESSION_KEY] = str(victim.pk)  # the session hash is still the attacker's
    session.save()
    response = client.get("/home/")
    assert response.status_code == 302
    assert SESSION_KEY not in client.session or client.session[SESSION_KEY] != str(victim.pk)


@pytest.mark.django_db
def test_staff_without_an_organization_reach_their_pages_without_terms(client, make_staff):
    _terms("2.0", timezone.now() - timezone.timedelta(days=1))
    staff = make_staff()
    sign_in_as(client, staff)
    response = client.get("/home/")
    assert response.status_code < 500
    assert not (response.status_code == 302 and response.url == "/terms/")


# --- the sign-in's account lookup --------------------------------------------------------

LOOKALIKES = [
    "ＪＳＭＩＴＨ@example.com",  # full-width
    "jsmıth@example.com",  # Turkish dotless i
    "JSMİTH@example.com",  # Turkish dotted capital I
    "jsmith@example.com\x00",
    "jsmith@example.com\u200b",
    "jsmith@exampIe.com",
    "jsmith@example.com.",
    "jsmith%@example.com",
    "jsmith_@example.com",
]


@pytest.mark.django_db
@pytest.mark.parametrize("typed", LOOKALIKES)
def test_a_lookalike_address_reaches_no_account_and_no_500(client, make_user, typed):
    make_user(username="JSmith", email="jsmith@example.com")
    client.post("/login/start/", {"method": "email"})
    response = client.post("/email-login/credentials/", {"email": typed, "password": PASSWORD})
    assert response.status_code == 200, (typed, response.status_code)


@pytest.mark.django_db
def test_case_and_blanks_still_name_the_one_account(client, make_user):
    make_user(username="JSmith", email="jsmith@example.com")
    client.post("/login/start/", {"method": "email"})
    response = client.post(
        "/email-login/credentials/", {"email": "  JSMITH@Example.COM ", "password": PASSWORD}
    )
    assert response.status_code == 302 and response.url == CODE_URL


@pytest.mark.django_db
@pytest.mark.parametrize(
    "typed", ["ＪＳmith", "jsmıth", "JSMİTH", "jsmith\u200b", "jsm_th", "jsmit%", "%"]
)
def test_resolve_by_username_matches_only_the_exact_folded_name(make_user, typed):
    from caregate.accounts.backends import resolve

    make_user(username="JSmith", email="jsmith@example.com")
    assert resolve(username=typed) is None
    assert resolve(username=" jsmith ").username == "JSmith"
    assert resolve(email="%@example.com") is None


# --- concurrent Sends on every channel, and the advisory lock ---------------------------


@pytest.mark.django_db(transaction=True)
def test_a_call_started_many_times_at_once_places_one_call(settings, make_user):
    from caregate.verification.models import PhoneCall
    from tests.phone_steps import PHONE_STAGE, to_phone_stage

    user = make_user(mfa="phone")
    client = Client()
    to_phone_stage(client, user)
    burst(cookie_of(client), [post(PHONE_STAGE, {"action": "call"})] * 5)
    assert PhoneCall.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_sms_and_call_clicked_at_once_send_one_challenge(settings, make_user):
    """SMS and call share one purpose, so one lock and one cooldown: one paid message."""
    from caregate.delivery.models import OutboxMessage
    from caregate.verification.models import PhoneCall
    from tests.phone_steps import PHONE_STAGE, to_phone_stage

    user = make_user(mfa="phone")
    client = Client()
    to_phone_stage(client, user)
    actions = ["sms", "call", "sms", "call", "sms", "call"]
    burst(cookie_of(client), [post(PHONE_STAGE, {"action": a}) for a in actions])
    texts = OutboxMessage.objects.filter(channel="sms").count()
    assert texts + PhoneCall.objects.count() == 1, (texts, PhoneCall.objects.count())


@pytest.mark.django_db(transaction=True)
def test_another_flows_issue_lock_does_not_hold_up_a_send(settings, make_user, outbox_code):
    """The lock is per (flow instance, purpose): a flow stuck inside issue() (its lock
    held) delays its own Send only, never another user's. (SQLite: no lock; the Send of
    the other flow simply goes through.)"""
    victim, attacker = make_user(), make_user()
    stuck = Client()
    to_code_stage(stuck, attacker)
    flow_id = stuck.session[keys.FLOWS]["email-login"]
    holder = connections.create_connection("default") if on_postgresql() else None

    def send_in_thread(client: Client) -> tuple[threading.Thread, list]:
        done: list = []

        def run() -> None:
            try:
                done.append(client.post(CODE_URL, {"action": "send"}))
            finally:
                connections.close_all()

        thread = threading.Thread(target=run)
        thread.start()
        return thread, done

    try:
        if holder is not None:
            with holder.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                    [f"caregate.verification.issue|{flow_id}|email-login:email"],
                )
            own_thread, own = send_in_thread(stuck)
            own_thread.join(2)
            assert not own, "the held lock is the stuck flow's own (the test holds the right key)"
        client = Client()
        to_code_stage(client, victim)
        thread, done = send_in_thread(client)
        thread.join(15)
        assert done and done[0].status_code == 200, "another flow's lock held up this Send"
        assert outbox_code(victim.email)
    finally:
        if holder is not None:
            holder.close()
            own_thread.join(15)
            assert own and own[0].status_code == 200


# --- Forgot password: the "same as the current password" check -------------------------


@pytest.mark.django_db
def test_the_same_password_check_answers_nothing_before_the_factors_are_proven(client, email_user):
    """Before the email code is verified, the current password and any other one get the
    same answer: back to the code step, nothing about the password."""
    from tests.test_forgot_password import begin, new_password, send

    begin(client)
    send(client, email_user.email)
    right = new_password(client, PASSWORD)
    wrong = new_password(client, "Another-Horse-Battery-7")
    assert (right.status_code, right.get("Location")) == (wrong.status_code, wrong.get("Location"))
    assert right.status_code == 302
    email_user.refresh_from_db()
    assert email_user.check_password(PASSWORD)


@pytest.mark.django_db
def test_the_same_password_check_does_not_rewrite_the_stored_hash(client, email_user, settings):
    """check_password without the setter: the old hash is never upgraded mid-reset (a
    changed hash would be a side channel, and a write of the old password)."""
    from tests.test_forgot_password import NEW_PASSWORD, new_password, verify_email

    before = email_user.password
    verify_email(client, email_user)
    response = new_password(client, PASSWORD)
    assert response.status_code == 200
    assert "must be different" in response.content.decode()
    email_user.refresh_from_db()
    assert email_user.password == before
    assert client.get(NEW_PASSWORD).status_code == 200


# --- server-side parameters and prepared statements (PostgreSQL) ------------------------


@pytest.mark.django_db
def test_every_portal_page_many_times_over_with_odd_input_answers_without_a_500(
    client, email_user
):
    """Past the prepare threshold (5th use) the statements run prepared: the same pages
    and forms, with odd values, again and again."""
    _terms("2.0", timezone.now() - timezone.timedelta(days=1))
    sign_in_as(client, email_user, "email")
    client.post("/terms/", {"agree": "yes"})
    odd = ["", "0", "-1", "9" * 30, "' OR 1=1 --", "%", "é", "\\x00", "a" * 500]
    for value in odd:
        for page in ("/home/", "/cases/", "/messages/", "/help/", "/my-account/"):
            response = client.get(page, {"q": value, "page": value, "status": value})
            assert response.status_code < 500, (page, value)
        response = client.post("/terms/", {"agree": value})
        assert response.status_code < 500
    anonymous = Client()
    for value in odd * 2:
        anonymous.post("/login/start/", {"method": "email"})
        response = anonymous.post("/email-login/credentials/", {"email": value, "password": value})
        assert response.status_code < 500, value


# --- the delivery sweep of orphaned tasks -----------------------------------------------


@pytest.mark.django_db
def test_the_orphan_sweep_sends_once_to_the_rows_own_address_whoever_sweeps(
    database_backend,  # noqa: F811 (the fixture imported above)
):
    """Two sweepers and the late worker: one message, to the address in the row (the
    sweep takes only the delivery id from the task, never an address)."""
    from caregate.delivery import tasks
    from caregate.delivery.models import OutboxMessage
    from tests.test_delivery_stale import age_task, queue_email, run_worker, taken_and_dropped

    delivery = queue_email()
    lost = taken_and_dropped()
    lost.args_kwargs = {"args": [delivery.pk], "kwargs": {"to": "attacker@evil.example"}}
    lost.save()
    age_task(lost, 31)
    assert tasks.recover_orphaned() + tasks.recover_orphaned() == 1
    assert tasks.attempt(delivery.pk) == "sent"  # the slow worker after all
    run_worker()
    assert OutboxMessage.objects.filter(to="someone@clinic.example").count() == 1
    assert OutboxMessage.objects.count() == 1
