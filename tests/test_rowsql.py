"""Hand-written SQL for the session and flow rows (caregate.rowsql) answers what the ORM
answers, on PostgreSQL (this process) and on the SQLite default (a child process)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.contrib.sessions.models import Session
from django.db import IntegrityError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from caregate import rowsql
from caregate.accounts.models import User
from caregate.flows.models import FlowInstance
from tests.test_settings import clean_env

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parent.parent
STATE = {"reached": 2, "data": {"email": "a@example.com", "n": [1, 2.5, None, True]}, "é": "ü"}


def flow_row(**overrides) -> FlowInstance:
    fields = {
        "id": "instance-1",
        "flow": "email_login",
        "state": STATE,
        "expires_at": timezone.now() + timedelta(minutes=5),
    }
    fields.update(overrides)
    return FlowInstance.objects.create(**fields)


def test_select_one_answers_the_orms_values():
    row = flow_row()
    got = rowsql.select_one(
        FlowInstance, ("state", "revision", "expires_at"), {"id": row.id, "flow": row.flow}
    )
    fresh = FlowInstance.objects.get(pk=row.pk)
    assert got == {
        "state": fresh.state,
        "revision": fresh.revision,
        "expires_at": fresh.expires_at,
    }
    assert got["state"] == STATE and got["expires_at"].tzinfo is not None


def test_select_one_is_none_for_another_flow_or_id():
    flow_row()
    assert (
        rowsql.select_one(FlowInstance, ("state",), {"id": "instance-1", "flow": "other"}) is None
    )
    assert (
        rowsql.select_one(FlowInstance, ("state",), {"id": "instance-2", "flow": "email_login"})
        is None
    )


def test_a_hostile_value_is_a_parameter_not_sql():
    flow_row()
    for value in ("' OR '1'='1", "instance-1' --", 'x"; DROP TABLE flows_flowinstance; --'):
        assert rowsql.select_one(FlowInstance, ("state",), {"id": value}) is None
    assert FlowInstance.objects.count() == 1


def test_the_operator_condition_compares_datetimes():
    now = timezone.now()
    flow_row(expires_at=now - timedelta(seconds=1))
    assert (
        rowsql.select_one(FlowInstance, ("id",), {"id": "instance-1", "expires_at >": now}) is None
    )
    assert rowsql.select_one(FlowInstance, ("id",), {"id": "instance-1", "expires_at <": now}) == {
        "id": "instance-1"
    }


def test_an_unknown_operator_or_field_is_refused():
    with pytest.raises(ValueError):
        rowsql.select_one(FlowInstance, ("id",), {"id OR 1=1 --": "x"})
    with pytest.raises(Exception, match="no field"):
        rowsql.select_one(FlowInstance, ("id",), {"nope": "x"})


def test_update_is_a_compare_and_set_on_the_revision():
    row = flow_row()
    new = {**STATE, "reached": 3}
    assert (
        rowsql.update(
            FlowInstance, {"state": new}, {"id": row.id, "revision": 0}, increment="revision"
        )
        == 1
    )
    # The same write again, from a request that read revision 0: nothing changes.
    stale = {**STATE, "reached": 1}
    assert (
        rowsql.update(
            FlowInstance, {"state": stale}, {"id": row.id, "revision": 0}, increment="revision"
        )
        == 0
    )
    fresh = FlowInstance.objects.get(pk=row.pk)
    assert fresh.revision == 1 and fresh.state == new


def test_delete_counts_rows_and_honours_its_condition():
    row = flow_row()
    assert rowsql.delete(FlowInstance, {"id": row.id, "revision": 5}) == 0
    assert rowsql.delete(FlowInstance, {"id": row.id, "revision": 0}) == 1
    assert not FlowInstance.objects.exists()


def test_each_call_is_one_logged_statement():
    row = flow_row()
    with CaptureQueriesContext(connection) as queries:
        rowsql.select_one(FlowInstance, ("state",), {"id": row.id})
        rowsql.update(FlowInstance, {"state": {}}, {"id": row.id})
        rowsql.delete(FlowInstance, {"id": row.id})
    assert [q["sql"].split()[0] for q in queries.captured_queries] == [
        "SELECT",
        "UPDATE",
        "DELETE",
    ]


def test_session_rows_read_like_the_orms():
    expire = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    Session.objects.create(session_key="k" * 32, session_data="data", expire_date=expire)
    got = rowsql.select_one(
        Session,
        ("session_data", "expire_date"),
        {"session_key": "k" * 32, "expire_date >": timezone.now()},
    )
    assert got == {"session_data": "data", "expire_date": expire}


SQLITE_ROUND_TRIP = """
import json, django
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from datetime import UTC, datetime, timedelta
from django.contrib.sessions.models import Session
from caregate import rowsql
from caregate.accounts.models import User
from caregate.flows.models import FlowInstance
state = json.loads({state!r})
expires = datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
FlowInstance.objects.create(id="i", flow="f", state=state, expires_at=expires)
got = rowsql.select_one(FlowInstance, ("state", "revision", "expires_at"), {{"id": "i"}})
assert got == {{"state": state, "revision": 0, "expires_at": expires}}, got
at_0 = {{"id": "i", "revision": 0}}
assert rowsql.update(FlowInstance, {{"state": {{"x": 1}}}}, at_0, increment="revision") == 1
assert rowsql.update(FlowInstance, {{"state": {{"x": 2}}}}, at_0, increment="revision") == 0
row = FlowInstance.objects.get(pk="i")
assert (row.state, row.revision) == ({{"x": 1}}, 1), (row.state, row.revision)
Session.objects.create(session_key="s" * 32, session_data="d", expire_date=expires)
now = datetime(2030, 1, 1, tzinfo=UTC)
def unexpired(at):
    where = {{"session_key": "s" * 32, "expire_date >": at}}
    return rowsql.select_one(Session, ("expire_date",), where)
assert unexpired(now) == {{"expire_date": expires}}, unexpired(now)
assert unexpired(datetime(2032, 1, 1, tzinfo=UTC)) is None
instance = rowsql.get(FlowInstance, {{"id": "i"}})
assert instance == FlowInstance.objects.get(pk="i") and instance.expires_at == expires
assert rowsql.delete(FlowInstance, {{"id": "i"}}) == 1
from caregate.accounts.models import Organization, User
org = Organization(name="O", npi="1234567893")
org.set_registration_code("CODE")
org.save()
user = User.objects.create(username="u", email="u@example.com", organization=org)
got = rowsql.get(User, {{"id": user.pk}}, related="organization")
fresh = User.objects.select_related("organization").get(pk=user.pk)
assert got == fresh and got.date_joined == fresh.date_joined, (got.date_joined, fresh.date_joined)
assert got.organization == org and got.organization.name == "O"
assert rowsql.get(User, {{"email lower": "u@example.com"}}) == fresh
print("ok")
"""


def test_the_sqlite_default_reads_and_writes_the_same(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SQLITE_ROUND_TRIP.format(state=json.dumps(STATE))],
        cwd=ROOT,
        env=clean_env(DJANGO_SETTINGS_MODULE="caregate.settings", CAREGATE_VAR_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


def test_insert_writes_the_row_the_orm_reads_and_refuses_a_duplicate_key():
    expires = timezone.now() + timedelta(minutes=5)
    values = {"id": "new-1", "flow": "f", "revision": 0, "state": STATE, "expires_at": expires}
    rowsql.insert(FlowInstance, values)
    row = FlowInstance.objects.get(pk="new-1")
    assert (row.state, row.revision, row.expires_at) == (STATE, 0, expires)
    with pytest.raises(IntegrityError), transaction.atomic():
        rowsql.insert(FlowInstance, {**values, "state": {"taken": "over"}})
    assert FlowInstance.objects.get(pk="new-1").state == STATE


def test_exists_and_is_null(make_user):
    from caregate.factors.models import RecoveryCode

    user = make_user()
    other = make_user()
    unused = {"user": user.pk, "used_at is null": None}
    assert rowsql.exists(RecoveryCode, unused) is False
    RecoveryCode.objects.create(user=user, code_hash="h1", used_at=timezone.now())
    RecoveryCode.objects.create(user=other, code_hash="h2")
    assert rowsql.exists(RecoveryCode, {"user": user.pk}) is True
    assert rowsql.exists(RecoveryCode, unused) is False, "a used code is not a live one"
    RecoveryCode.objects.create(user=user, code_hash="h3")
    assert rowsql.exists(RecoveryCode, unused) is True
    assert rowsql.exists(RecoveryCode, {"user": None}) is False


def test_get_builds_the_instance_the_orm_would(make_user):
    user = make_user(username="Row.Reader", email="row.reader@clinic.example")
    got = rowsql.get(User, {"email lower": "row.reader@clinic.example"})
    orm = User.objects.get(pk=user.pk)
    assert got == orm and not got._state.adding and got._state.db == "default"
    for field in User._meta.concrete_fields:
        assert getattr(got, field.attname) == getattr(orm, field.attname), field.name
    assert got.organization == orm.organization  # the foreign key is loaded lazily, as usual
    assert rowsql.get(User, {"username lower": "row.reader"}) == orm
    assert rowsql.get(User, {"username lower": "Row.Reader"}) is None, (
        "the value is lowered by the caller"
    )
    assert rowsql.get(User, {"id": user.pk, "is_active": False}) is None


def test_get_with_a_related_row_caches_it_as_select_related_does(make_user, make_org):
    from django.test.utils import CaptureQueriesContext as Capture

    user = make_user(organization=make_org(name="Joined Clinic"))
    with Capture(connection) as queries:
        got = rowsql.get(User, {"id": user.pk}, related="organization")
        name = got.organization.name  # no second query: it came with the user
    assert len(queries) == 1 and name == "Joined Clinic"
    assert got.organization == user.organization and not got.organization._state.adding
    orm = User.objects.select_related("organization").get(pk=user.pk)
    for field in User.organization.field.related_model._meta.concrete_fields:
        assert getattr(got.organization, field.attname) == getattr(orm.organization, field.attname)
    loner = make_user()
    User.objects.filter(pk=loner.pk).update(organization=None)
    alone = rowsql.get(User, {"id": loner.pk}, related="organization")
    with Capture(connection) as queries:
        assert alone.organization is None
    assert len(queries) == 0
    assert rowsql.get(User, {"id": 0}, related="organization") is None
