"""Argon2id with its cost parameters taken from settings, and Argon2id over legacy hashes.

Legacy hashes (imported with ``import_users``) are wrapped as Django's documentation
describes in "Password upgrading without requiring a login": the stored value is
``argon2id(pbkdf2(password))``, made from the legacy hash alone, and the first successful
sign-in replaces it with plain Argon2id (the wrapper is not the first entry of
PASSWORD_HASHERS, so Django re-hashes).

Checking a wrapped hash still costs the legacy PBKDF2 *and* the Argon2, more than a native
account or an unknown email. So that a wrong password costs the same on every account
while wrapped hashes exist, every check is brought to one cost: one Argon2 plus the
largest legacy work among the wrapped hashes still stored (``legacy_work``; never more
than Django's current PBKDF2 iterations). A wrapped hash with less work is padded up to
it, as Django's ``harden_runtime`` pads to its own count; every other failed check is
topped up by that much legacy work. Padding to what was actually imported, instead of
Django's 1,000,000 iterations, keeps a failed sign-in from costing ~0.4 s of CPU when the
old system used fewer. Once no wrapped hash is left the top-up stops by itself.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.contrib.auth.hashers import (
    Argon2PasswordHasher,
    BasePasswordHasher,
    PBKDF2PasswordHasher,
    get_hashers,
    identify_hasher,
    make_password,
)
from django.core.cache import cache

# How long "how much legacy work do the wrapped hashes take?" is remembered; import_users
# stores it anew after its commit, and the wrapping migration forgets it.
_PRESENCE_SECONDS = 300


class ConfiguredArgon2PasswordHasher(Argon2PasswordHasher):
    """Django's Argon2id hasher, tuned by CAREGATE_ARGON2_* settings.

    Django's own defaults (100 MiB, p=8) are heavier than the OWASP minimum and would cost
    the 8 a.m. rush; the operator chooses. ``must_update`` re-hashes on the next sign-in
    whenever the parameters change, so raising them later upgrades every account.
    """

    @property
    def memory_cost(self) -> int:  # type: ignore[override]
        return settings.CAREGATE_ARGON2_MEMORY_KIB

    @property
    def time_cost(self) -> int:  # type: ignore[override]
        return settings.CAREGATE_ARGON2_TIME_COST

    @property
    def parallelism(self) -> int:  # type: ignore[override]
        return settings.CAREGATE_ARGON2_PARALLELISM


class Argon2WrappedPasswordHasher(ConfiguredArgon2PasswordHasher):
    """Argon2id over the digest of a legacy hash: ``argon2id(legacy(password))``.

    The Argon2 salt is the legacy hash's setting (algorithm, cost, salt: everything but the
    digest), so a check can recompute the legacy digest of the password typed. A subclass
    names the legacy hasher and how its decoded setting maps to its ``encode`` arguments.
    """

    legacy_hasher: ClassVar[type[BasePasswordHasher]]

    def legacy(self) -> BasePasswordHasher:
        return self.legacy_hasher()

    def legacy_arguments(self, decoded: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def check_importable(self, legacy_encoded: str) -> None:
        """Raise ValueError for a legacy hash this wrapper cannot check at equal cost."""
        setting, _ = legacy_encoded.rsplit("$", 1)
        if not setting.isascii():
            raise ValueError("its salt is not ASCII")

    def wrap(self, legacy_encoded: str) -> str:
        """The wrapped form of a legacy hash; no password needed (import, migration)."""
        setting, digest = legacy_encoded.rsplit("$", 1)
        return super().encode(digest, setting)

    def encode(self, password: str, salt: str) -> str:
        return self.wrap(self.legacy().encode(password, salt))

    def legacy_cost(self, setting: str) -> int:
        """The legacy work of one wrapped hash, read from its legacy setting."""
        raise NotImplementedError

    def spend_legacy_work(self, password: str, cost: int) -> None:
        """Do ``cost`` of legacy work on ``password`` (a padding or a top-up)."""
        raise NotImplementedError

    def verify(self, password: str, encoded: str) -> bool:
        legacy = self.legacy()
        try:
            setting = self.decode(encoded)["salt"]
            arguments = self.legacy_arguments(legacy.decode(setting + "$"))
            cost = self.legacy_cost(setting)
        except (ValueError, TypeError, IndexError, KeyError):
            # A damaged stored value: refused like a wrong password, at the same work
            # (never a 500, never quicker than a real check).
            work = self.legacy_work()
            if work:
                self.spend_legacy_work(password, work)
            super().encode(password, self.salt())
            return False
        legacy_encoded = legacy.encode(password, **arguments)
        # A hash with less legacy work than the most any wrapped hash takes is padded to
        # it, so every wrapped account costs what the top-up of the others costs.
        extra = self.legacy_work() - cost
        if extra > 0:
            self.spend_legacy_work(password, extra)
        return super().verify(legacy_encoded.rsplit("$", 1)[1], encoded)

    def _work_key(self) -> str:
        return f"caregate:wrapped-work:{self.algorithm}"

    def legacy_work(self) -> int:
        """The most legacy work any stored hash of this wrapper takes, 0 when none is left
        (cached a few minutes in the shared cache: one read of the wrapped rows then)."""
        work = self._cached_work()
        if work is None:
            work = self._stored_legacy_work()
            # add, not set: a figure written while this scan ran (refresh_legacy_work, after
            # an import's commit) is newer than what this scan read.
            if not cache.add(self._work_key(), work, _PRESENCE_SECONDS):
                work = self._cached_work() or work
        return int(work)

    def _cached_work(self) -> int | None:
        return cache.get(self._work_key())

    def refresh_legacy_work(self) -> None:
        """Read the figure from the rows now and store it: after wrapped hashes were
        written and committed (import_users), so no request pays less in between."""
        cache.set(self._work_key(), self._stored_legacy_work(), _PRESENCE_SECONDS)

    def _stored_legacy_work(self) -> int:
        from caregate.accounts.models import User  # noqa: PLC0415 - hashers load early

        stored = User.objects.filter(password__startswith=f"{self.algorithm}$")
        work = 0
        for encoded in stored.values_list("password", flat=True).iterator(chunk_size=2000):
            try:
                work = max(work, self.legacy_cost(self.decode(encoded)["salt"]))
            except (ValueError, TypeError, IndexError, KeyError):
                continue  # malformed: it cannot be checked at all
        return min(work, self.most_legacy_work())

    def most_legacy_work(self) -> int:
        """The ceiling of the padding: a hash that takes more costs more than the rest
        (import_users refuses one; only the wrapping migration could have stored it)."""
        raise NotImplementedError

    def forget_presence(self) -> None:
        cache.delete(self._work_key())


class Argon2WrappedPBKDF2PasswordHasher(Argon2WrappedPasswordHasher):
    """Argon2id over Django's ``pbkdf2_sha256`` (``argon2_pbkdf2_sha256$argon2id$…``)."""

    algorithm = "argon2_pbkdf2_sha256"
    legacy_hasher = PBKDF2PasswordHasher

    def legacy_arguments(self, decoded: dict[str, Any]) -> dict[str, Any]:
        return {"salt": decoded["salt"], "iterations": decoded["iterations"]}

    def legacy_cost(self, setting: str) -> int:
        return int(self.legacy().decode(setting + "$")["iterations"])

    def spend_legacy_work(self, password: str, cost: int) -> None:
        legacy = self.legacy()
        legacy.encode(password, legacy.salt(), cost)

    def most_legacy_work(self) -> int:
        return PBKDF2PasswordHasher.iterations

    def check_importable(self, legacy_encoded: str) -> None:
        super().check_importable(legacy_encoded)
        iterations = self.legacy().decode(legacy_encoded)["iterations"]
        limit = PBKDF2PasswordHasher.iterations
        if iterations > limit:
            # Its check would take longer than the top-up of every other account.
            raise ValueError(f"more than {limit:,} PBKDF2 iterations")


def wrappers() -> list[Argon2WrappedPasswordHasher]:
    """The wrapping hashers configured in PASSWORD_HASHERS."""
    return [h for h in get_hashers() if isinstance(h, Argon2WrappedPasswordHasher)]


def wrapper_for(legacy_encoded: str) -> Argon2WrappedPasswordHasher | None:
    """The configured wrapper for a legacy hash's algorithm (per identify_hasher), or None.

    Raises ValueError when no configured hasher knows the format at all.
    """
    algorithm = identify_hasher(legacy_encoded).algorithm
    return next((w for w in wrappers() if w.legacy_hasher.algorithm == algorithm), None)


def _top_up(password: str, *, legacy_work_done: bool = False) -> None:
    # The presence lookup runs on every failed check, so it is no tell either.
    if legacy_work_done:
        # A wrapped check did the legacy work, and read the figure once, as every other
        # failed check does below: no second cache round trip to tell it by.
        return
    for wrapper in wrappers():
        work = wrapper.legacy_work()
        if work:
            # One wrapper's legacy work: a wrapped check pays one, never more.
            wrapper.spend_legacy_work(password, work)
            return


def spend_failed_check(password: str) -> None:
    """The work of a wrong password on any account, for an attempt that has no account to
    check (an unknown email, a paused sign-in): one Argon2 hash and the legacy top-up."""
    make_password(password)
    _top_up(password)


def after_failed_check(password: str, encoded: str) -> None:
    """Top a failed ``check_password`` up to what a wrong password on a wrapped hash costs.

    For an unusable or unknown hash Django's check_password already ran one Argon2 hash
    (its fake runtime), so only the legacy work is missing there too.
    """
    try:
        wrapped = isinstance(identify_hasher(encoded), Argon2WrappedPasswordHasher)
    except ValueError:
        wrapped = False
    _top_up(password, legacy_work_done=wrapped)
