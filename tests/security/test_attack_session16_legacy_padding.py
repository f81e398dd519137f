"""Session 16 attacker review (b): the legacy-hash padding of commit c1c7462.

Every check is meant to cost one Argon2 plus ``legacy_work()`` PBKDF2 iterations (the
most any stored wrapped hash takes, cached five minutes). These tests count the work as
tests/security/test_timing.py does (its ``work`` fixture), and count the shared-cache
round trips too, since the code treats those as a timing tell of their own.

Tests marked FINDING failed on c1c7462 and pass since the fixes that followed: a
wrapped failure reads the figure once, like every other (no extra cache round trip);
import_users stores the new figure after its commit and a scan stores its own only if
none was written meanwhile (cache.add); a damaged wrapped value is refused like a wrong
password at the same work; import_users keeps an Argon2 hash only at the deployment's
parameters. The rest pass where the defence held. (Left, README: unwrapped pbkdf2_sha1
and scrypt hashes stored by an import before f3c26ff still cost their own work.)
"""

from __future__ import annotations

import types
from collections import Counter

import argon2
import pytest
import redis.connection
from django.contrib.auth import authenticate
from django.contrib.auth import hashers as django_hashers
from django.core.cache import cache, caches
from django.core.management import CommandError
from django.test import Client
from redis.exceptions import ConnectionError as RedisConnectionError

from caregate.accounts.hashers import (
    Argon2WrappedPBKDF2PasswordHasher,
    spend_failed_check,
)
from caregate.accounts.models import User
from caregate.flows.stages.new_password import NewPassword
from tests.conftest import PASSWORD
from tests.security.test_timing import (
    LEGACY_PASSWORD,
    WRONG,
    Work,
    import_hash,
    import_legacy_user,
    one_argon2_and_the_legacy_work,
)
from tests.security.test_timing import work as work  # noqa: PLC0414 - the fixture

pytestmark = pytest.mark.django_db
KEY = "caregate:wrapped-work:argon2_pbkdf2_sha256"
Wrapped = Argon2WrappedPBKDF2PasswordHasher


_import_csv = import_hash  # one user, its password_hash as given


def _store(make_user, username: str, encoded: str) -> User:
    user = make_user(username=username)
    User.objects.filter(pk=user.pk).update(password=encoded)
    user.refresh_from_db()
    return user


def _wrong(username: str):
    return lambda: authenticate(username=username, password=WRONG)


@pytest.fixture
def round_trips(monkeypatch):
    """Count shared-cache work: Redis round trips, and lookups of the padding's key."""
    counts: Counter = Counter()
    send = redis.connection.AbstractConnection.send_packed_command

    def counting_send(self, command, *args, **kwargs):
        counts["redis round trips"] += 1
        return send(self, command, *args, **kwargs)

    # ``cache`` is a proxy that forwards each attribute to this backend instance.
    backend = caches["default"]
    backend_get = backend.get

    def counting_get(key, *args, **kwargs):
        if str(key).startswith("caregate:wrapped-work:"):
            counts["padding lookups"] += 1
        return backend_get(key, *args, **kwargs)

    monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counting_send)
    monkeypatch.setattr(backend, "get", counting_get)

    def measure(attempt) -> Counter:
        counts.clear()
        attempt()
        return Counter(counts)

    return measure


# --- Held: one cost across iteration counts, account kinds and doors --------------------


def test_three_iteration_counts_native_disabled_unusable_unknown_throttled_cost_one_work(
    tmp_path, org, make_user, work, settings
):
    for name, iterations in [("it1k", 1_000), ("it5k", 5_000), ("it20k", 20_000)]:
        import_legacy_user(tmp_path, org, name, iterations=iterations)
    make_user(username="nat-a")
    make_user(username="dis-a", is_active=False)
    unusable = make_user(username="unu-a")
    unusable.set_unusable_password()
    unusable.save()
    expected = one_argon2_and_the_legacy_work(settings, 20_000)
    attempts = {
        name: _wrong(name) for name in ["it1k", "it5k", "it20k", "nat-a", "dis-a", "unu-a"]
    }
    attempts["unknown email"] = lambda: authenticate(email="x@nowhere.example", password=WRONG)
    attempts["unknown username"] = _wrong("no-such-user")
    for name, attempt in attempts.items():
        assert work(attempt) == expected, name
    settings.CAREGATE_RATE_LIMITS = {**settings.CAREGATE_RATE_LIMITS, "signin:account": (0, 900)}
    for name in ["it1k", "it20k", "nat-a"]:
        assert work(_wrong(name)) == expected, f"throttled {name}"


def test_every_password_door_costs_the_same_on_imported_native_and_unknown(
    tmp_path, org, make_user, work, settings
):
    """Email login, phone login, MFA registration by username and "Having trouble
    logging in?" (also with its own address limit spent)."""
    import_legacy_user(tmp_path, org, "door-imp", iterations=4_000)
    make_user(username="door-nat", email="door-nat@clinic.example")
    expected = one_argon2_and_the_legacy_work(settings, 4_000)
    emails = ["door-imp@clinic.example", "door-nat@clinic.example", "nobody@clinic.example"]

    def email_door(method: str, email: str):
        def attempt():
            client = Client()
            client.post("/login/start/", {"method": method})
            response = client.post(
                f"/{method}-login/credentials/", {"email": email, "password": WRONG}
            )
            assert response.status_code == 200

        return attempt

    def registration_door(username: str):
        def attempt():
            client = Client()
            client.get("/mfa-registration/")
            response = client.post(
                "/mfa-registration/credentials/", {"username": username, "password": WRONG}
            )
            assert response.status_code == 200

        return attempt

    def trouble_door(email: str):
        def attempt():
            response = Client().post("/trouble-logging-in/", {"email": email, "password": WRONG})
            assert response.status_code == 200

        return attempt

    for email in emails:
        assert work(email_door("email", email)) == expected, ("email login", email)
        assert work(email_door("phone", email)) == expected, ("phone login", email)
        assert work(trouble_door(email)) == expected, ("trouble", email)
    for username in ["door-imp", "door-nat", "nobody"]:
        assert work(registration_door(username)) == expected, ("mfa registration", username)
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        "link-request:client": (0, 900),
    }
    for email in emails:
        assert work(trouble_door(email)) == expected, ("trouble, address limit spent", email)


def test_stale_cache_after_the_heaviest_upgrades_over_pads_everyone_alike(
    tmp_path, org, make_user, work, settings
):
    """Until the cached figure expires, the account that upgraded, the lighter wrapped
    one, a native and an unknown account all pay the old (larger) figure: no tell."""
    import_legacy_user(tmp_path, org, "heavy-up", iterations=12_000)
    import_legacy_user(tmp_path, org, "light-up", iterations=2_000)
    make_user(username="nat-up")
    assert authenticate(username="heavy-up", password=LEGACY_PASSWORD) is not None
    assert User.objects.get(username="heavy-up").password.startswith("argon2$")
    expected = one_argon2_and_the_legacy_work(settings, 12_000)
    for name in ["heavy-up", "light-up", "nat-up", "nobody-up"]:
        assert work(_wrong(name)) == expected, name
    # ...and after expiry (or cache.clear()) all pay what is left, alike.
    cache.clear()
    expected = one_argon2_and_the_legacy_work(settings, 2_000)
    for name in ["heavy-up", "light-up", "nat-up", "nobody-up"]:
        assert work(_wrong(name)) == expected, name


def test_password_change_and_reset_registration_on_a_wrapped_account_stay_uniform(
    tmp_path, org, make_user, work, settings
):
    """A password set (Forgot password, Create) or made unusable (Reset Registration) on
    the wrapped account: the figure stays until expiry, then drops; uniform throughout."""
    a = import_legacy_user(tmp_path, org, "chg-a", iterations=9_000)
    b = import_legacy_user(tmp_path, org, "chg-b", iterations=3_000)
    make_user(username="chg-n")
    assert Wrapped().legacy_work() == 9_000  # a sign-in read the figure before the change
    a.set_password("A-New-Password-77")
    a.save()
    b.set_unusable_password()
    b.save()
    expected = one_argon2_and_the_legacy_work(settings, 9_000)
    for name in ["chg-a", "chg-b", "chg-n", "chg-none"]:
        assert work(_wrong(name)) == expected, name
    Wrapped().forget_presence()
    one_argon2 = one_argon2_and_the_legacy_work(settings)
    del one_argon2["pbkdf2 iterations"]
    for name in ["chg-a", "chg-b", "chg-n", "chg-none"]:
        assert work(_wrong(name)) == one_argon2, name


def test_right_password_on_a_padded_wrapped_hash_signs_in_and_upgrades(
    tmp_path, org, work, settings
):
    import_legacy_user(tmp_path, org, "up-heavy", iterations=8_000)
    light = import_legacy_user(tmp_path, org, "up-light", iterations=1_000)
    spent = work(lambda: authenticate(username="up-light", password=LEGACY_PASSWORD))
    assert spent["pbkdf2 iterations"] == 8_000  # padded like a wrong one
    light.refresh_from_db()
    assert light.password.startswith("argon2$argon2id$")
    assert authenticate(username="up-light", password=LEGACY_PASSWORD) == light


def test_the_scan_of_wrapped_rows_runs_once_per_expiry_not_per_attempt(
    tmp_path, org, make_user, monkeypatch
):
    """Many failed sign-ins, on every kind of account, read the wrapped rows once; with no
    wrapped hash left the cached 0 is a hit too (not None, so no scan each time)."""
    scans = Counter()
    real = Wrapped._stored_legacy_work

    def counting(self):
        scans["scan"] += 1
        return real(self)

    monkeypatch.setattr(Wrapped, "_stored_legacy_work", counting)
    make_user(username="scan-n")
    for _ in range(5):
        authenticate(username="scan-n", password=WRONG)
        authenticate(email="nobody@clinic.example", password=WRONG)
    assert scans["scan"] == 1 and cache.get(KEY) == 0
    import_legacy_user(tmp_path, org, "scan-i", iterations=1_000)
    for _ in range(5):
        authenticate(username="scan-i", password=WRONG)
        authenticate(username="scan-n", password=WRONG)
        spend_failed_check(WRONG)
    assert scans["scan"] == 2 and cache.get(KEY) == 1_000


def test_the_padding_is_capped_so_no_row_makes_every_sign_in_slower(
    make_user, work, settings, monkeypatch
):
    """DoS amplification: a stored wrapped hash past Django's count (only migration 0006
    could store one, from an import made before import_users capped the count) does not
    raise every other account's cost. Django's count is lowered here to keep this fast.

    Known, documented limit (hashers.most_legacy_work): that one account still costs its
    own count, so it alone is both distinguishable and slow to try; listed in the report.
    """
    monkeypatch.setattr(django_hashers.PBKDF2PasswordHasher, "iterations", 10_000)
    heavy = Wrapped().wrap(
        django_hashers.PBKDF2PasswordHasher().encode(LEGACY_PASSWORD, "saltsaltsalt", 30_000)
    )
    _store(make_user, "cap-heavy", heavy)
    make_user(username="cap-nat")
    Wrapped().forget_presence()
    expected = one_argon2_and_the_legacy_work(settings, 10_000)
    assert work(_wrong("cap-nat")) == expected
    assert work(_wrong("cap-nobody")) == expected
    assert work(_wrong("cap-heavy"))["pbkdf2 iterations"] == 30_000  # the documented limit


def test_cache_unavailable_every_account_fails_alike(tmp_path, org, make_user, work):
    """Redis down: the sign-in budget fails closed, the attempt is spent as a throttled
    one, and the padding lookup's error ends every attempt the same way, after the same
    work (one Argon2), whatever the account."""
    import_legacy_user(tmp_path, org, "down-i", iterations=2_000)
    make_user(username="down-n")
    real = redis.connection.AbstractConnection.send_packed_command

    def down(self, *args, **kwargs):
        raise RedisConnectionError("Connection refused")

    outcomes = {}
    redis.connection.AbstractConnection.send_packed_command = down
    try:
        for name in ["down-i", "down-n", "down-nobody"]:

            def attempt(name=name):
                try:
                    authenticate(username=name, password=WRONG)
                except RedisConnectionError:
                    outcomes[name] = "error"
                else:
                    outcomes[name] = "answered"

            outcomes[name, "work"] = work(attempt)
    finally:
        redis.connection.AbstractConnection.send_packed_command = real
    assert outcomes["down-i"] == outcomes["down-n"] == outcomes["down-nobody"]
    assert outcomes["down-i", "work"] == outcomes["down-n", "work"]
    assert outcomes["down-n", "work"] == outcomes["down-nobody", "work"]


def test_forgot_passwords_same_password_check_does_not_upgrade_mid_reset(tmp_path, org):
    """The reset's "must be different" comparison on a wrapped account recognises the old
    password and leaves the wrapped hash alone (no save halfway through a reset)."""
    user = import_legacy_user(tmp_path, org, "fp-w", iterations=1_000)
    before = user.password
    form = types.SimpleNamespace(cleaned_data={"new_password": LEGACY_PASSWORD})
    assert NewPassword._unchanged(form, user) is True
    user.refresh_from_db()
    assert user.password == before


# --- Findings -------------------------------------------------------------------------


def test_a_wrapped_failure_makes_no_more_cache_round_trips_than_a_native_one(
    tmp_path, org, make_user, round_trips
):
    """FINDING (low; regression of c1c7462). A wrong password on a wrapped account reads
    the padding figure twice (``verify`` → ``legacy_work()``, then ``after_failed_check``
    → ``_top_up`` → ``legacy_work()`` again, although it spends nothing there), a native,
    disabled, unusable or unknown account once. One extra Redis round trip per attempt
    on exactly the imported accounts, the ones still without MFA: the code itself counts
    round trips as a tell ("The presence lookup runs on every failed check, so it is no
    tell either"; backends._budgets). Before c1c7462 verify did not touch the cache.
    Reproduce: authenticate(username=<imported>, password=wrong) vs a native account,
    counting cache.get("caregate:wrapped-work:...") or Redis commands sent."""
    import_legacy_user(tmp_path, org, "rt-i", iterations=1_000)
    make_user(username="rt-n")
    authenticate(username="rt-n", password=WRONG)  # warm the figure: no scan below
    native = round_trips(_wrong("rt-n"))
    unknown = round_trips(_wrong("rt-nobody"))
    imported = round_trips(_wrong("rt-i"))
    assert native == unknown
    assert imported == native, f"imported {dict(imported)} vs native {dict(native)}"


def test_a_scan_in_flight_when_an_import_commits_does_not_cache_the_old_figure(
    tmp_path, org, make_user, work, settings, monkeypatch
):
    """FINDING (low; race). ``legacy_work`` is read-scan-set: a request whose scan of the
    wrapped rows began before import_users committed, and whose ``cache.set`` lands after
    import_users' ``forget_presence()``, stores the pre-import figure (0 on a first
    import) for five minutes. During those minutes a wrong password on a new imported
    account costs its PBKDF2 on top of the one Argon2 everyone else pays. The scan is
    about 9 µs a row (README), so its window grows with the table; migration 0006 has the
    same shape with a wider gap (it forgets inside its transaction, before the commit).
    Reproduce: let a failed sign-in's scan straddle an import (simulated here by running
    the import inside the scan), then compare an imported and a native account.
    Fix idea: import_users (after commit) *sets* the new figure and legacy_work stores
    with cache.add, or a generation counter is bumped instead of a delete."""
    make_user(username="race-n")
    real = Wrapped._stored_legacy_work

    imported: list[str] = []

    def in_flight(self):
        seen = real(self)  # the rows as this request's scan read them
        if not imported:  # (import_users' own read of the figure comes back here too)
            imported.append("race-i")
            import_legacy_user(tmp_path, org, "race-i", iterations=5_000)  # commits
        return seen

    monkeypatch.setattr(Wrapped, "_stored_legacy_work", in_flight)
    authenticate(username="race-n", password=WRONG)  # the request whose scan straddles
    monkeypatch.setattr(Wrapped, "_stored_legacy_work", real)
    native = work(_wrong("race-n"))
    imported = work(_wrong("race-i"))
    assert imported == native, f"imported {dict(imported)} vs native {dict(native)}"


def test_a_malformed_wrapped_value_fails_like_a_wrong_password(make_user, work, settings):
    """FINDING (low; needs a corrupt row). A value with the wrapper's prefix that does not
    decode (bad Argon2 part, or a legacy setting whose count is not a number) makes the
    sign-in raise (InvalidHashError / ValueError → a 500) instead of answering "could not
    sign you in" after the usual work; the scan skips such rows, the check does not. An
    attacker who knows the address sees a different answer from every other account.
    Reproduce: store "argon2_pbkdf2_sha256$not-a-hash" as a password, authenticate."""
    _store(make_user, "bad-1", "argon2_pbkdf2_sha256$not-a-hash")
    _store(make_user, "bad-2", Wrapped().wrap("pbkdf2_sha256$many$saltsaltsalt$" + "A" * 43))
    make_user(username="bad-n")
    expected = work(_wrong("bad-n"))
    for name in ["bad-1", "bad-2"]:
        outcome = {}

        def attempt(name=name, outcome=outcome):
            try:
                outcome["user"] = authenticate(username=name, password=WRONG)
            except ValueError as exc:
                outcome["error"] = repr(exc)

        spent = work(attempt)
        assert "error" not in outcome, f"{name}: {outcome['error']}"
        assert outcome["user"] is None and spent == expected, name


def test_an_imported_argon2_hash_with_other_parameters_is_refused(
    tmp_path, org, make_user, work, settings
):
    """FINDING (low-medium; pre-existing, same area), fixed: import_users kept an Argon2
    hash "as it is", whatever its m/t/p; Django's Argon2 hasher has no harden_runtime, so
    a wrong password on such an account ran Argon2 at the *imported* parameters, not the
    deployment's: every imported, not-yet-signed-in account (the ones still without MFA)
    was told apart by its cost, and an m of gigabytes was a per-attempt memory cost that
    nothing capped. Now only hashes at the deployment's own parameters are kept; any other
    is refused with the reason, and nothing is imported."""
    foreign = argon2.PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1)
    with pytest.raises(CommandError, match="nothing was imported"):
        _import_csv(tmp_path, org, "foreign-a", "argon2" + foreign.hash(PASSWORD))
    assert not User.objects.filter(username="foreign-a").exists()
    # At the deployment's parameters it is kept, and costs what a native account costs.
    own = argon2.PasswordHasher(
        time_cost=settings.CAREGATE_ARGON2_TIME_COST,
        memory_cost=settings.CAREGATE_ARGON2_MEMORY_KIB,
        parallelism=settings.CAREGATE_ARGON2_PARALLELISM,
    )
    _import_csv(tmp_path, org, "foreign-b", "argon2" + own.hash(PASSWORD))
    make_user(username="foreign-n")
    assert work(_wrong("foreign-b")) == work(_wrong("foreign-n"))


def test_counting_helper_sanity(work, make_user, settings):
    """The work fixture counts what these tests rely on (no wrapped hash: one Argon2)."""
    make_user(username="sane-n")
    spent = work(_wrong("sane-n"))
    assert spent == Work({("argon2", 1024, 1, settings.CAREGATE_ARGON2_PARALLELISM): 1})
