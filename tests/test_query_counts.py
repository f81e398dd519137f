"""Each request of the sign-in does only the work its screen needs (issue #10).

Every step of the email login and of the phone login (SMS), and the home page, Manage
Users and the support console's search, is run through the Django test client while the
SQL statements and the session-store saves are counted. The counts are deterministic, so
they are asserted exactly: a change that adds a query or a session write to a step fails
here and must say why in this table.

The counts are those of the test suite's stack: PostgreSQL, Redis, and the session engine
the settings choose with Redis (caregate.security.session_store).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import import_module
from unittest import mock

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from redis.connection import AbstractConnection

from caregate.accounts.models import TermsAcceptance, TermsVersion, User
from caregate.audit.log import record
from caregate.delivery.models import OutboxMessage
from caregate.flows import engine
from caregate.portal.models import Case
from tests.conftest import PASSWORD, sign_in_as
from tests.phone_steps import PHONE, PHONE_CREDENTIALS, PHONE_STAGE, SIX_DIGITS, sms_code

pytestmark = pytest.mark.django_db

START = "/login/start/"
EMAIL_CREDENTIALS = "/email-login/credentials/"
EMAIL_CODE = "/email-login/email-code/"


@dataclass(frozen=True)
class Cost:
    queries: int
    session_saves: int
    redis_round_trips: int


@dataclass
class Meter:
    """The cost of each request run through ``step``, by step name."""

    client: Client
    costs: dict[str, Cost] = field(default_factory=dict)
    statements: dict[str, list[str]] = field(default_factory=dict)

    def step(self, name: str, call: Callable[[Client], object], expect_status: int) -> object:
        with counted() as (queries, saves, trips):
            response = call(self.client)
        assert response.status_code == expect_status, (name, response.status_code)
        self.costs[name] = Cost(len(queries.captured_queries), len(saves), len(trips))
        self.statements[name] = [q["sql"] for q in queries.captured_queries]
        return response

    def check(self, expected: dict[str, Cost]) -> None:
        if self.costs != expected:
            lines = [
                f"  {name}: {cost} expected {expected.get(name)}"
                + ("" if cost == expected.get(name) else "  <-- differs")
                for name, cost in self.costs.items()
            ]
            detail = "\n".join(
                f"--- {name}\n" + "\n".join(self.statements[name])
                for name, cost in self.costs.items()
                if cost != expected.get(name)
            )
            pytest.fail("per-request costs changed:\n" + "\n".join(lines) + "\n" + detail)


@contextmanager
def counted() -> Iterator[tuple[CaptureQueriesContext, list[object], list[object]]]:
    """Capture the SQL of a request, every write of the session store (a save(), also the
    one inside create() and cycle_key()) and every round trip to Redis (one packed send:
    a pipeline of several commands is one)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    saves: list[object] = []
    trips: list[object] = []
    save = store.save
    send = AbstractConnection.send_packed_command

    depth = [0]

    def counting_save(self: object, *args: object, **kwargs: object) -> None:
        # Only the outermost call is a write of its own: save() of a keyless session
        # calls create(), which calls save(must_create=True) for the same one write.
        if not depth[0]:
            saves.append(self)
        depth[0] += 1
        try:
            save(self, *args, **kwargs)
        finally:
            depth[0] -= 1

    def counting_send(self: object, command: object, *args: object, **kwargs: object) -> None:
        trips.append(command)
        send(self, command, *args, **kwargs)

    with (
        mock.patch.object(store, "save", counting_save),
        mock.patch.object(AbstractConnection, "send_packed_command", counting_send),
        CaptureQueriesContext(connection) as queries,
    ):
        yield queries, saves, trips


@pytest.fixture(autouse=True)
def _steady_state() -> None:
    """Measure what production does: the suite's stack, and an audit log that already has
    its head row (the very first event of an installation creates it)."""
    assert connection.vendor == "postgresql", "the tests run on PostgreSQL"
    assert settings.REDIS_URL, "the tests run with REDIS_URL set"
    record("test.start", "success")


@pytest.fixture(autouse=True)
def _no_cleanup_due() -> Iterator[None]:
    """A flow start drops expired rows at most once a minute per process (the engine's
    _Cleanup): the counts are those of the other starts of that minute."""
    with mock.patch.object(engine._Cleanup, "next_at", float("inf")):
        yield


def expected(table: dict[str, tuple[int, int]]) -> dict[str, Cost]:
    return {name: Cost(*numbers) for name, numbers in table.items()}


def newest_email_code(to: str) -> str:
    message = OutboxMessage.objects.filter(channel="email", to=to).order_by("-id").first()
    assert message is not None
    return SIX_DIGITS.search(message.body).group(1)


# (SQL queries, session writes, Redis round trips) per request. The SQL counts include
# the SAVEPOINT/RELEASE pairs of each atomic block, since a test runs inside a transaction
# (in production they are BEGIN/COMMIT, which Django does not log). Every Redis count
# includes the session's read (cached_db); a rate-limited step adds one pipeline.
EMAIL_LOGIN = {
    "login page GET": (0, 0, 0),
    # the flow row, the new session's row (+ its copy in Redis); expired flow rows are
    # dropped at most once a minute (was 5: their DELETE on every start)
    "LOGIN WITH EMAIL POST": (4, 1, 1),
    "credentials GET": (1, 0, 1),  # the flow row: the page is drawn from it, nothing written
    # flow row, the account (one indexed query), audit append (3: no savepoint of its
    # own, it joins the caller's transaction where there is one), flow row written; the
    # account's other factors (authenticator app, recovery codes, passkeys: 3), noted for
    # the code page's "Try another way" link (else each render of it looked them up)
    "credentials POST": (9, 0, 2),
    "email-code GET": (1, 0, 1),
    # flow row, code issued (void older + insert), the delivery queued and sent, audit,
    # flow row written; the countdown is the code just issued (not read back); the
    # delivery marked sent is not read back by the worker either (was 20); the audit's
    # username comes from the flow (was 19: the user was read for it); the delivery row
    # is inserted already claimed and handed to the attempt (was 16: claim + two reads);
    # +1: the advisory lock that lets one issue of a code run at a time (attack review 12);
    # Redis 2 -> 3: the address's budget is counted after the sender's, only for a send
    # they allowed (attack review 16: refused attempts used up the victim's budget)
    "send": (14, 0, 3),
    # flow row, then one transaction (2): the code checked (locked) and used, and its
    # audit event (3); the flow row written (was 12: a user read and two transactions)
    "verify": (9, 0, 2),
    # flow row finished, user re-read, old session deleted, last_login, session registry
    # (one upsert), audit, and the new session's one insert (its key drawn at login);
    # all but the flow row's end and the insert are one transaction; Redis: the old
    # session's copy is dropped before and after its row (attack review 12)
    "continue": (14, 1, 4),
    # user with organization, terms, the four counters (one statement: was 2), saved cases
    "home GET": (4, 0, 1),
}
PHONE_LOGIN = {
    "login page GET": (0, 0, 0),
    "LOGIN WITH PHONE POST": (4, 1, 1),
    "credentials GET": (1, 0, 1),
    "credentials POST": (9, 0, 2),
    "phone GET": (1, 0, 1),
    # was 21: the sent delivery is not read back; 20: user read; 17: claimed at insert;
    # 14: the page's delivery state is the row just queued (not read back); 13 + the
    # advisory lock of one issue at a time; Redis 2 -> 3 as for "send" (the number's
    # budget after the sender's)
    "send SMS": (14, 0, 3),
    "verify SMS code": (22, 1, 5),  # the old session's copy dropped twice, as above
    "home GET": (4, 0, 1),
}
PORTAL = {
    "home GET": (4, 0, 1),  # the terms in force and their acceptance: one query
    "home GET again": (4, 0, 1),
    "Manage Users GET": (4, 0, 1),  # user, terms, count, page (organization joined)
    "Manage Users search": (4, 0, 1),
    "support console search": (6, 0, 1),  # user, count, page, audit append (3)
}


def test_email_login_costs(email_user):
    meter = Meter(Client())
    meter.step("login page GET", lambda c: c.get("/"), 200)
    meter.step("LOGIN WITH EMAIL POST", lambda c: c.post(START, {"method": "email"}), 302)
    meter.step("credentials GET", lambda c: c.get(EMAIL_CREDENTIALS), 200)
    meter.step(
        "credentials POST",
        lambda c: c.post(EMAIL_CREDENTIALS, {"email": email_user.email, "password": PASSWORD}),
        302,
    )
    meter.step("email-code GET", lambda c: c.get(EMAIL_CODE), 200)
    meter.step("send", lambda c: c.post(EMAIL_CODE, {"action": "send"}), 200)
    code = newest_email_code(email_user.email)
    meter.step("verify", lambda c: c.post(EMAIL_CODE, {"action": "verify", "code": code}), 200)
    meter.step("continue", lambda c: c.post(EMAIL_CODE, {"action": "continue"}), 302)
    meter.step("home GET", lambda c: c.get("/home/"), 200)
    meter.check(expected(EMAIL_LOGIN))


def test_phone_login_costs(make_user):
    user = make_user(mfa="phone", phone=PHONE)
    meter = Meter(Client())
    meter.step("login page GET", lambda c: c.get("/"), 200)
    meter.step("LOGIN WITH PHONE POST", lambda c: c.post(START, {"method": "phone"}), 302)
    meter.step("credentials GET", lambda c: c.get(PHONE_CREDENTIALS), 200)
    meter.step(
        "credentials POST",
        lambda c: c.post(PHONE_CREDENTIALS, {"email": user.email, "password": PASSWORD}),
        302,
    )
    meter.step("phone GET", lambda c: c.get(PHONE_STAGE), 200)
    meter.step("send SMS", lambda c: c.post(PHONE_STAGE, {"action": "sms"}), 200)
    code = sms_code(PHONE)
    verify = {"action": "verify-sms", "code": code}
    meter.step("verify SMS code", lambda c: c.post(PHONE_STAGE, verify), 302)
    meter.step("home GET", lambda c: c.get("/home/"), 200)
    meter.check(expected(PHONE_LOGIN))


def test_portal_page_costs(make_user, make_staff, org):
    admin = make_user(is_org_admin=True)
    for n in range(30):  # more than one page of users and some cases: counts stay flat
        make_user(organization=org)
        Case.objects.create(
            organization=org, case_number=f"C-{n:06d}", status=Case.Status.NOT_SUBMITTED
        )
    # Terms of Use in force, accepted: what every portal page checks.
    terms = TermsVersion.objects.create(version="1", text="Terms", published_at=timezone.now())
    TermsAcceptance.objects.create(user=admin, terms=terms, accepted_at=timezone.now())
    client = sign_in_as(Client(), admin, method="email")
    meter = Meter(client)
    meter.step("home GET", lambda c: c.get("/home/"), 200)
    meter.step("home GET again", lambda c: c.get("/home/"), 200)
    meter.step("Manage Users GET", lambda c: c.get("/setup/users/"), 200)
    meter.step("Manage Users search", lambda c: c.get("/setup/users/", {"q": "tester"}), 200)
    staff = sign_in_as(Client(), make_staff(roles=("staff", "support")))
    meter.client = staff
    meter.step("support console search", lambda c: c.get("/support/", {"q": "tester"}), 200)
    meter.check(expected(PORTAL))


def test_the_meter_counts_each_statement_and_each_session_save(email_user):
    """The counting itself: a known statement and a known save are seen, once each."""
    meter = Meter(Client())

    class Answer:
        status_code = 200

    def one_query(c: Client) -> Answer:
        User.objects.filter(pk=email_user.pk).exists()
        return Answer()

    def one_save(c: Client) -> Answer:
        import_module(settings.SESSION_ENGINE).SessionStore().create()
        return Answer()

    meter.step("one query", one_query, 200)
    meter.step("one save", one_save, 200)
    assert meter.costs["one query"] == Cost(1, 0, 0)
    assert meter.costs["one save"].session_saves == 1
