"""Timing attacks on sign-in: can an attacker tell an imported account (a legacy
pbkdf2_sha256 hash), a native Argon2 account and an unknown email apart by how long a
wrong password takes?

Wall time is noisy, so the work is counted instead: every Argon2 computation (with its
cost parameters) and every PBKDF2 iteration, by wrapping argon2-cffi's and Django's
primitives. A wrong password must cost the same work whatever the account.
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import argon2
import argon2._password_hasher
import pytest
from django.contrib.auth import authenticate
from django.contrib.auth import hashers as django_hashers
from django.contrib.auth.hashers import make_password
from django.core.management import call_command

from caregate.accounts.hashers import (
    Argon2WrappedPBKDF2PasswordHasher,
    after_failed_check,
    spend_failed_check,
)
from caregate.accounts.models import User

pytestmark = pytest.mark.django_db
WRONG = "Not-The-Password-1"
LEGACY_PASSWORD = "Legacy-Pass-2019!"


class Work(Counter):
    """What the hashing cost: ("argon2", m, t, p) → calls, "pbkdf2 iterations" → total."""


@pytest.fixture
def work(monkeypatch) -> Iterator[Callable[[Callable[[], object]], Work]]:
    hash_secret = argon2.low_level.hash_secret
    verify_secret = argon2._password_hasher.verify_secret
    pbkdf2 = django_hashers.pbkdf2
    current = Work()

    def counting_hash(secret, salt, *, time_cost, memory_cost, parallelism, **kwargs):
        current["argon2", memory_cost, time_cost, parallelism] += 1
        return hash_secret(
            secret,
            salt,
            time_cost=time_cost,
            memory_cost=memory_cost,
            parallelism=parallelism,
            **kwargs,
        )

    def counting_verify(hash_, secret, type_):
        params = argon2.extract_parameters(hash_.decode())
        current["argon2", params.memory_cost, params.time_cost, params.parallelism] += 1
        return verify_secret(hash_, secret, type_)

    def counting_pbkdf2(password, salt, iterations, *args, **kwargs):
        current["pbkdf2 iterations"] += iterations
        return pbkdf2(password, salt, iterations, *args, **kwargs)

    monkeypatch.setattr(argon2.low_level, "hash_secret", counting_hash)
    monkeypatch.setattr(argon2._password_hasher, "verify_secret", counting_verify)
    monkeypatch.setattr(django_hashers, "pbkdf2", counting_pbkdf2)

    def measure(attempt: Callable[[], object]) -> Work:
        current.clear()
        attempt()
        return Work(current)

    yield measure


def import_hash(tmp_path: Path, org, username: str, password_hash: str) -> User:
    """One user imported by import_users with ``password_hash`` as it is given."""
    path = tmp_path / f"{username}.csv"
    path.write_text(
        "username,email,first_name,last_name,organization_npi,password_hash\n"
        f'{username},{username}@clinic.example,Ima,Ported,{org.npi},"{password_hash}"\n'
    )
    call_command("import_users", str(path), stdout=io.StringIO())
    return User.objects.get(username=username)


def import_legacy_user(tmp_path: Path, org, username: str, iterations: int | None = None):
    hasher = django_hashers.PBKDF2PasswordHasher()
    legacy = hasher.encode(LEGACY_PASSWORD, hasher.salt(), iterations)
    return import_hash(tmp_path, org, username, legacy)


def one_argon2_and_the_legacy_work(settings, iterations: int | None = None) -> Work:
    """One Argon2 and ``iterations`` of PBKDF2 (by default Django's count, which is what
    import_legacy_user's hashes take when it is not told otherwise)."""
    params = (
        settings.CAREGATE_ARGON2_MEMORY_KIB,
        settings.CAREGATE_ARGON2_TIME_COST,
        settings.CAREGATE_ARGON2_PARALLELISM,
    )
    return Work(
        {
            ("argon2", *params): 1,
            "pbkdf2 iterations": iterations or django_hashers.PBKDF2PasswordHasher.iterations,
        }
    )


def test_wrong_password_costs_the_same_on_imported_and_native_accounts(
    tmp_path, org, make_user, work, settings
):
    imported = import_legacy_user(tmp_path, org, "imported1")
    assert imported.password.startswith("argon2_pbkdf2_sha256$argon2id$")
    native = make_user(username="native1")
    disabled = make_user(username="disabled1", is_active=False)
    expected = one_argon2_and_the_legacy_work(settings)
    for username in ["imported1", "native1", "disabled1"]:
        assert work(lambda u=username: authenticate(username=u, password=WRONG)) == expected, (
            username
        )
    assert native.password.startswith("argon2$") and disabled.password.startswith("argon2$")


def test_imported_hash_with_fewer_iterations_is_padded_to_the_same_work(
    tmp_path, org, work, settings
):
    import_legacy_user(tmp_path, org, "old1", iterations=260_000)
    import_legacy_user(tmp_path, org, "old2", iterations=100_000)
    expected = one_argon2_and_the_legacy_work(settings, 260_000)
    assert work(lambda: authenticate(username="old1", password=WRONG)) == expected
    assert work(lambda: authenticate(username="old2", password=WRONG)) == expected


def test_the_padding_is_the_most_work_actually_imported_not_djangos_count(
    tmp_path, org, make_user, work, settings
):
    """Only as much legacy work as the imported hashes take: padding every failed sign-in to
    Django's 1,000,000 iterations cost ~0.4 s of CPU when the old system used 100,000."""
    import_legacy_user(tmp_path, org, "old3", iterations=100_000)
    native = make_user(username="native6")
    expected = one_argon2_and_the_legacy_work(settings, 100_000)
    for attempt in [
        lambda: authenticate(username="old3", password=WRONG),
        lambda: authenticate(username="native6", password=WRONG),
        lambda: authenticate(email="nobody@clinic.example", password=WRONG),
        lambda: spend_failed_check(WRONG),
        lambda: native.check_password(WRONG),
    ]:
        assert work(attempt) == expected
    # A right password on the imported account does the same legacy work (then upgrades).
    right = work(lambda: authenticate(username="old3", password=LEGACY_PASSWORD))
    assert right["pbkdf2 iterations"] == 100_000


def test_the_padding_follows_the_hashes_left(tmp_path, org, make_user, work, settings):
    """When the account with the most work signs in (its hash becomes plain Argon2id), the
    others are padded to the most that is left, once the cached figure is re-read."""
    import_legacy_user(tmp_path, org, "old4", iterations=200_000)
    import_legacy_user(tmp_path, org, "old5", iterations=50_000)
    native = make_user(username="native7")
    assert work(lambda: native.check_password(WRONG))["pbkdf2 iterations"] == 200_000
    assert authenticate(username="old4", password=LEGACY_PASSWORD) is not None
    Argon2WrappedPBKDF2PasswordHasher().forget_presence()  # as its expiry would
    expected = one_argon2_and_the_legacy_work(settings, 50_000)
    assert work(lambda: native.check_password(WRONG)) == expected
    assert work(lambda: authenticate(username="old5", password=WRONG)) == expected


def test_a_stored_hash_past_djangos_count_does_not_raise_the_padding(org, make_user):
    """Only the wrapping migration could store one (import_users refuses it); the padding
    stays at Django's count, so no single row can make every failed sign-in slower. A
    malformed wrapped value is passed over."""
    hasher = Argon2WrappedPBKDF2PasswordHasher()
    heavy = hasher.wrap("pbkdf2_sha256$50000000$saltsaltsalt$" + "A" * 43)
    make_user(username="heavy1")
    make_user(username="broken1")
    User.objects.filter(username="heavy1").update(password=heavy)
    User.objects.filter(username="broken1").update(password="argon2_pbkdf2_sha256$not-a-hash")
    hasher.forget_presence()
    assert hasher.legacy_work() == django_hashers.PBKDF2PasswordHasher.iterations


def test_account_without_a_usable_password_costs_the_same(
    tmp_path, org, make_user, work, settings
):
    import_legacy_user(tmp_path, org, "imported2")
    locked_out = make_user(username="nopassword1")
    locked_out.set_unusable_password()
    locked_out.save()
    assert work(lambda: authenticate(username="nopassword1", password=WRONG)) == (
        one_argon2_and_the_legacy_work(settings)
    )


def test_unknown_account_work_matches_a_wrong_password(tmp_path, org, make_user, work, settings):
    """What the sign-in spends for an email that names no account (spend_failed_check)
    equals a wrong password on an imported and on a native account."""
    imported = import_legacy_user(tmp_path, org, "imported3")
    native = make_user(username="native3")
    unknown = work(lambda: spend_failed_check(WRONG))
    assert unknown == one_argon2_and_the_legacy_work(settings)
    assert work(lambda: imported.check_password(WRONG)) == unknown
    assert work(lambda: native.check_password(WRONG)) == unknown


def test_sign_in_with_an_unknown_email_costs_a_wrong_password(tmp_path, org, work, settings):
    """Through the sign-in itself: an email that names no account, and a throttled one,
    cost what a wrong password on an imported account costs."""
    imported = import_legacy_user(tmp_path, org, "imported5")
    expected = one_argon2_and_the_legacy_work(settings)
    assert work(lambda: authenticate(email="nobody@clinic.example", password=WRONG)) == expected
    assert work(lambda: authenticate(email=imported.email, password=WRONG)) == expected
    settings.CAREGATE_RATE_LIMITS = {**settings.CAREGATE_RATE_LIMITS, "signin:account": (0, 900)}
    assert work(lambda: authenticate(email=imported.email, password=WRONG)) == expected


def test_no_legacy_work_once_no_wrapped_hash_is_left(make_user, work, settings):
    """No imported account: a wrong password is one Argon2 everywhere, nothing more."""
    make_user(username="native4")
    one_argon2 = one_argon2_and_the_legacy_work(settings)
    del one_argon2["pbkdf2 iterations"]
    assert work(lambda: authenticate(username="native4", password=WRONG)) == one_argon2
    assert work(lambda: spend_failed_check(WRONG)) == one_argon2


def test_a_native_account_pays_the_legacy_work_right_after_an_import(
    tmp_path, org, make_user, work, settings
):
    """The "any wrapped hash left?" answer is cached; an import must not leave it stale."""
    native = make_user(username="native5")
    assert work(lambda: native.check_password(WRONG))["pbkdf2 iterations"] == 0
    import_legacy_user(tmp_path, org, "imported5")
    assert work(lambda: native.check_password(WRONG)) == one_argon2_and_the_legacy_work(settings)


def test_right_password_upgrades_the_imported_hash_to_plain_argon2(tmp_path, org, work):
    imported = import_legacy_user(tmp_path, org, "imported6")
    assert authenticate(username="imported6", password=LEGACY_PASSWORD) == imported
    imported.refresh_from_db()
    assert imported.password.startswith("argon2$argon2id$")
    # The next check is the native one: one Argon2, no PBKDF2 of its own.
    spent = work(lambda: authenticate(username="imported6", password=LEGACY_PASSWORD))
    assert spent["pbkdf2 iterations"] == 0 and sum(spent.values()) == 1


def test_wrapped_hash_cannot_be_checked_with_the_legacy_digest(tmp_path, org):
    """Someone holding the old pbkdf2 hash (the old system's leaked table) cannot sign in by
    typing its digest: the check hashes what is typed with PBKDF2 first."""
    legacy = make_password(LEGACY_PASSWORD, hasher="pbkdf2_sha256")
    wrapped = Argon2WrappedPBKDF2PasswordHasher().wrap(legacy)
    digest = legacy.rsplit("$", 1)[1]
    assert not django_hashers.check_password(digest, wrapped)
    assert not django_hashers.check_password(legacy, wrapped)
    assert django_hashers.check_password(LEGACY_PASSWORD, wrapped)


def test_failed_check_on_a_wrapped_hash_adds_no_second_legacy_work(tmp_path, org, work):
    imported = import_legacy_user(tmp_path, org, "imported7")
    spent = work(lambda: after_failed_check(WRONG, imported.password))
    assert spent == Work(), "the wrapped check already did the legacy work"
