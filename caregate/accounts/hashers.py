"""Argon2id with its cost parameters taken from settings."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.hashers import Argon2PasswordHasher


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
