"""Shared fixtures: factories for organizations and users, the outbox, a clean cache."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from unittest import mock

import pytest
from django.core.cache import cache
from django.test import Client

from caregate.accounts.models import Organization, User
from caregate.accounts.npi import npi_check_digit
from caregate.delivery.models import OutboxMessage

PASSWORD = "Correct-Horse-Battery-9"
_serial = itertools.count(1)


@pytest.fixture(autouse=True)
def _dev_outbox_email(settings) -> None:
    """pytest-django swaps in the locmem mail backend; the tests read the dev outbox."""
    settings.EMAIL_BACKEND = "caregate.delivery.outbox.OutboxEmailBackend"


@pytest.fixture(autouse=True)
def _test_argon2_cost(request, settings) -> None:
    """Argon2id at a test's cost (1 MiB, one pass): the suite hashes thousands of
    passwords, and at the deployment's parameters (19 MiB, two passes, ~20 ms each) that
    was a quarter of its CPU. The deployment's own parameters are tested where a test is
    marked ``deployment_argon2`` (tests/test_settings.py), and measured by bench/; the
    servers the suite starts as processes (tests/faults, test_two_processes) keep them."""
    if request.node.get_closest_marker("deployment_argon2") is None:
        settings.CAREGATE_ARGON2_MEMORY_KIB = 1024
        settings.CAREGATE_ARGON2_TIME_COST = 1


RATE_LIMIT_MOMENT = 1_800_000_000.0


@pytest.fixture
def one_rate_limit_window() -> Iterator[None]:
    """Hold the rate limits' clock still, so no window boundary splits a test that counts
    a budget (use it with ``pytestmark = pytest.mark.usefixtures(...)``)."""
    from caregate.verification import ratelimit

    with mock.patch.object(ratelimit, "time", mock.Mock(time=lambda: RATE_LIMIT_MOMENT)):
        yield


@pytest.fixture(autouse=True)
def _clean_cache() -> None:
    """Rate-limit counters live in the cache: every test starts from zero."""
    cache.clear()


@pytest.fixture
def make_org(db: None) -> Callable[..., Organization]:
    def make(
        name: str = "Test Clinic",
        npi: str | None = None,
        code: str = "REG-CODE-1",
        payer_id: str | None = None,
        *,
        without_npi: bool = False,
    ) -> Organization:
        if npi is None and not without_npi:
            base = f"1{next(_serial):08d}"
            npi = base + npi_check_digit(base)
        org = Organization(name=name, npi=npi)
        org.set_payer_id(payer_id)  # only its keyed hash is stored
        org.set_registration_code(code)
        org.save()
        return org

    return make


@pytest.fixture
def org(make_org: Callable[..., Organization]) -> Organization:
    return make_org()


@pytest.fixture
def make_user(db: None, org: Organization) -> Callable[..., User]:
    def make(
        username: str | None = None,
        email: str | None = None,
        password: str = PASSWORD,
        mfa: str = "email",
        phone: str = "",
        organization: Organization | None = None,
        **extra: object,
    ) -> User:
        n = next(_serial)
        user = User(
            username=username or f"user{n}",
            email=email or f"user{n}@example.com",
            organization=organization or org,
            mfa_method=mfa,
            phone_number=phone or ("+12025550143" if mfa == "phone" else ""),
            first_name="Pat",
            last_name=f"Tester{n}",
            **extra,
        )
        user.set_password(password)
        user.save()
        return user

    return make


@pytest.fixture
def email_user(make_user: Callable[..., User]) -> User:
    return make_user(mfa="email")


@pytest.fixture
def outbox_code() -> Callable[[str], str]:
    """Return the 6-digit code of the newest outbox message to an address."""

    def latest(to: str) -> str:
        message = OutboxMessage.objects.filter(to__icontains=to).order_by("-id").first()
        assert message is not None, f"no message to {to} in the outbox"
        match = re.search(r"\b(\d{6})\b", message.body)
        assert match, message.body
        return match.group(1)

    return latest


@pytest.fixture
def signed_in(client: Client, email_user: User, outbox_code: Callable[[str], str]) -> Client:
    """A client that went through the whole email login as the email user."""
    client.post("/login/start/", {"method": "email"})
    client.post("/email-login/credentials/", {"email": email_user.email, "password": PASSWORD})
    client.post("/email-login/email-code/", {"action": "send"})
    client.post(
        "/email-login/email-code/", {"action": "verify", "code": outbox_code(email_user.email)}
    )
    response = client.post("/email-login/email-code/", {"action": "continue"})
    assert response.status_code == 302 and response.url == "/home/"
    return client


@pytest.fixture
def make_staff(db: None) -> Callable[..., User]:
    """An operator staff account as staff LOGIN (OIDC) creates it: no organization, no
    usable password, the identity provider's subject, roles from its groups."""

    def make(roles: tuple[str, ...] = ("support",), email: str | None = None) -> User:
        n = next(_serial)
        user = User(
            username=f"staff{n}@staff.example.org",
            email=email or f"staff{n}@staff.example.org",
            first_name="Sam",
            last_name=f"Support{n}",
            oidc_issuer="https://idp.example.org",
            oidc_subject=f"subject-{n}",
            staff_roles=list(roles),
        )
        user.set_unusable_password()
        user.save()
        return user

    return make


def sign_in_as(client: Client, user: User, method: str = "staff-sso") -> Client:
    """Put ``client`` in a signed-in session of ``user`` with the session clocks set, as
    flows.signin.sign_in leaves it (the sign-in itself is tested by each flow's tests)."""
    import time

    from caregate.flows import keys

    client.force_login(user, backend="caregate.accounts.backends.EmailOrUsernameBackend")
    session = client.session
    now = int(time.time())
    session[keys.AUTH_TIME] = now
    session[keys.LAST_SEEN] = now
    session[keys.SIGNIN_METHOD] = method
    session.save()
    return client
