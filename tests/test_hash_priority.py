"""Password hashes run in lower-priority threads (caregate/accounts/hash_priority.py).

Every hash a sign-in makes goes the same way (a right or wrong password, an unknown
account's stand-in hash, an imported hash's legacy work), the request gets its answer and
its exceptions, and CAREGATE_HASH_NICE=0 keeps the hash in the request's own thread.
"""

from __future__ import annotations

import os
import sys
import threading

import argon2
import pytest
from django.contrib.auth.hashers import check_password, make_password
from django.test import Client

from caregate.accounts import hash_priority
from caregate.accounts.hashers import Argon2WrappedPBKDF2PasswordHasher
from tests.conftest import PASSWORD
from tests.test_settings import manage

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="per-thread nice is Linux's")


def nice_of_this_thread() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.fixture
def hash_threads(monkeypatch) -> list[str]:
    """The name of the thread each Argon2 hash and PBKDF2 digest ran in."""
    seen: list[str] = []
    for owner, name in (
        (argon2.PasswordHasher, "verify"),
        (argon2.low_level, "hash_secret"),
        (argon2.low_level, "verify_secret"),
    ):
        original = getattr(owner, name)

        def spy(*args, _original=original, **kwargs):
            seen.append(threading.current_thread().name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)
    import hashlib

    from django.utils import crypto

    real_pbkdf2 = hashlib.pbkdf2_hmac

    def pbkdf2_spy(*args, **kwargs):
        seen.append("pbkdf2:" + threading.current_thread().name)
        return real_pbkdf2(*args, **kwargs)

    monkeypatch.setattr(crypto.hashlib, "pbkdf2_hmac", pbkdf2_spy)
    return seen


def test_work_runs_at_the_configured_lower_priority(settings) -> None:
    settings.CAREGATE_HASH_NICE = 10
    caller = nice_of_this_thread()
    assert hash_priority.run(nice_of_this_thread) == min(19, caller + 10)
    assert nice_of_this_thread() == caller  # the request's own thread is untouched


def test_a_changed_setting_makes_threads_at_the_new_priority(settings) -> None:
    caller = nice_of_this_thread()
    settings.CAREGATE_HASH_NICE = 5
    assert hash_priority.run(nice_of_this_thread) == min(19, caller + 5)
    settings.CAREGATE_HASH_NICE = 12
    assert hash_priority.run(nice_of_this_thread) == min(19, caller + 12)


def test_zero_hashes_in_the_requests_own_thread(settings) -> None:
    settings.CAREGATE_HASH_NICE = 0
    here = threading.current_thread().name
    assert hash_priority.run(lambda: threading.current_thread().name) == here


def test_the_answer_and_the_exception_come_back() -> None:
    assert hash_priority.run(lambda a, b: a + b, 2, 3) == 5

    def fails() -> None:
        raise ValueError("from the hash thread")

    with pytest.raises(ValueError, match="from the hash thread"):
        hash_priority.run(fails)


def test_a_forked_process_makes_its_own_threads(settings) -> None:
    settings.CAREGATE_HASH_NICE = 10
    hash_priority.run(lambda: None)
    inherited = hash_priority._Pool.executor
    hash_priority._Pool.pid = -1  # as a forked gunicorn worker finds it
    hash_priority.run(lambda: None)
    assert hash_priority._Pool.executor is not inherited
    assert hash_priority._Pool.pid == os.getpid()


def test_runs_do_not_nest(settings) -> None:
    # A wrapped hash's inner Argon2 runs in the thread that already holds the work: with
    # every pool thread busy, a nested submit would wait for itself.
    settings.CAREGATE_HASH_NICE = 10
    outer, inner = hash_priority.run(
        lambda: (
            threading.current_thread().name,
            hash_priority.run(lambda: threading.current_thread().name),
        )
    )
    assert outer == inner and outer.startswith("password-hash")


def test_a_password_check_and_a_new_hash_run_in_the_hash_threads(hash_threads) -> None:
    encoded = make_password(PASSWORD)
    assert check_password(PASSWORD, encoded)
    assert not check_password("not the password", encoded)
    assert len(hash_threads) == 3
    assert all(name.startswith("password-hash") for name in hash_threads)


def test_an_imported_hash_does_its_legacy_work_there_too(hash_threads) -> None:
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    legacy = PBKDF2PasswordHasher().encode(PASSWORD, "importedsalt", iterations=1000)
    wrapped = Argon2WrappedPBKDF2PasswordHasher().wrap(legacy)
    hash_threads.clear()
    assert Argon2WrappedPBKDF2PasswordHasher().verify(PASSWORD, wrapped)
    assert not Argon2WrappedPBKDF2PasswordHasher().verify("wrong", wrapped)
    assert hash_threads and all("password-hash" in name for name in hash_threads)
    assert any(name.startswith("pbkdf2:") for name in hash_threads)


@pytest.mark.django_db
def test_a_sign_in_hashes_the_same_way_for_an_unknown_account(
    client: Client, email_user, hash_threads
) -> None:
    from tests.test_email_login import sign_in_step, start

    start(client)
    sign_in_step(client, email_user.email)
    known = list(hash_threads)
    hash_threads.clear()
    stranger = Client()
    start(stranger)
    sign_in_step(stranger, "nobody-here@example.com")
    unknown = list(hash_threads)
    assert known and unknown
    assert all(name.startswith("password-hash") for name in known + unknown)


@pytest.mark.parametrize("value", ["-1", "20", "ten"])
def test_a_bad_setting_stops_start_up(value: str) -> None:
    result = manage("check", CAREGATE_HASH_NICE=value)
    assert result.returncode != 0
    assert "CAREGATE_HASH_NICE must be" in result.stderr


@pytest.mark.django_db
def test_the_legacy_top_up_of_an_unknown_account_runs_there_too(
    client: Client, email_user, hash_threads
) -> None:
    from django.contrib.auth.hashers import PBKDF2PasswordHasher

    from tests.test_email_login import sign_in_step, start

    legacy = PBKDF2PasswordHasher().encode(PASSWORD, "importedsalt", iterations=1000)
    email_user.password = Argon2WrappedPBKDF2PasswordHasher().wrap(legacy)
    email_user.save(update_fields=["password"])  # an imported hash exists: top-ups are due
    hash_threads.clear()
    start(client)
    sign_in_step(client, "nobody-here@example.com")
    assert any(name.startswith("pbkdf2:") for name in hash_threads)
    assert all("password-hash" in name for name in hash_threads)
