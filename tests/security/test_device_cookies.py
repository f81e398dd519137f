"""Lockouts by strangers: the sign-in budget from anywhere against the owner's browser.

A stranger who knows an email can spend the account's sign-in budget (10 wrong passwords
in 15 minutes, from any address) and keep its owner out. A browser where the account has
completed a sign-in holds a signed device cookie (caregate/security/devices.py): its
attempts count against that browser's own budget, so the owner still signs in there. The
cookie opens nothing by itself, cannot be made or moved to another account, and a
stranger's guesses never reach its budget.
"""

from __future__ import annotations

import itertools
import time
from http.cookies import SimpleCookie
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core import signing
from django.test import Client

from caregate.accounts.models import User
from caregate.audit.models import AuditEvent
from caregate.security import devices
from caregate.verification import ratelimit
from tests.conftest import PASSWORD
from tests.phone_steps import email_login

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_rate_limit_window")]
WRONG = "Not-The-Password-0"
COOKIE = django_settings.CAREGATE_DEVICE_COOKIE
CREDENTIALS = "/email-login/credentials/"
CODE_PAGE = "/email-login/email-code/"
_addresses = (f"203.0.113.{n}" for n in itertools.count(1))


def owners_browser(user: User) -> Client:
    """The owner's browser after one complete sign-in (and Sign out): it holds the cookie."""
    client = Client(REMOTE_ADDR="192.0.2.10")
    response = email_login(client, user)
    assert response.status_code == 302 and response.url == "/home/"
    assert client.cookies[COOKIE].value
    client.post("/logout/")
    return client


def password_step(client: Client, email: str, password: str):
    client.post("/login/start/", {"method": "email"})
    return client.post(CREDENTIALS, {"email": email, "password": password})


def stranger_spends_the_budget(email: str, settings) -> None:
    for _ in range(settings.CAREGATE_RATE_LIMITS["signin:account"][0] + 2):
        password_step(Client(REMOTE_ADDR=next(_addresses)), email, WRONG)


def passes(response) -> bool:
    return response.status_code == 302 and response.url == CODE_PAGE


def test_the_owner_still_signs_in_from_their_browser_after_a_stranger_spent_the_budget(
    email_user, settings
):
    browser = owners_browser(email_user)
    stranger_spends_the_budget(email_user.email, settings)
    # Anywhere else the account is paused, as before, even with the right password.
    assert not passes(password_step(Client(REMOTE_ADDR="192.0.2.99"), email_user.email, PASSWORD))
    # The owner's browser is not: its attempts count against its own budget.
    assert passes(password_step(browser, email_user.email, PASSWORD))
    throttled = AuditEvent.objects.filter(event="signin.password", outcome="throttled")
    assert throttled.count() >= 3


def test_the_browsers_own_budget_holds(email_user, settings):
    """Wrong passwords from the owner's browser (someone at that desk) meet its own
    budget: the device cookie is not a way around the limit."""
    browser = owners_browser(email_user)
    per_device = settings.CAREGATE_RATE_LIMITS["signin:device"][0]
    for _ in range(per_device):
        assert not passes(password_step(browser, email_user.email, WRONG))
    assert not passes(password_step(browser, email_user.email, PASSWORD))  # paused now
    # Those guesses did not spend the account's budget for the rest of the world.
    assert passes(password_step(Client(REMOTE_ADDR="192.0.2.77"), email_user.email, PASSWORD))


def test_a_cookie_for_one_account_does_not_help_against_another(email_user, make_user, settings):
    """The attacker signs in to an account of their own, then guesses the victim's."""
    victim = make_user(mfa="email", email="victim@clinic.example")
    attacker_browser = owners_browser(email_user)
    stranger_spends_the_budget(victim.email, settings)
    assert not passes(password_step(attacker_browser, victim.email, PASSWORD))


def made_up(kind: str, user: User) -> str:
    pk = user.pk
    entry = [[pk, "nonce", int(time.time()), devices._mark(user)]]
    return {
        "another salt": lambda: signing.dumps(entry, salt="another.salt"),
        "another key": lambda: signing.dumps(entry, key="not-the-secret-key", salt=devices.SALT),
        "unsigned": lambda: signing.b64_encode(f'[[{pk},"nonce",1,"m"]]'.encode()).decode(),
        "too long": lambda: signing.dumps(entry, salt=devices.SALT) + "x" * 3000,
        "not a list": lambda: signing.dumps({"pk": pk, "nonce": "n"}, salt=devices.SALT),
        "bad entry": lambda: signing.dumps(
            [[str(pk), "nonce", int(time.time()), devices._mark(user)]], salt=devices.SALT
        ),
        "old format": lambda: signing.dumps([[pk, "nonce", int(time.time())]], salt=devices.SALT),
        "another state": lambda: signing.dumps(
            [[pk, "nonce", int(time.time()), "0" * 20]], salt=devices.SALT
        ),
    }[kind]()


@pytest.mark.parametrize(
    "kind",
    [
        "another salt",
        "another key",
        "unsigned",
        "too long",
        "not a list",
        "bad entry",
        "old format",
        "another state",
    ],
)
def test_a_made_up_cookie_is_no_device(email_user, settings, kind):
    stranger_spends_the_budget(email_user.email, settings)
    client = Client(REMOTE_ADDR="192.0.2.50")
    client.cookies[COOKIE] = made_up(kind, email_user)
    assert not passes(password_step(client, email_user.email, PASSWORD))


def test_a_well_made_cookie_is_a_device(email_user, settings):
    """The control for the made-up ones: the same entry, signed as Caregate signs it."""
    stranger_spends_the_budget(email_user.email, settings)
    client = Client(REMOTE_ADDR="192.0.2.51")
    client.cookies[COOKIE] = signing.dumps(
        [[email_user.pk, "nonce", int(time.time()), devices._mark(email_user)]], salt=devices.SALT
    )
    assert passes(password_step(client, email_user.email, PASSWORD))


def test_an_edited_account_id_breaks_the_signature(email_user, make_user, settings):
    victim = make_user(mfa="email", email="victim2@clinic.example")
    browser = owners_browser(email_user)
    value = browser.cookies[COOKIE].value
    entries = signing.loads(value, salt=devices.SALT)
    assert [e[0] for e in entries] == [email_user.pk]
    payload, rest = value.split(":", 1)
    tampered = signing.b64_encode(
        signing.b64_decode(payload.lstrip(".").encode()).replace(
            str(email_user.pk).encode(), str(victim.pk).encode()
        )
    ).decode()
    stranger_spends_the_budget(victim.email, settings)
    browser.cookies[COOKIE] = ("." if payload.startswith(".") else "") + tampered + ":" + rest
    assert not passes(password_step(browser, victim.email, PASSWORD))


def test_an_old_entry_is_no_longer_a_device(email_user, settings):
    browser = owners_browser(email_user)
    stranger_spends_the_budget(email_user.email, settings)
    later = time.time() + settings.CAREGATE_DEVICE_COOKIE_SECONDS + 60
    with mock.patch.object(devices.time, "time", return_value=later):
        assert not passes(password_step(browser, email_user.email, PASSWORD))


def test_the_cookie_comes_only_with_a_completed_sign_in(email_user):
    client = Client()
    assert passes(password_step(client, email_user.email, PASSWORD))
    assert COOKIE not in client.cookies  # the password alone earns no device
    response = email_login(Client(), email_user)
    cookie = response.cookies[COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Lax"
    assert int(cookie["max-age"]) == django_settings.CAREGATE_DEVICE_COOKIE_SECONDS


def test_a_shared_pc_keeps_the_last_few_accounts(make_user):
    client = Client()
    users = [
        make_user(mfa="email", email=f"desk{n}@clinic.example")
        for n in range(devices.MAX_ACCOUNTS + 2)
    ]
    for user in users:
        assert email_login(client, user).url == "/home/"
        client.post("/logout/")
    held = [e[0] for e in signing.loads(client.cookies[COOKIE].value, salt=devices.SALT)]
    assert held == [u.pk for u in users[-devices.MAX_ACCOUNTS :]]


def test_a_new_sign_in_gives_a_new_nonce(email_user):
    client = Client()
    email_login(client, email_user)
    first = signing.loads(client.cookies[COOKIE].value, salt=devices.SALT)[0][1]
    client.post("/logout/")
    email_login(client, email_user)
    second = signing.loads(client.cookies[COOKIE].value, salt=devices.SALT)[0][1]
    assert first != second


def test_trusted_and_untrusted_attempts_cost_the_same_round_trips_and_hashes(email_user, settings):
    """Nothing in the answer's cost tells whether the browser held a device cookie."""
    browser = owners_browser(email_user)
    stranger = Client(REMOTE_ADDR="192.0.2.88")
    counts = []
    for client in (browser, stranger):
        with (
            mock.patch.object(ratelimit, "_count", wraps=ratelimit._count) as counted,
            mock.patch.object(User, "check_password", autospec=True, return_value=False) as hashed,
        ):
            password_step(client, email_user.email, WRONG)
        counts.append((counted.call_count, hashed.call_count))
    assert counts[0] == counts[1] == (1, 1)


def test_a_staff_sign_in_sets_no_device_cookie(rf, make_staff):
    from django.contrib.sessions.backends.db import SessionStore

    from caregate.flows.signin import STAFF_METHOD, sign_in

    request = rf.get("/")
    request.session = SessionStore()
    response = sign_in(request, make_staff(), method=STAFF_METHOD, flow="staff-login")
    assert COOKIE not in SimpleCookie(response.cookies.output(header=""))


def test_a_password_change_ends_every_browsers_entry(email_user, settings):
    """The account's security state is in each entry: after a password reset (the one
    that may follow a leak) an old browser's cookie is no device any more."""
    browser = owners_browser(email_user)
    email_user.set_password("A-New-Password-2026!")
    email_user.save()
    stranger_spends_the_budget(email_user.email, settings)
    assert not passes(password_step(browser, email_user.email, "A-New-Password-2026!"))


def test_all_of_an_accounts_browsers_share_one_budget_more(email_user, settings):
    """Entries minted again and again (a stolen Remember Me token signs in without the
    password) give no more guesses than the account's devices budget in all."""
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        "signin:device": (2, 900),
        "signin:account-devices": (5, 900),
    }
    browsers = [owners_browser(email_user) for _ in range(4)]
    checked = 0
    for browser in browsers:
        for _ in range(2):
            with mock.patch.object(
                User, "check_password", autospec=True, side_effect=User.check_password
            ) as real:
                password_step(browser, email_user.email, WRONG)
            checked += real.call_count
    assert checked == 5
