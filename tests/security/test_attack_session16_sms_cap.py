"""Attacker review of session 16: the cap on sends and calls to new phone numbers
(``phone-send:new-numbers``, caregate/flows/stages/phone_challenge.py ``_budget_ok``).

Tried: every path that texts or calls a number not on record (MFA registration from the
sign-in page and from the emailed link, Change phone's new number, Call Me, "send a new
code", "Change number" and another number); that sign-ins, Forgot password and Change
phone's current number (numbers on record) stay outside it; that refused attempts (the
cooldown, a bad number, the per-number, per-account and per-address budgets) spend none
of it; sends at once from many accounts; the delivery worker's retries; a refused send's
state (the live code, no call or delivery left behind); what the refusal says about
accounts; the cache down; and what it costs one attacker to use the cap up.

FINDINGS (tests that failed on the code as reviewed, see their docstrings; they pass
since each budget is counted only for a send the ones before it allowed, the
sender's first, the number's last (ratelimit.hit_in_turn, phone_challenge's
_budget_ok), and client addresses are counted by their IPv6 /64):
- a send refused by the sender's own budgets, or by the cap itself, still counts against
  the per-number budget of the number typed in: from one account and one address, with
  nothing ever sent, anyone's phone on record can be made to refuse their sign-in codes
  for the rest of the hour (no SMS warns them);
- the per-address budget counts each IPv6 address apart, so one host with a /64 is as
  many "addresses" as it likes: the address side of the DoS cost is nothing.
"""

from __future__ import annotations

import html
import threading
from unittest import mock

import pytest
import redis
from django.db import connections
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.delivery import phone as phone_delivery
from caregate.delivery.models import Delivery, OutboxMessage
from caregate.delivery.phone import SendResult
from caregate.flows.stages.phone_challenge import NEW_NUMBERS_PAUSED, TOO_MANY_SENDS
from caregate.verification import ratelimit
from caregate.verification.models import PhoneCall, VerificationCode
from tests.conftest import PASSWORD
from tests.phone_steps import PHONE_STAGE as LOGIN_PHONE_STAGE
from tests.phone_steps import to_phone_stage
from tests.registration_steps import (
    choose,
    create_password,
    open_link,
    register,
    registration_link,
    section1_login,
    sms_code,
    verify_email,
)
from tests.test_my_account import (
    CHANGE_PHONE,
    PHONE_CURRENT,
    PHONE_NEW,
    prove_current_email,
    prove_current_phone,
    signed_in_as,
)

pytestmark = pytest.mark.usefixtures("one_rate_limit_window")

MFA_PHONE = "/mfa-registration/phone/"
FORGOT_PHONE = "/forgot-password/phone/"
CAP = "phone-send:new-numbers"
VICTIM = "+12025550143"  # a phone user's number on record
VICTIM_TYPED = "202-555-0143"


def limits(
    settings,
    *,
    cap: int = 300,
    number: int = 5,
    account: int = 8,
    client: int = 20,
    cooldown: int | None = None,
) -> None:
    """The deployment's defaults unless a test says otherwise."""
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        CAP: (cap, 3600),
        "phone-send:destination": (number, 3600),
        "phone-send:account": (account, 3600),
        "phone-send:client": (client, 3600),
    }
    if cooldown is not None:
        settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = cooldown


def cap_used() -> int:
    """How much of this window's cap has been counted (the counter itself)."""
    limit = ratelimit.limit_for(CAP)
    key = ratelimit._key(CAP, "all", limit.window, 1_800_000_000.0)
    return int(ratelimit.cache.get(key, 0))


def number_used(e164: str) -> int:
    limit = ratelimit.limit_for("phone-send:destination")
    key = ratelimit._key("phone-send:destination", e164, limit.window, 1_800_000_000.0)
    return int(ratelimit.cache.get(key, 0))


def words(response) -> str:
    return html.unescape(response.content.decode())


def phone_sends() -> int:
    return OutboxMessage.objects.exclude(channel="email").count()


def unregistered(make_user, n: int):
    return make_user(username=f"pump{n}", email=f"pump{n}@old.example", mfa="none")


def at_mfa_phone_step(user, address: str, password: str = PASSWORD) -> Client:
    """``user`` (unregistered) at MFA registration's phone step, from ``address``."""
    client = Client(REMOTE_ADDR=address)
    section1_login(client, user.username, password)
    choose(client, "mfa-registration", "phone")
    verify_email(client, "mfa-registration", user.email)
    response = create_password(client, "mfa-registration", password)
    assert response.status_code == 302 and response.url == MFA_PHONE
    return client


def enroll_send(client: Client, number: str, action: str = "sms", stage: str = MFA_PHONE):
    return client.post(stage, {"action": action, "country_code": "1", "phone_number": number})


def other_number(client: Client, number: str, stage: str = MFA_PHONE):
    """Change number, then Send Code to ``number``."""
    client.post(stage, {"action": "change-number"})
    return enroll_send(client, number, stage=stage)


def victim_signs_in(make_user) -> str:
    """The phone user with VICTIM on record asks for a sign-in code; the page's words."""
    victim = make_user(mfa="phone", phone=VICTIM)
    client = Client(REMOTE_ADDR="203.0.113.250")
    to_phone_stage(client, victim)
    return words(client.post(LOGIN_PHONE_STAGE, {"action": "sms"}))


# --- FINDING: refused attempts spend a victim number's budget -----------------------------


@pytest.mark.django_db
def test_refused_enrollment_attempts_do_not_lock_a_victims_phone_out(settings, make_user):
    """FINDING (medium): one attacker, one unregistered account, one address, with the
    deployment's budgets. It spends its own 8 sends an hour on a number of its own in one
    MFA registration, then starts another (no code in it, so no cooldown either) and
    types a victim's number five times ("Change number", Send Code). Every one of those is
    refused by the attacker's own per-account budget and nothing is sent, but
    ``ratelimit.hit_all`` counts every pair even after one is over, so each refusal
    spends one of the victim's number's 5 sends an hour. The victim's sign-in then gets
    "Too many codes or calls have been requested for this number" for the rest of the
    hour, and no text ever warned them. Ten requests per victim an hour, not bounded by
    the attacker's own budgets (which are already over). The new cap's own rule ("a
    refused attempt must not use up someone else's allowance") is not applied to the
    shared per-number budget. Fails on the code as reviewed."""
    limits(settings, cooldown=0)  # its own 8 sends at once (the cooldown only slows it)
    attacker = unregistered(make_user, 1)
    first = at_mfa_phone_step(attacker, "198.51.100.7")
    for n in range(8):
        response = other_number(first, f"601-555-01{n:02d}")
        assert TOO_MANY_SENDS not in words(response)
    assert phone_sends() == 8
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 10  # the deployment's again
    second = at_mfa_phone_step(attacker, "198.51.100.7")
    for _ in range(5):
        assert TOO_MANY_SENDS in words(other_number(second, VICTIM_TYPED))
    assert not OutboxMessage.objects.filter(to=VICTIM).exists()  # nothing warned them
    page = victim_signs_in(make_user)
    assert TOO_MANY_SENDS not in page, (
        "the victim's sign-in code was refused: the attacker's refused attempts spent "
        f"their number's budget ({number_used(VICTIM) - 1} counted before, none sent)"
    )


@pytest.mark.django_db
def test_a_paused_cap_does_not_let_strangers_lock_phones_out_silently(settings, make_user):
    """FINDING (medium), the same through the cap: while the new-numbers cap is used up
    (which the README says a determined attacker can do), every enrollment attempt is
    refused by the cap, yet ``hit_all`` has already counted it against the typed number.
    One account at one address then silences three phone users' sign-ins with 15 attempts
    (more than its own 8-an-hour budget: refusals keep counting), no SMS sent to any.
    Fails on the code as reviewed."""
    limits(settings, cap=0)
    victims = ["+12025550143", "+12025550144", "+12025550145"]
    attacker = at_mfa_phone_step(unregistered(make_user, 1), "198.51.100.7")
    for victim in victims:
        for _ in range(5):
            page = words(other_number(attacker, "202-555-" + victim[-4:]))
            assert NEW_NUMBERS_PAUSED in page or TOO_MANY_SENDS in page
    assert phone_sends() == 0
    assert [number_used(victim) for victim in victims] == [0, 0, 0], (
        "enrollment attempts refused before anything was sent spent these numbers' "
        "sign-in budgets: " + str([number_used(victim) for victim in victims])
    )


# --- FINDING: the per-address budget and IPv6 ---------------------------------------------


@pytest.mark.django_db
def test_one_ipv6_64_is_one_address_for_the_send_budget(settings, make_user):
    """FINDING (low): ``phone-send:client`` is keyed by the whole client address. Two
    addresses of one IPv6 /64 (one host, one customer line: 2^64 of them) are two
    budgets, so the per-address side of the pumping defence and of the cap's DoS cost is
    free for anyone on IPv6. Here the per-address budget is 1: the second /64 neighbour
    should be refused and is sent to. Fails on the code as reviewed."""
    limits(settings, client=1, cap=100, account=100, number=100)
    one = at_mfa_phone_step(unregistered(make_user, 1), "2001:db8:1:2::10")
    two = at_mfa_phone_step(unregistered(make_user, 2), "2001:db8:1:2::11")
    assert TOO_MANY_SENDS not in words(enroll_send(one, "601-555-0101"))
    page = words(enroll_send(two, "601-555-0102"))
    assert TOO_MANY_SENDS in page, "a second address of the same /64 had a budget of its own"


# --- held: every send to a number being enrolled is under the cap, and only those ----------


@pytest.mark.django_db
def test_every_enrollment_send_and_call_counts_once(settings, make_user):
    """Send Code, Call Me, "send a new code", and "Change number" with another number at
    MFA registration: one of the cap each, nothing else."""
    limits(settings, cap=100, cooldown=0)
    client = at_mfa_phone_step(unregistered(make_user, 1), "198.51.100.7")
    assert cap_used() == 0  # the email code and the password did not count
    enroll_send(client, "601-555-0101")
    assert cap_used() == 1
    client.post(MFA_PHONE, {"action": "sms"})  # send a new code
    assert cap_used() == 2
    client.post(MFA_PHONE, {"action": "call"})
    assert cap_used() == 3
    other_number(client, "601-555-0102")
    assert cap_used() == 4
    client.post(MFA_PHONE, {"action": "change-number"})
    assert cap_used() == 4  # Change number alone sends nothing
    assert phone_sends() == 4


@pytest.mark.django_db
def test_the_emailed_link_registration_is_under_the_cap(settings, org):
    """Section 2: the account a registration made, its link, then the phone step."""
    limits(settings, cap=1, cooldown=0)
    client = Client(REMOTE_ADDR="198.51.100.8")
    register(client, org)
    assert open_link(client, registration_link("dana@clinic.example")).url == (
        "/complete-registration/method/"
    )
    choose(client, "complete-registration", "phone")
    verify_email(client, "complete-registration", "dana@clinic.example")
    assert create_password(client, "complete-registration").url == "/complete-registration/phone/"
    stage = "/complete-registration/phone/"
    assert NEW_NUMBERS_PAUSED not in words(enroll_send(client, "601-555-0101", stage=stage))
    assert NEW_NUMBERS_PAUSED in words(client.post(stage, {"action": "call"}))
    assert phone_sends() == 1 and cap_used() == 2


@pytest.mark.django_db
def test_change_phone_counts_the_new_number_and_not_the_current_one(settings, make_user):
    """My Account → Change phone: the current number (on record) is outside the cap, the
    new one inside; also for an email user switching to phone (any registered account,
    not only unregistered ones, can spend the cap this way)."""
    limits(settings, cap=100, cooldown=0)
    phone_user = make_user(mfa="phone", phone="+12025559885")
    client = signed_in_as(phone_user)
    prove_current_phone(client, CHANGE_PHONE, PHONE_CURRENT, "+12025559885")
    assert cap_used() == 0
    enroll_send(client, "202-555-0177", stage=PHONE_NEW)
    client.post(PHONE_NEW, {"action": "call"})
    assert cap_used() == 2
    email_user = make_user(mfa="email")
    other = signed_in_as(email_user)
    prove_current_email(other, CHANGE_PHONE, PHONE_CURRENT, email_user.email)
    enroll_send(other, "202-555-0178", stage=PHONE_NEW)
    assert cap_used() == 3


@pytest.mark.django_db
def test_sends_to_numbers_on_record_are_outside_the_cap(settings, make_user):
    """Phone sign-in, Forgot password's phone step, Change phone's current number: with
    the cap at 0 all of them still send (the number was proved when it was enrolled)."""
    from tests.test_forgot_password import verify_email as forgot_email

    limits(settings, cap=0, cooldown=0)
    user = make_user(mfa="phone", phone="+12025559885")
    client = signed_in_as(user)  # a phone sign-in, SMS
    prove_current_phone(client, CHANGE_PHONE, PHONE_CURRENT, "+12025559885")
    reset = Client(REMOTE_ADDR="198.51.100.9")
    assert forgot_email(reset, user).url == FORGOT_PHONE
    assert NEW_NUMBERS_PAUSED not in words(reset.post(FORGOT_PHONE, {"action": "call"}))
    assert OutboxMessage.objects.filter(to="+12025559885").count() == 3
    assert not AuditEvent.objects.filter(event="phone.send", outcome="throttled").exists()


# --- held: refused attempts spend none of the cap -----------------------------------------


@pytest.mark.django_db
def test_cooldown_bad_numbers_and_spent_budgets_use_none_of_the_cap(settings, make_user):
    limits(settings, cap=100, number=1, client=100, cooldown=10)
    one = at_mfa_phone_step(unregistered(make_user, 1), "198.51.100.7")
    for bad in ["", "202-CALL-NOW", "800-555-0101", "900-555-0101", "202-555-0101 x12"]:
        enroll_send(one, bad)
    assert cap_used() == 0 and phone_sends() == 0
    enroll_send(one, "601-555-0101")
    assert cap_used() == 1
    for action in ["sms", "call", "sms"]:  # inside the cooldown
        assert "Please wait" in words(one.post(MFA_PHONE, {"action": action}))
    other_number(one, "601-555-0102")  # Change number does not end the cooldown
    assert cap_used() == 1 and phone_sends() == 1
    two = at_mfa_phone_step(unregistered(make_user, 2), "198.51.100.8")
    assert TOO_MANY_SENDS in words(enroll_send(two, "601-555-0101"))  # that number's one
    assert cap_used() == 1 and phone_sends() == 1


@pytest.mark.django_db
def test_one_account_and_one_address_spend_at_most_their_own_budgets(settings, make_user):
    """The DoS cost, with the deployment's budgets: one account spends at most 8 of the
    300 an hour (also over two registrations at once), one address at most 20. Using the
    cap up takes ceil(300/8) = 38 accounts, ceil(300/20) = 15 addresses and
    ceil(300/5) = 60 numbers (any valid direct lines, typed in; the codes need not arrive)."""
    limits(settings, cooldown=0)
    assert settings.CAREGATE_RATE_LIMITS[CAP] == (300, 3600)
    user = unregistered(make_user, 1)
    flows = [at_mfa_phone_step(user, "198.51.100.6") for _ in range(2)]
    for n in range(12):
        other_number(flows[n % 2], f"601-555-01{n:02d}")
    assert cap_used() == 8 and phone_sends() == 8
    for k in range(2, 5):  # three more accounts from another address: 24 tries, 20 sent
        client = at_mfa_phone_step(unregistered(make_user, k), "198.51.100.7")
        for n in range(8):
            other_number(client, f"601-555-{k:02d}{n:02d}")
    assert cap_used() == 28 and phone_sends() == 28


# --- held: a refusal leaves the attempt as it was ----------------------------------------


@pytest.mark.django_db
def test_a_paused_new_code_leaves_the_code_already_sent_working(settings, make_user):
    limits(settings, cap=1, cooldown=0)
    client = at_mfa_phone_step(unregistered(make_user, 1), "198.51.100.7")
    enroll_send(client, "601-555-0101")
    codes = VerificationCode.objects.count()
    assert NEW_NUMBERS_PAUSED in words(client.post(MFA_PHONE, {"action": "sms"}))
    assert NEW_NUMBERS_PAUSED in words(client.post(MFA_PHONE, {"action": "call"}))
    assert VerificationCode.objects.count() == codes  # no code written, none voided
    live = VerificationCode.objects.filter(channel="sms", voided_at__isnull=True)
    assert live.count() == 1
    assert not PhoneCall.objects.exists()
    assert Delivery.objects.exclude(channel="email").count() == 1
    response = client.post(MFA_PHONE, {"action": "verify-sms", "code": sms_code("+16015550101")})
    assert response.status_code == 302  # the registration goes on with the first code
    refusals = AuditEvent.objects.filter(event="phone.send", outcome="throttled")
    assert [event.detail.get("limit") for event in refusals] == ["new-numbers"] * 2


@pytest.mark.django_db
def test_the_paused_page_is_the_same_for_a_number_another_account_has(settings, make_user):
    """The refusal does not tell whether a typed number is some account's: a number on
    record elsewhere and a fresh one (the same last four digits) get the same page and
    the same audit detail."""
    limits(settings, cap=0)
    make_user(mfa="phone", phone="+12025550143")
    pages, details = [], []
    for n, typed in [(1, "202-555-0143"), (2, "601-555-0143")]:
        client = at_mfa_phone_step(unregistered(make_user, n), f"198.51.100.{n}")
        page = words(enroll_send(client, typed))
        assert NEW_NUMBERS_PAUSED in page
        pages.append(
            "\n".join(line for line in page.splitlines() if "csrfmiddlewaretoken" not in line)
        )
    for event in AuditEvent.objects.filter(event="phone.send", outcome="throttled"):
        details.append(sorted(event.detail.items()))
    assert pages[0] == pages[1]
    assert details[0] == details[1]


# --- held: the delivery worker's retries -------------------------------------------------


@pytest.mark.django_db
def test_retries_are_one_send_of_the_cap_and_bounded(settings, make_user):
    """A transient failure is retried by the worker (the same message, not counted
    again); at most len(CAREGATE_DELIVERY_BACKOFF_SECONDS) + 1 attempts, so one unit of the
    cap is at most three provider requests with the defaults (a timeout after Twilio took
    the message is the only way one could be billed twice; no caller can cause it)."""
    limits(settings, cap=100, cooldown=0)
    settings.CAREGATE_DELIVERY_BACKOFF_SECONDS = [0, 0]
    client = at_mfa_phone_step(unregistered(make_user, 1), "198.51.100.7")
    tries: list[str] = []

    def flaky(self, to, body, status_callback=""):
        tries.append(to)
        return SendResult(False, error="ReadTimeout", retry=True)

    with mock.patch.object(phone_delivery.OutboxPhoneSender, "send_sms", flaky):
        enroll_send(client, "601-555-0101")
    assert len(tries) == 3 and cap_used() == 1
    assert Delivery.objects.get(channel="sms").attempts == 3


# --- held: sends at once ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_sends_at_once_from_many_accounts_stop_at_the_cap(settings, make_user):
    limits(settings, cap=2)
    clients = [
        at_mfa_phone_step(unregistered(make_user, n), f"198.51.100.{n}") for n in range(1, 5)
    ]
    barrier = threading.Barrier(len(clients))
    pages: list[str] = []

    def run(n: int, client: Client) -> None:
        try:
            barrier.wait(10)
            pages.append(words(enroll_send(client, f"601-555-01{n:02d}")))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(n, c)) for n, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(pages) == 4
    assert sum(NEW_NUMBERS_PAUSED in page for page in pages) == 2
    assert phone_sends() == 2


# --- held: the cache down -----------------------------------------------------------------


@pytest.mark.django_db
def test_the_whole_cache_down_sends_nothing_and_counts_nothing(settings, make_user):
    limits(settings, cap=100)
    client = at_mfa_phone_step(unregistered(make_user, 1), "198.51.100.7")

    def down(redis_cache, counters):
        raise redis.exceptions.ConnectionError("redis went away")

    with mock.patch.object(ratelimit, "_incr_on_redis", down):
        response = enroll_send(client, "601-555-0101")
    assert response.status_code == 503
    assert phone_sends() == 0 and cap_used() == 0
    assert not VerificationCode.objects.exclude(channel="email").exists()


# --- residual (documented): a number once enrolled is outside the cap ---------------------


@pytest.mark.django_db
def test_a_number_enrolled_once_is_texted_at_sign_in_without_the_cap(settings, make_user):
    """Documented in the README ("Sign-ins to a number on record have no total cap"), not a
    finding: an attacker who receives one code at a number it controls (one unit of the
    cap) puts the number on record, and from then on its sign-ins text it 5 times an hour
    whatever the cap, for as long as the account lasts. N such accounts are 5N texts an
    hour past the cap. There is no cheaper way to put a number on record: office phone
    and fax are never texted, and every write of ``phone_number`` is a verified
    enrollment or an operator's command."""
    limits(settings, cap=1, cooldown=0)
    user = unregistered(make_user, 1)
    client = at_mfa_phone_step(user, "198.51.100.7")
    enroll_send(client, "601-555-0101")
    response = client.post(MFA_PHONE, {"action": "verify-sms", "code": sms_code("+16015550101")})
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.phone_number == "+16015550101"
    limits(settings, cap=0, cooldown=0)
    sent = []
    for _ in range(6):
        signin = Client(REMOTE_ADDR="198.51.100.7")
        to_phone_stage(signin, user)
        sent.append(TOO_MANY_SENDS not in words(signin.post(LOGIN_PHONE_STAGE, {"action": "sms"})))
    assert sent == [True] * 4 + [False] * 2  # the number's 5 an hour (1 spent enrolling)
