"""The one-time code verifier: format, keyed hash, expiry, attempts, single use, resend,
binding to flow and purpose."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from unittest import mock

import pytest
from django.utils import timezone

from caregate.verification import codes
from caregate.verification.codes import CodeStatus, CodeVerifier, ResendCooldown, SendBudgetSpent
from caregate.verification.models import VerificationCode

pytestmark = pytest.mark.django_db


EMAIL = {"channel": "email", "destination": "a@example.com"}


def verifier(flow_id: str = "flow-a", purpose: str = "login:email", **kwargs) -> CodeVerifier:
    kwargs.setdefault("lifetime_seconds", 300)
    return CodeVerifier(flow_id, purpose, **kwargs)


def at(moment):
    """Freeze timezone.now() (as the verifier module sees it) at ``moment``."""
    return mock.patch("django.utils.timezone.now", return_value=moment)


def wrong(code: str) -> str:
    """A well-formed code that is certainly not ``code``."""
    return f"{(int(code) + 1) % 1_000_000:06d}"


# --- format and storage -----------------------------------------------------------------


def test_issued_code_is_six_ascii_digits():
    seen = set()
    for n in range(30):
        issued = verifier(flow_id=f"f{n}").issue("email", "a@example.com")
        assert len(issued.code) == 6
        assert issued.code.isascii() and issued.code.isdigit()
        seen.add(issued.code)
    # Random, not a counter or a constant.
    assert len(seen) > 25


def test_is_well_formed():
    assert codes.is_well_formed("012345")
    for bad in ["", "12345", "1234567", "12a456", "１２３４５６", "12 456", "٠١٢٣٤٥"]:
        assert not codes.is_well_formed(bad), bad


def test_only_a_keyed_hash_is_stored(settings):
    issued = verifier().issue("email", "a@example.com")
    row = VerificationCode.objects.values().get(pk=issued.record.pk)
    # The plaintext is nowhere in the row.
    for value in row.values():
        assert issued.code not in str(value)
    stored = row["code_hash"]
    assert len(stored) == 64
    # Not a bare digest of the code that a stolen row could be brute-forced against offline.
    assert stored != hashlib.sha256(issued.code.encode()).hexdigest()
    assert stored != hashlib.sha256(f"flow-a|login:email|{issued.code}".encode()).hexdigest()
    # Keyed by the secret key: with another key the very same code no longer matches.
    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    assert verifier().check(issued.code, **EMAIL).status is CodeStatus.WRONG


def test_right_code_passes_once():
    v = verifier()
    issued = v.issue("email", "a@example.com")
    assert v.check(issued.code, **EMAIL).status is CodeStatus.OK
    assert VerificationCode.objects.get(pk=issued.record.pk).used_at is not None
    # Single use: the same code again is USED, not OK.
    assert v.check(issued.code, **EMAIL).status is CodeStatus.USED
    assert v.check(wrong(issued.code), **EMAIL).status is CodeStatus.USED


def test_missing_when_no_code_was_issued():
    assert verifier().check("123456", **EMAIL).status is CodeStatus.MISSING
    assert verifier().current() is None


# --- expiry -----------------------------------------------------------------------------


def test_code_expires_at_its_lifetime():
    start = timezone.now()
    with at(start):
        v = verifier(lifetime_seconds=30)
        issued = v.issue("email", "a@example.com")
    assert issued.record.expires_at == start + timedelta(seconds=30)
    with at(start + timedelta(seconds=30)):
        assert v.check(issued.code, **EMAIL).status is CodeStatus.EXPIRED
    with at(start + timedelta(hours=1)):
        assert v.check(issued.code, **EMAIL).status is CodeStatus.EXPIRED


def test_code_still_valid_just_before_expiry():
    start = timezone.now()
    with at(start):
        v = verifier(lifetime_seconds=30)
        issued = v.issue("email", "a@example.com")
    with at(start + timedelta(seconds=29)):
        assert v.check(issued.code, **EMAIL).status is CodeStatus.OK


def test_expired_by_editing_expires_at():
    v = verifier()
    issued = v.issue("email", "a@example.com")
    VerificationCode.objects.filter(pk=issued.record.pk).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert v.check(issued.code, **EMAIL).status is CodeStatus.EXPIRED


# --- attempts ---------------------------------------------------------------------------


def test_five_wrong_attempts_void_the_code(settings):
    assert settings.CAREGATE_CODE_MAX_ATTEMPTS == 5
    v = verifier()
    issued = v.issue("email", "a@example.com")
    bad = wrong(issued.code)
    lefts = [v.check(bad, **EMAIL) for _ in range(4)]
    assert [r.status for r in lefts] == [CodeStatus.WRONG] * 4
    assert [r.attempts_left for r in lefts] == [4, 3, 2, 1]
    assert v.check(bad, **EMAIL).status is CodeStatus.LOCKED
    row = VerificationCode.objects.get(pk=issued.record.pk)
    assert row.attempts == 5 and row.voided_at is not None
    # Void means void: the right code no longer works either.
    assert v.check(issued.code, **EMAIL).status is CodeStatus.LOCKED


def test_max_attempts_is_configurable():
    v = verifier(max_attempts=2)
    issued = v.issue("email", "a@example.com")
    assert v.check(wrong(issued.code), **EMAIL).attempts_left == 1
    assert v.check(wrong(issued.code), **EMAIL).status is CodeStatus.LOCKED
    assert v.check(issued.code, **EMAIL).status is CodeStatus.LOCKED


def test_right_code_after_some_wrong_ones_still_passes():
    v = verifier()
    issued = v.issue("email", "a@example.com")
    for _ in range(4):
        v.check(wrong(issued.code), **EMAIL)
    assert v.check(issued.code, **EMAIL).status is CodeStatus.OK


# --- resend -----------------------------------------------------------------------------


def test_resend_within_cooldown_is_refused(settings):
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 10
    start = timezone.now()
    v = verifier()
    with at(start):
        first = v.issue("email", "a@example.com")
    with at(start + timedelta(seconds=3)), pytest.raises(ResendCooldown) as info:
        v.issue("email", "a@example.com")
    assert info.value.seconds_left == 7
    # The refused resend left the first code alone.
    assert VerificationCode.objects.filter(flow_id="flow-a").count() == 1
    with at(start + timedelta(seconds=4)):
        assert v.check(first.code, **EMAIL).status is CodeStatus.OK


def test_resend_after_cooldown_voids_the_old_code(settings):
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 10
    start = timezone.now()
    v = verifier()
    with at(start):
        first = v.issue("email", "a@example.com")
    with at(start + timedelta(seconds=10)):
        second = v.issue("email", "a@example.com")
    assert VerificationCode.objects.get(pk=first.record.pk).voided_at is not None
    with at(start + timedelta(seconds=11)):
        if first.code != second.code:
            assert v.check(first.code, **EMAIL).status is CodeStatus.WRONG
        assert v.check(second.code, **EMAIL).status is CodeStatus.OK


def test_old_code_fails_after_resend_even_when_digits_repeat(settings):
    """The old row is void; a check only ever looks at the newest code."""
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    v = verifier()
    with mock.patch.object(codes, "generate_code", side_effect=["111111", "222222"]):
        v.issue("email", "a@example.com")
        v.issue("email", "a@example.com")
    assert v.check("111111", **EMAIL).status is CodeStatus.WRONG
    assert v.check("222222", **EMAIL).status is CodeStatus.OK


def test_budget_is_not_spent_by_a_resend_the_cooldown_refuses():
    start = timezone.now()
    v = verifier(cooldown_seconds=10)
    spent: list[int] = []

    def budget() -> bool:
        spent.append(1)
        return True

    with at(start):
        v.issue("email", "a@example.com", within_budget=budget)
    with at(start + timedelta(seconds=3)), pytest.raises(ResendCooldown):
        v.issue("email", "a@example.com", within_budget=budget)
    assert len(spent) == 1


def test_spent_budget_refuses_and_keeps_the_live_code():
    v = verifier(cooldown_seconds=0)
    first = v.issue("email", "a@example.com")
    with pytest.raises(SendBudgetSpent):
        v.issue("email", "a@example.com", within_budget=lambda: False)
    assert VerificationCode.objects.filter(flow_id="flow-a").count() == 1
    assert v.check(first.code, **EMAIL).status is CodeStatus.OK


def test_cooldown_is_per_verifier_argument():
    start = timezone.now()
    v = verifier(cooldown_seconds=60)
    with at(start):
        v.issue("email", "a@example.com")
    with at(start + timedelta(seconds=59)), pytest.raises(ResendCooldown):
        v.issue("email", "a@example.com")
    with at(start + timedelta(seconds=60)):
        v.issue("email", "a@example.com")


def test_cooldown_left_counts_down():
    start = timezone.now()
    v = verifier(cooldown_seconds=10)
    assert v.cooldown_left(start) == 0
    with at(start):
        v.issue("email", "a@example.com")
    assert v.cooldown_left(start) == 10
    assert v.cooldown_left(start + timedelta(seconds=9.5)) == 1
    assert v.cooldown_left(start + timedelta(seconds=10)) == 0


def test_discard_voids_the_live_code():
    v = verifier()
    issued = v.issue("email", "a@example.com")
    v.discard()
    assert v.check(issued.code, **EMAIL).status is not CodeStatus.OK


# --- binding ----------------------------------------------------------------------------


def test_code_is_bound_to_its_flow():
    a = verifier(flow_id="flow-a")
    b = verifier(flow_id="flow-b")
    issued = a.issue("email", "a@example.com")
    # Flow B never asked for a code.
    assert b.check(issued.code, **EMAIL).status is CodeStatus.MISSING
    # Flow B has its own code: A's digits do not open it.
    with mock.patch.object(codes, "generate_code", return_value=wrong(issued.code)):
        b.issue("email", "a@example.com")
    assert b.check(issued.code, **EMAIL).status is CodeStatus.WRONG
    assert a.check(issued.code, **EMAIL).status is CodeStatus.OK


def test_code_is_bound_to_its_purpose():
    login = verifier(purpose="email-login:email")
    other = verifier(purpose="mfa-registration:email")
    issued = login.issue("email", "a@example.com")
    assert other.check(issued.code, **EMAIL).status is CodeStatus.MISSING
    assert login.check(issued.code, **EMAIL).status is CodeStatus.OK


def test_moving_a_row_to_another_flow_does_not_move_its_code():
    """The hash covers the flow id: a stolen or edited row is worthless elsewhere."""
    a = verifier(flow_id="flow-a")
    issued = a.issue("email", "a@example.com")
    VerificationCode.objects.filter(pk=issued.record.pk).update(flow_id="flow-b")
    assert verifier(flow_id="flow-b").check(issued.code, **EMAIL).status is CodeStatus.WRONG


def test_moving_a_row_to_another_purpose_does_not_move_its_code():
    a = verifier(purpose="p-one")
    issued = a.issue("email", "a@example.com")
    VerificationCode.objects.filter(pk=issued.record.pk).update(purpose="p-two")
    assert verifier(purpose="p-two").check(issued.code, **EMAIL).status is CodeStatus.WRONG


def test_wrong_attempts_in_one_flow_do_not_lock_another():
    a = verifier(flow_id="flow-a")
    b = verifier(flow_id="flow-b")
    code_a = a.issue("email", "a@example.com").code
    code_b = b.issue("email", "a@example.com").code
    for _ in range(5):
        a.check(wrong(code_a), **EMAIL)
    assert a.check(code_a, **EMAIL).status is CodeStatus.LOCKED
    assert b.check(code_b, **EMAIL).status is CodeStatus.OK
