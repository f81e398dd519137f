"""Attacker review of session 16 (c): device cookies (caregate/security/devices.py).

The device cookie decides which sign-in budget a password attempt counts against: a
browser holding an entry for the account spends its own (``signin:device``) instead of
the account's and the typed identity's. These tests try to forge, re-sign, transplant and
grow the cookie, to get more guesses than intended with it, and to learn from it whether
an account exists or a browser is trusted.

FINDINGS (the tests below failed on the code of commit 28e7e6f, and pass since each
entry carries a mark of the account's security state, the Remember Me fingerprint,
and all of an account's browsers share one budget more, signin:account-devices):

- An entry outlives the security state it was issued under: a password reset through
  "Forgot your password?" (which otherwise ends every other session and forgets every
  remembered browser) leaves every earlier device entry counting, for 90 days. Whoever
  once completed a sign-in as the account (a stolen password and mailbox, a stolen Remember
  Me token) keeps a budget of their own against the owner's new password, which the
  account's budget never sees.
- Each completed sign-in mints a new entry and none is ever retired, so the number of
  budgets against one account has no bound: four hours of a stolen Remember Me token (no
  password, no code) mint as many entries as requests, and after the owner's reset each
  still gives 10 guesses every 15 minutes (only the client address's 50 limits them).
"""

from __future__ import annotations

import itertools
import pathlib
import threading
import time
from http.cookies import SimpleCookie
from unittest import mock

import pytest
from django.conf import settings as django_settings
from django.core import signing
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext

from caregate.accounts import backends
from caregate.accounts.models import User
from caregate.audit import log as audit_log
from caregate.audit.models import AuditEvent
from caregate.security import devices
from caregate.verification import ratelimit
from tests.conftest import PASSWORD
from tests.phone_steps import email_login, start, text
from tests.test_forgot_password import NEW, new_password, verify_email

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("one_rate_limit_window")]
WRONG = "Not-The-Password-0"
COOKIE = django_settings.CAREGATE_DEVICE_COOKIE
REMEMBER = django_settings.CAREGATE_REMEMBER_COOKIE
CREDENTIALS = "/email-login/credentials/"
CODE_PAGE = "/email-login/email-code/"
_addresses = (f"198.51.100.{n % 250}" for n in itertools.count(1))


def password_step(client: Client, email: str, password: str):
    client.post("/login/start/", {"method": "email"})
    return client.post(CREDENTIALS, {"email": email, "password": password})


def passes(response) -> bool:
    return response.status_code == 302 and response.url == CODE_PAGE


def completed_sign_in(user: User, address: str = "192.0.2.10") -> Client:
    client = Client(REMOTE_ADDR=address)
    response = email_login(client, user)
    assert response.status_code == 302 and response.url == "/home/"
    assert client.cookies[COOKIE].value
    client.post("/logout/", follow=True)  # follow: the "signed out" notice is shown once
    return client


def spend_the_account_budget(email: str, settings) -> None:
    for _ in range(settings.CAREGATE_RATE_LIMITS["signin:account"][0] + 2):
        password_step(Client(REMOTE_ADDR=next(_addresses)), email, WRONG)


def entries(client_or_value) -> list:
    value = getattr(client_or_value, "cookies", None)
    raw = value[COOKIE].value if value is not None else client_or_value
    return signing.loads(raw, salt=devices.SALT)


# --- FINDINGS ---------------------------------------------------------------------------


def test_a_password_reset_ends_the_device_entries_of_other_browsers(make_user, settings):
    """FINDING (medium-low): a password reset leaves other browsers' device entries in force.

    The attacker once completed a sign-in as the victim (a leaked password and access to
    the mailbox) and kept the browser's device cookie. The owner notices and resets the
    password through "Forgot your password?", which ends every other session and forgets
    every remembered browser: the reset is meant to shut everyone else out. The stranger
    side of the budget then pauses the account everywhere (the attacker can do that too),
    yet the attacker's old cookie still counts its attempts against its own budget, not
    the account's: 10 guesses every 15 minutes at the new password for 90 days, none seen
    by the account's budget. Remember Me entries are bound to the account's security state
    (remember.fingerprint); device entries are not (fix: bind each entry to it, e.g. a
    digest of the fingerprint in the entry, compared in nonce_for).
    """
    victim = make_user(mfa="email", email="reset.victim@clinic.example")
    attackers_browser = completed_sign_in(victim, "203.0.113.66")
    owners_browser = Client(REMOTE_ADDR="192.0.2.10")
    verify_email(owners_browser, victim)
    response = new_password(owners_browser)
    assert response.status_code == 302 and response.url == "/home/"
    owners_browser.post("/logout/")
    spend_the_account_budget(victim.email, settings)
    # The control: the owner's browser got its entry at the reset's sign-in and still passes.
    assert passes(password_step(owners_browser, victim.email, NEW))
    # The attacker's entry predates the reset: it must count like any stranger's browser.
    assert not passes(password_step(attackers_browser, victim.email, NEW)), (
        "an entry issued before the password reset still has a budget of its own"
    )


def test_entries_minted_by_a_stolen_remember_me_token_do_not_outlive_the_reset(
    make_user, settings
):
    """FINDING (medium-low): the number of live budgets against one account has no bound.

    Every completed sign-in mints a fresh entry (a fresh budget) and none is retired, not
    even by a password reset. A remembered browser signs in with no password and no code,
    so a stolen Remember Me token (four hours, a bearer cookie) mints an entry per request.
    After the owner resets the password (remembered browsers are forgotten), the attacker
    still holds N entries: N x 10 guesses at the new password every 15 minutes, where the
    account's budget means 10 in all from everywhere. Here 3 entries give 30 accepted
    attempts in one window while the account itself is paused.
    """
    victim = make_user(mfa="email", email="remembered.victim@clinic.example")
    owners_browser = Client(REMOTE_ADDR="192.0.2.10")
    assert email_login(owners_browser, victim, remember=True).url == "/home/"
    stolen = owners_browser.cookies[REMEMBER].value
    minted = []
    for n in range(3):
        thief = Client(REMOTE_ADDR=f"203.0.113.{70 + n}")
        thief.cookies[REMEMBER] = stolen
        response = start(thief, "email", remember=True)
        assert response.status_code == 302 and response.url == "/home/"
        minted.append(thief.cookies[COOKIE].value)
    assert len({entries(value)[0][1] for value in minted}) == 3  # three nonces, three budgets

    # The owner resets the password: remembered browsers are forgotten, sessions ended.
    reset = Client(REMOTE_ADDR="192.0.2.10")
    verify_email(reset, victim)
    assert new_password(reset).url == "/home/"
    spend_the_account_budget(victim.email, settings)

    events = AuditEvent.objects.filter(event="signin.password", username=victim.email)
    before = events.filter(outcome="failure").count()
    for n, value in enumerate(minted):
        for _ in range(settings.CAREGATE_RATE_LIMITS["signin:device"][0]):
            guesser = Client(REMOTE_ADDR=f"203.0.113.{80 + n}")
            guesser.cookies[COOKIE] = value
            password_step(guesser, victim.email, WRONG)
    # Every one of those attempts came after the account's budget was spent: each should
    # have been refused as throttled, not checked against the new password ("failure").
    checked = events.filter(outcome="failure").count() - before
    assert checked == 0, (
        f"{checked} guesses at the new password checked while the account was paused, "
        f"from {len(minted)} entries minted by a Remember Me token before the reset"
    )


# --- held: the cookie cannot be made, re-signed, edited or grown ------------------------


def test_no_other_signature_in_the_app_uses_the_device_salt():
    """Nothing else signs with the device cookie's salt (nor a salted_hmac key salt that
    equals Signer's "<salt>signer"), so no value Caregate signs elsewhere verifies as one."""
    root = pathlib.Path(devices.__file__).resolve().parents[1]
    holders = [
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if f'"{devices.SALT}' in path.read_text(encoding="utf-8")
    ]
    assert holders == ["security/devices.py"]
    assert all(
        "caregate.security.devicessigner" not in p.read_text(encoding="utf-8")
        for p in root.rglob("*.py")
    )


def test_the_audit_checkpoint_token_is_no_device(email_user, settings):
    """The one other signing.dumps in the code (the audit checkpoint) is under its own salt."""
    AuditEvent.objects.all().delete()
    token, _ = audit_log.make_checkpoint()
    spend_the_account_budget(email_user.email, settings)
    client = Client(REMOTE_ADDR="192.0.2.51")
    client.cookies[COOKIE] = token
    assert not passes(password_step(client, email_user.email, PASSWORD))


@pytest.mark.parametrize("salt", ["caregate.security", "caregate.security.devices.", ""])
def test_a_near_salt_is_no_device(email_user, settings, salt):
    spend_the_account_budget(email_user.email, settings)
    client = Client(REMOTE_ADDR="192.0.2.52")
    client.cookies[COOKIE] = signing.dumps([[email_user.pk, "n", int(time.time())]], salt=salt)
    assert not passes(password_step(client, email_user.email, PASSWORD))


def test_a_plain_signer_value_under_the_salt_is_no_device(email_user, settings):
    """Signer (no timestamp) with the device salt: TimestampSigner refuses its shape."""
    spend_the_account_budget(email_user.email, settings)
    client = Client(REMOTE_ADDR="192.0.2.53")
    client.cookies[COOKIE] = signing.Signer(salt=devices.SALT).sign_object(
        [[email_user.pk, "n", int(time.time())]]
    )
    assert not passes(password_step(client, email_user.email, PASSWORD))


def test_a_full_shared_pc_cookie_stays_far_below_the_size_cap(make_user):
    """Five accounts on one browser: the cookie is small, never the length that would be
    thrown away as "not ours" (the owner's trust silently lost)."""
    client = Client()
    for n in range(devices.MAX_ACCOUNTS + 3):
        assert email_login(client, make_user(mfa="email", email=f"pc{n}@clinic.example"))
        client.post("/logout/")
    value = client.cookies[COOKIE].value
    assert len(entries(client)) == devices.MAX_ACCOUNTS
    assert len(value) < devices.MAX_COOKIE_CHARS // 4


def test_a_signed_compression_bomb_is_not_read_past_the_size_cap(email_user, settings):
    """Even a value signed with the key: one longer than the cap is never decompressed."""
    bomb = signing.dumps(["x" * 5_000_000], salt=devices.SALT, compress=True)
    client = Client(REMOTE_ADDR="192.0.2.54")
    client.cookies[COOKIE] = bomb
    with mock.patch.object(signing, "loads", wraps=signing.loads) as loads:
        password_step(client, email_user.email, WRONG)
    assert len(bomb) > devices.MAX_COOKIE_CHARS
    assert loads.call_count == 0


def test_an_entry_copied_into_another_accounts_slot_is_no_device(make_user, settings):
    """Entries of two accounts on one cookie: one account's nonce is never the other's."""
    first = make_user(mfa="email", email="first@clinic.example")
    second = make_user(mfa="email", email="second@clinic.example")
    client = completed_sign_in(first)
    email_login(client, second)
    client.post("/logout/")
    assert [e[0] for e in entries(client)] == [first.pk, second.pk]
    spend_the_account_budget(first.email, settings)
    spend_the_account_budget(second.email, settings)
    stranger = completed_sign_in(make_user(mfa="email", email="third@clinic.example"))
    assert not passes(password_step(stranger, first.email, PASSWORD))
    assert passes(password_step(client, first.email, PASSWORD))
    assert passes(password_step(client, second.email, PASSWORD))


# --- held: no more guesses than intended -------------------------------------------------


def test_every_door_and_spelling_shares_the_one_device_budget(make_user, settings):
    """Email login, phone login and MFA registration by username, with the email in any
    letter case: all count against the same device budget (no budget per door)."""
    user = make_user(mfa="email", username="ShareBudget", email="share@clinic.example")
    browser = completed_sign_in(user)
    doors = itertools.cycle(
        [
            ("email", "/email-login/credentials/", {"email": "SHARE@clinic.example"}),
            ("phone", "/phone-login/credentials/", {"email": "share@clinic.example"}),
            ("email", "/email-login/credentials/", {"email": " Share@Clinic.Example "}),
        ]
    )
    per_device = settings.CAREGATE_RATE_LIMITS["signin:device"][0]
    for _ in range(per_device):
        method, url, data = next(doors)
        browser.post("/login/start/", {"method": method})
        browser.post(url, {**data, "password": WRONG})
    assert not passes(password_step(browser, user.email, PASSWORD))
    throttled = AuditEvent.objects.filter(event="signin.password", outcome="throttled")
    assert throttled.count() == 1


def test_mfa_registration_by_username_counts_against_the_device_budget_too(make_user, settings):
    user = make_user(mfa="email", username="regdoor", email="regdoor@clinic.example")
    browser = completed_sign_in(user)
    per_device = settings.CAREGATE_RATE_LIMITS["signin:device"][0]
    for _ in range(per_device):
        password_step(browser, user.email, WRONG)
    throttled = AuditEvent.objects.filter(event="signin.password", outcome="throttled")
    before = throttled.count()
    browser.get("/mfa-registration/")
    browser.post("/mfa-registration/credentials/", {"username": "REGDOOR", "password": PASSWORD})
    assert throttled.count() == before + 1


def test_having_trouble_logging_in_ignores_the_cookie_and_stays_paused(email_user, settings):
    """The door that checks a password without the request (and authenticate()) counts
    the account's budget even from a trusted browser: the cookie buys no extra guesses
    there (the owner's trusted browser is paused at that door, a harmless asymmetry)."""
    browser = completed_sign_in(email_user)
    spend_the_account_budget(email_user.email, settings)
    browser.post("/trouble-logging-in/", {"email": email_user.email, "password": PASSWORD})
    event = AuditEvent.objects.filter(event="trouble.link").latest("id")
    assert event.outcome == "throttled"


def test_the_client_address_limit_still_applies_with_a_device_cookie(email_user, settings):
    settings.CAREGATE_RATE_LIMITS = {**settings.CAREGATE_RATE_LIMITS, "signin:client": (3, 900)}
    browser = completed_sign_in(email_user, "192.0.2.33")  # one password step spent here
    password_step(browser, email_user.email, WRONG)
    password_step(browser, email_user.email, WRONG)
    assert not passes(password_step(browser, email_user.email, PASSWORD))


def test_an_attackers_own_cookie_and_budget_give_nothing_against_the_victim(make_user, settings):
    """The attacker signs in to their own account and guesses the victim's: every guess
    still spends the victim's account budget (the owner's guard is not rested)."""
    attacker = make_user(mfa="email", email="attacker@clinic.example")
    victim = make_user(mfa="email", email="victim@clinic.example")
    browser = completed_sign_in(attacker)
    for _ in range(settings.CAREGATE_RATE_LIMITS["signin:account"][0]):
        password_step(browser, victim.email, WRONG)
    assert not passes(password_step(Client(REMOTE_ADDR="192.0.2.90"), victim.email, PASSWORD))


def test_the_password_step_alone_and_a_half_reset_earn_no_cookie(email_user):
    client = Client()
    assert passes(password_step(client, email_user.email, PASSWORD))
    verify_email(client, email_user)  # the mailbox proven, no new password yet
    assert COOKIE not in client.cookies


def test_a_disabled_account_gets_nothing_from_its_cookie(email_user):
    browser = completed_sign_in(email_user)
    User.objects.filter(pk=email_user.pk).update(is_active=False)
    assert not passes(password_step(browser, email_user.email, PASSWORD))


def test_two_attempts_at_once_on_one_device_hold_the_budget(email_user, settings):
    """Many concurrent attempts with the same cookie: the counters are atomic (Redis
    INCR, or add/incr), so exactly the budget's worth are let through."""
    value = signing.dumps([[email_user.pk, "race", int(time.time())]], salt=devices.SALT)
    factory = RequestFactory(REMOTE_ADDR="192.0.2.44")
    per_device = settings.CAREGATE_RATE_LIMITS["signin:device"][0]
    outcomes: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(per_device * 2)

    def attempt() -> None:
        request = factory.post(CREDENTIALS)
        request.COOKIES[COOKIE] = value
        barrier.wait()
        result = backends.check_password(WRONG, email=email_user.email, request=request)
        with lock:
            outcomes.append(result.outcome)

    with (
        mock.patch.object(backends, "resolve", return_value=email_user),
        mock.patch.object(backends, "_spend_a_hash"),
        mock.patch.object(User, "check_password", return_value=False),
    ):
        threads = [threading.Thread(target=attempt) for _ in range(per_device * 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert outcomes.count("failure") == per_device
    assert outcomes.count("throttled") == per_device


# --- held: nothing tells a trusted browser or an account's existence ---------------------


def _warm_up() -> None:
    """One failed check first: the legacy-hash figure is read once, then cached
    (accounts/hashers.py), whatever the browser; not the difference looked for here."""
    password_step(Client(REMOTE_ADDR="192.0.2.250"), "warm-up@clinic.example", WRONG)


def _page_words(response) -> str:
    words = text(response)
    return " ".join(w for w in words.split() if len(w) < 40)  # drop tokens


def test_trusted_and_untrusted_wrong_passwords_look_and_cost_the_same(email_user):
    browser = completed_sign_in(email_user)
    stranger = Client(REMOTE_ADDR="192.0.2.88")
    _warm_up()
    seen = []
    for client in (browser, stranger):
        client.post("/login/start/", {"method": "email"})
        with CaptureQueriesContext(connection) as queries:
            response = client.post(CREDENTIALS, {"email": email_user.email, "password": WRONG})
        cookies = sorted(SimpleCookie(response.cookies.output(header="")).keys())
        seen.append((response.status_code, _page_words(response), len(queries), cookies))
    assert seen[0] == seen[1]
    events = AuditEvent.objects.filter(event="signin.password").order_by("-id")[:2]
    assert {(e.outcome, e.username) for e in events} == {("failure", email_user.email)}


def test_a_cookie_does_not_make_known_and_unknown_emails_differ(email_user, make_user):
    """A browser holding a device cookie (the attacker's own) types a known and an
    unknown email: the same page, queries, round trips and hashes."""
    browser = completed_sign_in(make_user(mfa="email", email="holder@clinic.example"))
    _warm_up()
    seen = []
    for email in (email_user.email, "nobody-here@clinic.example"):
        browser.post("/login/start/", {"method": "email"})
        with (
            CaptureQueriesContext(connection) as queries,
            mock.patch.object(ratelimit, "_count", wraps=ratelimit._count) as counted,
        ):
            response = browser.post(CREDENTIALS, {"email": email, "password": WRONG})
        words = _page_words(response).replace(email, "EMAIL")
        seen.append((response.status_code, words, len(queries), counted.call_count))
    assert seen[0] == seen[1]


def test_the_cookie_is_secure_httponly_and_lax_in_production_mode(email_user, settings):
    settings.SESSION_COOKIE_SECURE = True
    response = email_login(Client(), email_user)
    cookie = response.cookies[COOKIE]
    assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax"
