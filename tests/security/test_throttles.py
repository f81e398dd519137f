"""Password guessing against the sign-in budget ("signin:account").

The budget is counted per typed identity and per resolved account, across every flow that
checks a password: email login and phone login (by email), MFA registration (by username)
and "Having trouble logging in?". An attacker who alternates the account's email and
username, their letter case and surrounding blanks, and the flows, gets the budget of real
password checks once. Throttled, wrong, unknown and disabled all answer alike.
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from unittest import mock

import pytest
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext

from caregate.accounts import backends
from caregate.accounts.hashers import ConfiguredArgon2PasswordHasher
from caregate.accounts.models import User
from caregate.audit.models import AuditEvent
from caregate.verification import ratelimit
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

WRONG = "Not-The-Password-0"
CSRF_INPUT = re.compile(r'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]+">')
_addresses = (f"198.51.100.{n}" for n in itertools.count(1))

# (flow, the credentials page, the form field)
EMAIL_LOGIN = ("/email-login/", "/email-login/credentials/", "email")
PHONE_LOGIN = ("/phone-login/", "/phone-login/credentials/", "email")
MFA_REGISTRATION = ("/mfa-registration/", "/mfa-registration/credentials/", "username")


def budget(settings) -> int:
    return settings.CAREGATE_RATE_LIMITS["signin:account"][0]


@pytest.fixture
def victim(make_user) -> User:
    """A legacy account (no MFA yet), reachable by email and by username."""
    return make_user(username="Jane.Doe", email="jane.doe@clinic.example", mfa="none")


@contextmanager
def real_checks() -> Iterator[mock.Mock]:
    """Count the password checks against a stored hash (User.check_password)."""
    original = User.check_password
    with mock.patch.object(User, "check_password", autospec=True, side_effect=original) as checked:
        yield checked


@contextmanager
def hashes() -> Iterator[dict[str, mock.Mock]]:
    """Count every Argon2 computation (make_password's encode and check's verify)."""
    encode, verify = ConfiguredArgon2PasswordHasher.encode, ConfiguredArgon2PasswordHasher.verify
    with (
        mock.patch.object(
            ConfiguredArgon2PasswordHasher, "encode", autospec=True, side_effect=encode
        ) as enc,
        mock.patch.object(
            ConfiguredArgon2PasswordHasher, "verify", autospec=True, side_effect=verify
        ) as ver,
    ):
        yield {"encode": enc, "verify": ver}


def attempt(flow: tuple[str, str, str], identity: str, password: str):
    """One guess from a fresh browser at a fresh address (the client budget never bites)."""
    start, credentials, field = flow
    client = Client(REMOTE_ADDR=next(_addresses))
    if start == "/mfa-registration/":
        assert client.get(start).url == credentials
    else:
        method = "phone" if start == "/phone-login/" else "email"
        assert client.post("/login/start/", {"method": method}).url == credentials
    return client.post(credentials, {field: identity, "password": password})


def failed(response) -> bool:
    return response.status_code == 200 and "We could not sign you in" in response.content.decode()


def spellings(user: User) -> list[tuple[tuple[str, str, str], str]]:
    """The same account, typed every way the forms accept, in every flow."""
    email, username = user.email, user.username
    return [
        (EMAIL_LOGIN, email),
        (PHONE_LOGIN, email.upper()),
        (MFA_REGISTRATION, username),
        (EMAIL_LOGIN, f"  {email.title()}  "),
        (MFA_REGISTRATION, username.lower()),
        (PHONE_LOGIN, f" {email} "),
        (MFA_REGISTRATION, f"  {username.upper()} "),
        (EMAIL_LOGIN, email.swapcase()),
    ]


def test_alternating_email_username_case_and_flows_gets_one_budget(victim, settings):
    limit = budget(settings)
    tries = itertools.cycle(spellings(victim))
    with real_checks() as checked:
        for _ in range(3 * limit):
            flow, identity = next(tries)
            assert failed(attempt(flow, identity, WRONG))
    assert checked.call_count == limit, "real password checks beyond the account's budget"
    outcomes = list(
        AuditEvent.objects.filter(event="signin.password").values_list("outcome", flat=True)
    )
    assert outcomes == ["failure"] * limit + ["throttled"] * (2 * limit)
    # The right password, typed any way in any flow, no longer gets in during the window.
    with real_checks() as checked:
        for flow, identity in spellings(victim):
            assert failed(attempt(flow, identity, PASSWORD)), (flow, identity)
    assert checked.call_count == 0


def test_username_guesses_use_up_the_email_logins_budget(victim, settings):
    for _ in range(budget(settings)):
        attempt(MFA_REGISTRATION, victim.username, WRONG)
    with real_checks() as checked:
        assert failed(attempt(EMAIL_LOGIN, victim.email, PASSWORD))
        assert failed(attempt(PHONE_LOGIN, victim.email, PASSWORD))
    assert checked.call_count == 0


def test_trouble_logging_in_shares_the_budget(victim, settings):
    """The "Having trouble logging in?" form checks a password too: same budget."""
    for _ in range(budget(settings)):
        attempt(EMAIL_LOGIN, victim.email, WRONG)
    client = Client(REMOTE_ADDR=next(_addresses))
    with real_checks() as checked:
        response = client.post(
            "/trouble-logging-in/", {"email": victim.email.upper(), "password": PASSWORD}
        )
    assert response.status_code == 200
    assert checked.call_count == 0


def test_another_account_keeps_its_own_budget(victim, make_user, settings):
    for _ in range(budget(settings)):
        attempt(EMAIL_LOGIN, victim.email, WRONG)
    other = make_user(mfa="email")
    response = attempt(EMAIL_LOGIN, other.email, PASSWORD)
    assert response.status_code == 302 and response.url == "/email-login/email-code/"


def test_an_unknown_email_throttles_per_typed_identity(settings):
    limit = budget(settings)
    for _ in range(limit):
        attempt(EMAIL_LOGIN, "nobody.here@clinic.example", WRONG)
    for typed in ("nobody.here@clinic.example", " NOBODY.here@Clinic.example "):
        assert failed(attempt(PHONE_LOGIN, typed, WRONG))
    outcomes = list(
        AuditEvent.objects.filter(event="signin.password").values_list("outcome", flat=True)
    )
    assert outcomes == ["failure"] * limit + ["throttled", "throttled"]
    # Another unknown address is counted on its own.
    attempt(EMAIL_LOGIN, "someone.else@clinic.example", WRONG)
    assert AuditEvent.objects.filter(event="signin.password").latest("id").outcome == "failure"


def test_an_unknown_username_throttles_per_typed_identity(settings):
    for _ in range(budget(settings)):
        attempt(MFA_REGISTRATION, "no.such.user", WRONG)
    attempt(MFA_REGISTRATION, "NO.SUCH.USER", WRONG)
    assert AuditEvent.objects.filter(event="signin.password").latest("id").outcome == ("throttled")


def normalized(response, identity: str) -> str:
    """The page without what legitimately differs: the CSRF token and the echoed identity."""
    body = CSRF_INPUT.sub("<csrf>", response.content.decode())
    return body.replace(identity, "<identity>")


@pytest.mark.parametrize("flow", [EMAIL_LOGIN, PHONE_LOGIN, MFA_REGISTRATION])
def test_throttled_answers_exactly_like_a_wrong_password(flow, make_user, settings):
    field = flow[2]

    def identity(user: User) -> str:
        return user.email if field == "email" else user.username

    wrong_user, throttled_user = make_user(mfa="none"), make_user(mfa="none")
    disabled = make_user(mfa="none", is_active=False)
    for _ in range(budget(settings)):
        attempt(flow, identity(throttled_user), WRONG)
    unknown = "nobody.at.all@clinic.example" if field == "email" else "nobody.at.all"
    cases = {
        "wrong password": (identity(wrong_user), WRONG),
        "throttled, right password": (identity(throttled_user), PASSWORD),
        "unknown": (unknown, PASSWORD),
        "disabled": (identity(disabled), PASSWORD),
    }
    pages = {}
    for name, (typed, password) in cases.items():
        with hashes() as calls:
            response = attempt(flow, typed, password)
        assert response.status_code == 200, name
        work = calls["encode"].call_count + calls["verify"].call_count
        assert work == 1, f"{name}: {work} Argon2 hashes, not one"
        pages[name] = normalized(response, typed)
    reference = pages["wrong password"]
    for name, page in pages.items():
        assert page == reference, f"the {name} page differs from the wrong-password page"


@pytest.mark.parametrize(
    ("kind", "known", "unknown"),
    [("email", "jane.doe@clinic.example", "nobody@clinic.example"), ("username", "JANE.DOE", "x")],
)
def test_resolving_the_account_costs_the_same_whether_it_exists(victim, kind, known, unknown):
    """One query and the same number of budget counts, for a known or an unknown account."""
    # Warm the caches a password check may read once (e.g. whether legacy hashes exist):
    # what is measured is every attempt after the first.
    backends.check_password(WRONG, **{kind: known})
    backends.check_password(WRONG, **{kind: unknown})
    work = {}
    for name, typed in (("known", known), ("unknown", unknown)):
        with (
            CaptureQueriesContext(connection) as queries,
            mock.patch.object(ratelimit, "_count", wraps=ratelimit._count) as counts,
            hashes() as calls,
        ):
            result = backends.check_password(WRONG, **{kind: typed})
        assert result == backends.PasswordCheck(None, "failure")
        work[name] = (
            len(queries.captured_queries),
            sum(len(call.args[0]) for call in counts.call_args_list),  # budgets counted
            calls["encode"].call_count + calls["verify"].call_count,
        )
    assert work["known"] == work["unknown"] == (1, 2, 1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_guesses_get_no_more_than_the_budget(victim, settings):
    """Many guesses at once (one per thread, all at the same instant) against one account."""
    limit = budget(settings)
    barrier = threading.Barrier(3 * limit)
    outcomes: list[str] = []

    def guess(n: int) -> None:
        try:
            barrier.wait()
            typed = victim.email if n % 2 else victim.username.upper()
            kind = "email" if n % 2 else "username"
            outcomes.append(backends.check_password(WRONG, **{kind: typed}).outcome)
        finally:
            connections.close_all()

    with real_checks() as checked:
        threads = [threading.Thread(target=guess, args=(n,)) for n in range(3 * limit)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    # Each guess counts against its typed spelling and the account, in whatever order the
    # threads reach the cache: a few may be refused by one count while the other still had
    # room, so "no more than the budget" is the bound (two spellings alone would give 2x).
    assert 0 < checked.call_count <= limit
    assert outcomes.count("failure") == checked.call_count
    assert outcomes.count("throttled") == 3 * limit - checked.call_count
