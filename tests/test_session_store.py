"""The lean session stores (caregate/security/session_store.py): no exists() before a new
key, one write of the rotated session, and still never a session taken over by a key
that is already in use."""

from __future__ import annotations

from importlib import import_module
from unittest import mock

import pytest
from django.contrib.sessions.backends.base import CreateError, UpdateError
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from caregate.security import session_store, session_store_db

pytestmark = pytest.mark.django_db

STORES = [session_store.SessionStore, session_store_db.SessionStore]


def test_the_settings_use_the_lean_store():
    from django.conf import settings

    engine = import_module(settings.SESSION_ENGINE)
    assert issubclass(engine.SessionStore, session_store.LeanDatabaseStore)


@pytest.mark.parametrize("store_class", STORES)
def test_cycle_key_rotates_and_writes_the_new_row_once(store_class):
    store = store_class()
    store["who"] = "before sign-in"
    store.save()
    old = store.session_key
    store.cycle_key()
    new = store.session_key
    assert new and new != old
    assert not Session.objects.filter(session_key=old).exists(), "the old key ends at once"
    assert not store_class().exists(old)
    store["who"] = "signed in"
    with CaptureQueriesContext(connection) as statements:
        store.save()
    writes = [q["sql"] for q in statements.captured_queries if "django_session" in q["sql"]]
    assert len(writes) == 1 and writes[0].startswith("INSERT"), writes
    assert store_class(session_key=new)["who"] == "signed in"
    store["who"] = "later"
    with CaptureQueriesContext(connection) as statements:
        store.save()  # later saves of the same session update its row
    writes = [q["sql"] for q in statements.captured_queries if "django_session" in q["sql"]]
    assert len(writes) == 1 and writes[0].startswith("UPDATE"), writes
    assert Session.objects.filter(session_key=new).count() == 1
    cache.clear()
    assert store_class(session_key=new)["who"] == "later"


@pytest.mark.parametrize("store_class", STORES)
def test_saving_a_session_whose_row_is_gone_is_refused(store_class):
    """Signed out elsewhere (the row deleted) while this request ran: its save must not
    bring the row back (Django's UpdateError, which the middleware turns into a 400)."""
    store = store_class()
    store["who"] = "signed in"
    store.save()
    Session.objects.filter(session_key=store.session_key).delete()
    store["who"] = "still here?"
    with pytest.raises(UpdateError):
        store.save()
    assert not Session.objects.filter(session_key=store.session_key).exists()


@pytest.mark.parametrize("store_class", STORES)
def test_a_rotated_key_that_collides_never_takes_over_the_other_session(store_class):
    victim = store_class()
    victim["owner"] = "victim"
    victim.save()
    other = store_class()
    other["owner"] = "other"
    other.save()
    with mock.patch.object(store_class, "_get_new_session_key", return_value=victim.session_key):
        other.cycle_key()
    other["owner"] = "attacker"
    with pytest.raises(CreateError):
        other.save()
    cache.clear()  # read the row, not a cached copy
    assert store_class(session_key=victim.session_key)["owner"] == "victim"


@pytest.mark.parametrize("store_class", STORES)
def test_a_new_session_whose_key_collides_draws_another(store_class):
    taken = store_class()
    taken["owner"] = "first"
    taken.save()
    keys = iter([taken.session_key, "k" * 32])
    store = store_class()
    store["owner"] = "second"
    with mock.patch.object(store_class, "_get_new_session_key", side_effect=lambda: next(keys)):
        store.save()
    assert store.session_key == "k" * 32
    cache.clear()
    assert store_class(session_key=taken.session_key)["owner"] == "first"
    assert store_class(session_key="k" * 32)["owner"] == "second"


@pytest.mark.parametrize("store_class", STORES)
def test_no_lookup_before_a_new_key(store_class):
    with mock.patch.object(store_class, "exists", side_effect=AssertionError("looked up")):
        store = store_class()
        store["x"] = 1
        store.save()
        store.cycle_key()
        store.save()
    assert store_class().exists(store.session_key)


@pytest.mark.django_db
def test_an_unreachable_redis_deletes_nothing_so_a_signed_out_session_cannot_come_back(
    settings,
) -> None:
    """Found by the fault tests: Django's cached_db deletes the row, then the Redis copy;
    with Redis unreachable (but keeping its data) the copy would revive the session."""
    from unittest import mock

    from caregate.security import session_store

    store = session_store.SessionStore()
    store["k"] = "v"
    store.save()
    key = store.session_key
    with (
        mock.patch.object(store._cache, "delete", side_effect=ConnectionError("down")),
        pytest.raises(ConnectionError),
    ):
        store.delete()
    assert Session.objects.filter(session_key=key).exists()  # nothing half-deleted
    store.delete()
    assert not session_store.SessionStore(key).exists(key)
    assert session_store.SessionStore(key).load() == {}


def test_a_save_between_a_sign_outs_two_steps_leaves_no_copy_behind():
    """The other order of the race (tests/security/test_attack_session12_rowsql.py has the
    first): the sign-out drops the Redis copy, a concurrent request of the same session
    writes its copy and its row, and only then is the row deleted. The sign-out's second
    drop of the copy ends it; without it the copy would open the signed-out key."""
    from caregate import rowsql

    first = session_store.SessionStore()
    first["who"] = "signed in"
    first.save()
    key = first.session_key
    slower = session_store.SessionStore(key)
    slower["seen"] = 1  # loaded and changed: its save is an update of an existing row
    real_delete = rowsql.delete

    def delete_after_the_slower_save(model, where):
        if model is Session and where.get("session_key") == key:
            slower.save()  # its copy, then its row (still there: the update succeeds)
        return real_delete(model, where)

    with mock.patch.object(rowsql, "delete", side_effect=delete_after_the_slower_save):
        session_store.SessionStore(key).delete()
    assert not Session.objects.filter(session_key=key).exists()
    assert cache.get(session_store.SessionStore.cache_key_prefix + key) is None
    assert session_store.SessionStore(key).load() == {}
