"""Every lookup of a user by email or username is served by the case-insensitive unique
indexes (user_email_unique_ci on lower(email), user_username_unique_ci on lower(username)):
``email=`` or ``email__iexact=`` would scan the whole table at every sign-in (20 ms at
100,000 users on PostgreSQL, against 0.06 ms through the index).

Each lookup the code does is run, its SQL captured, and PostgreSQL's plan for that very SQL
read with sequential scans disabled (on a small test table the planner would rightly scan
anyway): the plan must search the expression index by name.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from caregate.accounts import backends
from caregate.accounts.models import User, username_taken
from caregate.flows.change_email import taken
from caregate.flows.engine import FlowState
from caregate.flows.mfa_registration import email_available
from caregate.flows.new_provider_registration import email_in_use
from caregate.flows.stages.account_email import find_account

pytestmark = pytest.mark.django_db

# The unique index, or the support console's prefix index on the same expression
# (migration accounts 0011: text_pattern_ops serves = as well); either is an index search.
EMAIL_INDEX = "user_email_unique_ci|user_email_prefix"
USERNAME_INDEX = "user_username_unique_ci|user_username_prefix"


def plans_of(call: Callable[[], object]) -> list[str]:
    """The plan of every statement on the user table that ``call`` runs."""
    with CaptureQueriesContext(connection) as queries:
        call()
    statements = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and 'FROM "accounts_user"' in q["sql"]
    ]
    assert statements, "the lookup ran no query on the user table"
    plans = []
    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
        try:
            for sql in statements:
                cursor.execute("EXPLAIN " + sql)
                plans.append("\n".join(row[0] for row in cursor.fetchall()))
        finally:
            cursor.execute("RESET enable_seqscan")
    return plans


@pytest.fixture
def someone(make_user) -> User:
    return make_user(username="Jane.Doe", email="jane.doe@clinic.example")


def flow_state(user_id: int | None) -> FlowState:
    return FlowState.new("mfa-registration", 900, {"user_id": user_id})


LOOKUPS = {
    "sign-in by email": (lambda: backends.resolve(email=" Jane.Doe@Clinic.Example"), EMAIL_INDEX),
    "sign-in by username": (lambda: backends.resolve(username="JANE.DOE "), USERNAME_INDEX),
    "Forgot password's account": (lambda: find_account("JANE.DOE@clinic.example"), EMAIL_INDEX),
    "MFA registration's work email": (
        lambda: email_available("Jane.Doe@clinic.example", flow_state(None)),
        EMAIL_INDEX,
    ),
    "registration's address in use": (
        lambda: email_in_use("jane.doe@CLINIC.example"),
        EMAIL_INDEX,
    ),
    "username availability": (lambda: username_taken("jane.DOE"), USERNAME_INDEX),
    "a new email of My Account": (
        lambda: taken("jane.doe@clinic.example", User(pk=0)),
        EMAIL_INDEX,
    ),
    "create_user and import_users": (
        lambda: (
            User.objects.with_email("x@y.example").exists(),
            User.objects.with_username("X").exists(),
        ),
        f"{EMAIL_INDEX}|{USERNAME_INDEX}",  # one plan each
    ),
}


@pytest.mark.parametrize("name", list(LOOKUPS))
def test_the_lookup_uses_the_case_insensitive_index(name, someone):
    call, index = LOOKUPS[name]
    assert connection.vendor == "postgresql", "the tests run on PostgreSQL"
    for plan in plans_of(call):
        assert any(i in plan for i in index.split("|")), f"{name}:\n{plan}"
        assert "Seq Scan on accounts_user" not in plan, f"{name}:\n{plan}"


def test_the_lookups_still_find_the_account_in_any_case(someone):
    assert backends.resolve(email=" JANE.DOE@Clinic.example ") == someone
    assert backends.resolve(username=" jane.doe") == someone
    assert find_account("Jane.Doe@Clinic.Example") == someone
    assert email_in_use("JANE.DOE@CLINIC.EXAMPLE")
    assert username_taken("JANE.doe")
    assert taken("jane.doe@clinic.example", User(pk=0))
    assert not taken("jane.doe@clinic.example", someone)
    assert email_available("jane.doe@clinic.example", flow_state(None))
    assert email_available("jane.doe@clinic.example", flow_state(someone.pk)) == ""


def test_the_check_itself_sees_a_scan(someone):
    """A lookup the index cannot serve does not name it in the plan this test reads (with
    sequential scans off, the planner walks another index in full instead)."""
    for lookup in ({"email__iexact": "jane.doe@clinic.example"}, {"email": "jane.doe@x.example"}):
        for plan in plans_of(lambda lookup=lookup: User.objects.filter(**lookup).first()):
            assert not any(name in plan for name in EMAIL_INDEX.split("|")), plan


@pytest.mark.parametrize("query", ["duck", "dduck2021", "daisey@clinic", "Daisey Duck", "Duck, D"])
def test_the_support_consoles_search_uses_the_prefix_indexes(make_user, query):
    """Across every organization (migration accounts 0011): each OR-ed prefix match is an
    index scan, none a scan of the whole table."""
    from caregate.staff.support_console import find_users

    make_user(username="dduck2021", email="daisey@clinic.example")
    plans = plans_of(lambda: list(find_users(query).order_by("id")[:25]))
    new_indexes = [f"user_{c}_prefix" for c in ("last_name", "first_name", "username", "email")]
    for plan in plans:
        assert any(name in plan for name in new_indexes), plan
        assert "Seq Scan on accounts_user" not in plan, plan
