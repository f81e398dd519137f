"""The one code verifier shared by email, SMS and voice: expiry, attempts, resend, binding.

A code is 6 digits from ``secrets``. Only an HMAC of it is stored, keyed by the secret key
and bound to the flow instance, purpose, channel and destination that asked for it, so a
code from one sign-in attempt (or a stolen database row) is worthless anywhere else, and a
code sent by one channel is never accepted by another: a code read out for a call cannot
be typed as the SMS code, an SMS code cannot be keyed into a call, and a code sent to a
number or address that has changed since is refused.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

from django.conf import settings
from django.db import connections, router, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from caregate.verification.models import VerificationCode

CODE_LENGTH = 6
_SALT = "caregate.verification.code"


class CodeStatus(Enum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"
    USED = "used"
    LOCKED = "locked"  # too many wrong attempts: the code is void
    MISSING = "missing"  # no code was sent in this flow


@dataclass(frozen=True)
class CheckResult:
    status: CodeStatus
    attempts_left: int = 0


@dataclass(frozen=True)
class IssuedCode:
    record: VerificationCode
    code: str  # plaintext, to hand to a sender once; never stored


class SendBudgetSpent(Exception):
    """The hourly send budget (per account, destination or client address) is spent."""


class ResendCooldown(Exception):
    """A new code was asked for too soon after the last one."""

    def __init__(self, seconds_left: int) -> None:
        super().__init__(f"wait {seconds_left} seconds")
        self.seconds_left = seconds_left


def generate_code() -> str:
    return "".join(secrets.choice("0123456789") for _ in range(CODE_LENGTH))


def is_well_formed(code: str) -> bool:
    return len(code) == CODE_LENGTH and code.isascii() and code.isdigit()


class CodeVerifier:
    """Issue and check the codes of one flow instance for one purpose."""

    def __init__(
        self,
        flow_id: str,
        purpose: str,
        *,
        lifetime_seconds: int,
        max_attempts: int | None = None,
        cooldown_seconds: int | None = None,
    ) -> None:
        self.flow_id = flow_id
        self.purpose = purpose
        self.lifetime = timedelta(seconds=lifetime_seconds)
        self.max_attempts = (
            settings.CAREGATE_CODE_MAX_ATTEMPTS if max_attempts is None else max_attempts
        )
        self.cooldown = timedelta(
            seconds=settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS
            if cooldown_seconds is None
            else cooldown_seconds
        )

    def _hash(self, code: str, channel: str, destination: str) -> str:
        message = f"{self.flow_id}|{self.purpose}|{channel}|{destination}|{code}"
        return salted_hmac(_SALT, message, algorithm="sha256").hexdigest()

    def _codes(self):  # noqa: ANN202 - a QuerySet of this flow's codes
        return VerificationCode.objects.filter(flow_id=self.flow_id, purpose=self.purpose)

    def current(self) -> VerificationCode | None:
        """Return the newest code of this flow and purpose (used, void or live)."""
        return self._codes().order_by("-id").first()

    def cooldown_left(self, now: datetime | None = None) -> int:
        latest = self.current()
        if latest is None:
            return 0
        moment = now or timezone.now()
        left = (latest.created_at + self.cooldown - moment).total_seconds()
        return max(0, int(left + 0.999))

    def issue(
        self,
        channel: str,
        destination: str,
        within_budget: Callable[[], bool] | None = None,
        *,
        withhold: bool = False,
    ) -> IssuedCode:
        """Create a new code for ``channel`` and ``destination``, voiding any earlier code
        of this flow and purpose on every channel (one live challenge at a time).

        Raise ResendCooldown if too soon. ``within_budget`` spends one send of the caller's
        send budget and says whether there was one left (else SendBudgetSpent). It is asked
        only after the cooldown allowed the send: a request refused by the cooldown sends
        nothing and must not use up the budget; a refused one leaves the live code alone.

        ``withhold``: the code will never be delivered (an address without an account, see
        flows/stages/account_email.py). Its row is written like any other, with the same
        statements, but keeps no hash: an empty hash never equals an HMAC, so no typed code
        ever verifies against it.
        """
        with transaction.atomic():
            self._one_issue_at_a_time()
            now = timezone.now()  # after the wait for another issue, if there was one
            wait = self.cooldown_left(now)
            if wait:
                raise ResendCooldown(wait)
            if within_budget is not None and not within_budget():
                raise SendBudgetSpent
            self._codes().filter(used_at__isnull=True, voided_at__isnull=True).update(
                voided_at=now
            )
            code = generate_code()
            record = VerificationCode.objects.create(
                flow_id=self.flow_id,
                purpose=self.purpose,
                channel=channel,
                destination=destination,
                code_hash="" if withhold else self._hash(code, channel, destination),
                created_at=now,
                expires_at=now + self.lifetime,
            )
        return IssuedCode(record, code)

    def _one_issue_at_a_time(self) -> None:
        """Serialize issue() per flow and purpose until the transaction ends, so the
        cooldown sees the code a concurrent issue() just wrote. Without it, Send clicked
        five times at once passed the cooldown five times and sent five codes (five paid
        texts on SMS; found by the attacker review of session 12). There may be no code
        row yet to lock, so PostgreSQL takes a transaction-scoped advisory lock on the
        (flow, purpose) pair; SQLite's IMMEDIATE transactions (settings.py) already let
        one writer in at a time."""
        connection = connections[router.db_for_write(VerificationCode)]
        if connection.vendor != "postgresql":
            return
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                [f"caregate.verification.issue|{self.flow_id}|{self.purpose}"],
            )

    def check(self, code: str, *, channel: str, destination: str) -> CheckResult:
        """Check a code typed by the user; a correct one is consumed.

        Only the newest code of this flow and purpose counts, and only if it was sent by
        ``channel`` to ``destination``: when the newest code went to a call (or to another
        number or address), no typed code is accepted at all.

        Without a savepoint: a caller's transaction around it (the stage that records the
        outcome in the audit log) commits the code's use and the event together.
        """
        with transaction.atomic(savepoint=False):
            record = self._codes().select_for_update().order_by("-id").first()
            if record is None or record.channel != channel:
                return CheckResult(CodeStatus.MISSING)
            if not constant_time_compare(record.destination, destination):
                return CheckResult(CodeStatus.MISSING)
            return self._check_record(record, code)

    def check_issued(
        self, record_id: int | None, code: str, *, channel: str, destination: str
    ) -> CheckResult:
        """Check ``code`` against one issued code only (the one a call was placed with)."""
        with transaction.atomic(savepoint=False):
            record = (
                self._codes()
                .select_for_update()
                .filter(pk=record_id, channel=channel, destination=destination)
                .first()
                if record_id is not None
                else None
            )
            if record is None:
                return CheckResult(CodeStatus.MISSING)
            return self._check_record(record, code)

    def _check_record(self, record: VerificationCode, code: str) -> CheckResult:
        """Attempts, expiry and single use for one locked code row (inside a transaction)."""
        now = timezone.now()
        if record.used_at is not None:
            return CheckResult(CodeStatus.USED)
        if record.voided_at is not None:
            return CheckResult(CodeStatus.LOCKED)
        if now >= record.expires_at:
            return CheckResult(CodeStatus.EXPIRED)
        if constant_time_compare(
            self._hash(code, record.channel, record.destination), record.code_hash
        ):
            record.used_at = now
            record.save(update_fields=["used_at"])
            return CheckResult(CodeStatus.OK)
        record.attempts += 1
        left = self.max_attempts - record.attempts
        if left <= 0:
            record.voided_at = now
        record.save(update_fields=["attempts", "voided_at"])
        if left <= 0:
            return CheckResult(CodeStatus.LOCKED)
        return CheckResult(CodeStatus.WRONG, attempts_left=left)

    def discard(self) -> None:
        """Void every live code of this flow and purpose (the user changed destination)."""
        self._codes().filter(used_at__isnull=True, voided_at__isnull=True).update(
            voided_at=timezone.now()
        )
