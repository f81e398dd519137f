"""Argon2id with its cost parameters taken from settings, and Argon2id over legacy hashes.

Legacy hashes (imported with ``import_users``) are wrapped as Django's documentation
describes in "Password upgrading without requiring a login": the stored value is
``argon2id(pbkdf2(password))``, made from the legacy hash alone, and the first successful
sign-in replaces it with plain Argon2id (the wrapper is not the first entry of
PASSWORD_HASHERS, so Django re-hashes).

Checking a wrapped hash still costs the legacy PBKDF2 *and* the Argon2, more than a native
account or an unknown email. So that a wrong password costs the same on every account
while wrapped hashes exist, every failed check is topped up to that cost: the legacy work
padded to Django's current PBKDF2 iterations (Django's own ``harden_runtime``) plus one
Argon2. Once no wrapped hash is left the top-up stops by itself.
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

# How long "are there wrapped hashes?" is remembered; import_users forgets it at once.
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

    def verify(self, password: str, encoded: str) -> bool:
        legacy = self.legacy()
        setting = self.decode(encoded)["salt"]
        arguments = self.legacy_arguments(legacy.decode(setting + "$"))
        legacy_encoded = legacy.encode(password, **arguments)
        # An old hash with fewer iterations is padded to today's count, so every wrapped
        # account costs what the top-up of the others costs.
        legacy.harden_runtime(password, legacy_encoded)
        return super().verify(legacy_encoded.rsplit("$", 1)[1], encoded)

    def spend_legacy_work(self, password: str) -> None:
        """Do the legacy part of a wrapped check, for a check that had none."""
        legacy = self.legacy()
        legacy.encode(password, legacy.salt())

    def hashes_exist(self) -> bool:
        """Whether any account still has a hash of this wrapper (cached a few minutes)."""
        key = f"caregate:wrapped-hashes:{self.algorithm}"
        present = cache.get(key)
        if present is None:
            from caregate.accounts.models import User  # noqa: PLC0415 - hashers load early

            present = User.objects.filter(password__startswith=f"{self.algorithm}$").exists()
            cache.set(key, present, _PRESENCE_SECONDS)
        return bool(present)

    def forget_presence(self) -> None:
        cache.delete(f"caregate:wrapped-hashes:{self.algorithm}")


class Argon2WrappedPBKDF2PasswordHasher(Argon2WrappedPasswordHasher):
    """Argon2id over Django's ``pbkdf2_sha256`` (``argon2_pbkdf2_sha256$argon2id$…``)."""

    algorithm = "argon2_pbkdf2_sha256"
    legacy_hasher = PBKDF2PasswordHasher

    def legacy_arguments(self, decoded: dict[str, Any]) -> dict[str, Any]:
        return {"salt": decoded["salt"], "iterations": decoded["iterations"]}

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
    for wrapper in wrappers():
        if wrapper.hashes_exist():
            if not legacy_work_done:
                # One wrapper's legacy work: a wrapped check pays one, never more.
                wrapper.spend_legacy_work(password)
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
