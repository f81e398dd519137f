"""Django's database session stores, with the work a sign-in does not need taken out.

Django's stores ask the database (and, ``cached_db``, Redis) whether each new random key
exists before using it, and rotate the key at sign-in (``cycle_key``) by inserting the
new row at once, reading the old row back to delete it, and then updating the new row
with the signed-in data at the end of the request. Here:

- A new key is 32 random characters (log2(36^32) ≈ 165 bits) and is never checked
  beforehand; the row's primary key still refuses a duplicate, and the insert of a new
  key is always a ``must_create`` insert, so a collision raises instead of overwriting
  another session (Django's create() then draws another key).
- ``cycle_key`` draws the new key at once (the session registry records it) and deletes
  the old row, but leaves the single write of the new row to the end of the request: the
  key still rotates at every sign-in, the old key stops working there and then.
- A row is deleted with one ``DELETE`` rather than read back first.
- Outside a transaction a single insert or update is atomic by itself, so it is not
  wrapped in one (Django's BEGIN/COMMIT around it are two more round trips).
- The row is read, and deleted, by SQL written once (caregate.rowsql) instead of a query
  built by the ORM each time: the same statement, at a seventh of the CPU.

Two engines: ``caregate.security.session_store`` (sessions in the database, read through
Redis: settings with ``REDIS_URL``) and ``caregate.security.session_store_db`` (database
only: a process-local cache would keep a signed-out session alive in other processes).
"""

from __future__ import annotations

import logging

from django.contrib.sessions.backends import cached_db, db
from django.contrib.sessions.backends.base import VALID_KEY_CHARS, CreateError, UpdateError
from django.contrib.sessions.models import Session
from django.db import DatabaseError, IntegrityError, connections, router, transaction
from django.utils import timezone
from django.utils.crypto import get_random_string

from caregate import rowsql

logger = logging.getLogger("django.contrib.sessions")
_KEY_CHARS = frozenset(VALID_KEY_CHARS)
_MIN_KEY = 8  # Django's own floor (SessionBase._validate_session_key)


class LeanDatabaseStore(db.SessionStore):
    """The database store without the checks and writes described above."""

    def __init__(self, session_key: str | None = None) -> None:
        super().__init__(session_key)
        self._insert_pending = False

    def _get_session_from_db(self) -> Session | None:
        # Django's: the unexpired row of this key, or None and the key forgotten.
        row = rowsql.select_one(
            self.model,
            ("session_data", "expire_date"),
            {"session_key": self.session_key, "expire_date >": timezone.now()},
        )
        if row is None:
            self._session_key = None
            return None
        return self.model(session_key=self.session_key, **row)

    def _validate_session_key(self, key: str | None) -> bool:
        """Only a key this store could have drawn names a row; anything else is no key
        (a new session). A quoted cookie's octal escape ("\\000...") put a NUL in the key,
        and PostgreSQL refused the statement: a 500 on every page for anyone who sent it
        (found by the attacker review of session 12)."""
        return (
            bool(key)
            and _MIN_KEY <= len(key) <= Session._meta.get_field("session_key").max_length
            and set(key) <= _KEY_CHARS
        )

    def _get_new_session_key(self) -> str:
        # No exists(): the insert refuses a duplicate (see the module docstring).
        return get_random_string(32, VALID_KEY_CHARS)

    def cycle_key(self) -> None:
        data = self._session
        old_key = self.session_key
        self._session_key = self._get_new_session_key()
        self._session_cache = data
        self._insert_pending = True
        self.modified = True
        if old_key:
            self.delete(old_key)

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            self.create()
            return
        # The key drawn by cycle_key has no row yet. A collision (never seen in practice)
        # raises CreateError rather than taking over another session's row.
        self._write(must_create or self._insert_pending)
        self._insert_pending = False

    def _write(self, must_create: bool) -> None:
        data = self._get_session(no_load=must_create)
        obj = self.create_model_instance(data)
        using = router.db_for_write(self.model, instance=obj)
        try:
            if connections[using].in_atomic_block:
                # Inside a caller's transaction: a refused insert must not break it.
                with transaction.atomic(using=using):
                    written = self._store(obj, must_create)
            else:
                written = self._store(obj, must_create)
        except IntegrityError as exc:
            if must_create:
                raise CreateError from exc
            raise
        except DatabaseError as exc:  # as Django's store does
            if not must_create:
                raise UpdateError from exc
            raise
        if not written:
            # Django's "forced update did not affect any rows": the row is gone (signed
            # out elsewhere, expired and cleared); SessionMiddleware answers that.
            raise UpdateError

    def _store(self, obj: Session, must_create: bool) -> bool:
        """The row's single INSERT (a new key) or UPDATE (by key); whether a row was
        written. Through caregate.rowsql: the same statement, without the ORM's save()."""
        if must_create:
            rowsql.insert(
                self.model,
                {
                    "session_key": obj.session_key,
                    "session_data": obj.session_data,
                    "expire_date": obj.expire_date,
                },
            )
            return True
        values = {"session_data": obj.session_data, "expire_date": obj.expire_date}
        return rowsql.update(self.model, values, {"session_key": obj.session_key}) == 1

    def delete(self, session_key: str | None = None) -> None:
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        # One DELETE: the session model has no relations or signals to honour.
        rowsql.delete(self.model, {"session_key": session_key})


class LeanCachedDatabaseStore(cached_db.SessionStore, LeanDatabaseStore):
    """``cached_db`` (the row is the truth, Redis a read-through copy) over the lean store:
    the MRO puts LeanDatabaseStore under cached_db's save() and delete(), which write or
    drop the row and then the copy."""

    def load(self) -> dict:
        """Django's cached_db load (the copy, else the row, which is then copied), with
        the row checked once more after the copy is written. A request that read the row
        just before a Sign out (or an End session) deleted it put the copy back after
        delete()'s second drop, and the copy is read before the row: the signed-out key
        opened the portal again (found by the second attacker review of session 12,
        tests/security/test_attack_session12b.py). Whatever the order of the two requests'
        steps, either the check sees the row gone and drops the copy, or the row's delete
        and delete()'s second drop come after the copy was written. Only a miss (a new
        copy) costs the extra query."""
        try:
            data = self._cache.get(self.cache_key)
        except Exception:
            # As Django's: an unreachable (or refusing) cache leaves the row the truth.
            data = None
        if data is not None:
            return data
        row = self._get_session_from_db()
        if row is None:
            return {}
        data = self.decode(row.session_data)
        self._cache.set(self.cache_key, data, self.get_expiry_age(expiry=row.expire_date))
        if not rowsql.exists(self.model, {"session_key": row.session_key}):
            self._drop_copy(row.session_key)
            self._session_key = None
            return {}
        return data

    def save(self, must_create: bool = False) -> None:
        if self.session_key is None:
            # create() saves (row and copy) itself: Django's would copy to Redis twice.
            self.create()
            return
        if must_create or self._insert_pending:
            # A new key: its row, then its copy (no other request knows the key yet).
            super().save(must_create)
            return
        self._update_existing()

    def _update_existing(self) -> None:
        """An existing session: the copy FIRST, then the row, and the copy dropped again
        if the row is gone. Django writes the row and then the copy, so a Sign out (or an
        End session from My Account) landing between the two deleted both, and this
        request then put the copy back: the signed-out key was signed in again for as
        long as the copy lived (the copy is read before the row). Found by the attacker
        review of session 12 (tests/security/test_attack_session12_rowsql.py). With
        delete()'s second drop of the copy, no order of the two requests' steps leaves a
        copy without its row."""
        try:
            self._cache.set(self.cache_key, self._session, self.get_expiry_age())
        except Exception:
            # As Django's cached_db: an unreachable cache leaves the row the truth.
            logger.exception("Error saving to cache (%s)", self._cache)
        try:
            LeanDatabaseStore.save(self, must_create=False)
        except UpdateError:
            self._drop_copy(self.session_key)
            raise

    def _drop_copy(self, session_key: str) -> None:
        try:
            self._cache.delete(self.cache_key_prefix + session_key)
        except Exception:
            logger.exception("Error deleting from cache (%s)", self._cache)

    def delete(self, session_key: str | None = None) -> None:
        """Drop the Redis copy FIRST, then the row, then the copy once more. Django's
        order (row, then copy) leaves a signed-out or ended session alive if Redis cannot
        be reached at that moment but keeps its data: the copy is read before the row when
        Redis answers again. This way an unreachable Redis makes the sign-out fail visibly
        (the outage page) and nothing is deleted, rather than deleting only the half that
        is not read first. The second drop: a concurrent save of this session may have
        written its copy between the first drop and the row's delete (see
        _update_existing); it cannot write one after the row is gone."""
        if session_key is None:
            if self.session_key is None:
                return
            session_key = self.session_key
        self._cache.delete(self.cache_key_prefix + session_key)
        LeanDatabaseStore.delete(self, session_key)
        self._drop_copy(session_key)


SessionStore = LeanCachedDatabaseStore
