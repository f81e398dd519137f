"""The authenticator app (TOTP, RFC 6238) with pyotp: 30-second steps, ±1 step of drift,
each code accepted once.

Once means once per account: the step of the last accepted code is stored, and a code is
accepted only by a compare-and-set UPDATE that moves it forward (``last_used_step <
step``). Two requests with the same code at the same moment both find the code right, but
only one of them moves the step; the other updates nothing and is refused, as is any
later replay, and any code of an earlier step than one already used.
"""

from __future__ import annotations

import time
from enum import Enum

import pyotp
import segno
from django.conf import settings
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from caregate import rowsql
from caregate.factors import crypto
from caregate.factors.models import AuthenticatorApp

STEP_SECONDS = 30
DRIFT_STEPS = 1  # a phone clock up to 30 seconds off, and a code typed as it changes
DIGITS = 6


class TotpOutcome(Enum):
    OK = "ok"
    WRONG = "wrong"
    REPLAYED = "replayed"  # right code, but its step (or a later one) was already used
    MISSING = "missing"  # no authenticator app (removed meanwhile)
    UNREADABLE = "unreadable"  # its secret's key was retired: the app must be set up again


def new_secret() -> str:
    """160 random bits, base32 (what authenticator apps expect)."""
    return pyotp.random_base32(length=32)


def current_step(now: float | None = None) -> int:
    return int((time.time() if now is None else now) // STEP_SECONDS)


def code_at(secret: str, step: int) -> str:
    """The code an app shows during ``step`` (for tests and for matching)."""
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).generate_otp(step)


def matching_step(secret: str, code: str, now: float | None = None) -> int | None:
    """The step (now ±1) whose code is ``code``, or None."""
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    here = current_step(now)
    found = None
    for step in range(here - DRIFT_STEPS, here + DRIFT_STEPS + 1):
        # Every candidate is compared (no early exit), each in constant time.
        if constant_time_compare(code_at(secret, step), code):
            found = step
    return found


def provisioning_uri(secret: str, account_name: str) -> str:
    issuer = getattr(settings, "CAREGATE_TOTP_ISSUER", "") or settings.CAREGATE_PORTAL_NAME
    return pyotp.TOTP(secret, digits=DIGITS, interval=STEP_SECONDS).provisioning_uri(
        name=account_name, issuer_name=issuer
    )


def qr_data_uri(uri: str) -> str:
    """The QR code as an SVG data: URI, drawn here (no third-party image service; the
    Content-Security-Policy allows img-src data:)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=4)


def grouped(secret: str) -> str:
    """The secret as people type it from the page: groups of four."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def verify(user_id: int, code: str, now: float | None = None) -> TotpOutcome:
    """Check a code of the user's app and, if right and unused, use it up."""
    app = AuthenticatorApp.objects.filter(user_id=user_id).first()
    if app is None:
        return TotpOutcome.MISSING
    try:
        step = matching_step(crypto.decrypt(app.secret), code, now)
    except crypto.SecretUnreadable:
        # Encrypted with a key no longer configured: no code can match; never a 500.
        return TotpOutcome.UNREADABLE
    if step is None:
        return TotpOutcome.WRONG
    changes: dict[str, object] = {"last_used_step": step, "last_used_at": timezone.now()}
    if crypto.needs_rotation(app.secret):
        # Under a retired key (SECRET_KEY_FALLBACKS): stored again under the current one,
        # in the same compare-and-set, so the retired key can then be dropped.
        changes["secret"] = crypto.rotate(app.secret)
    moved = AuthenticatorApp.objects.filter(
        pk=app.pk, last_used_step__lt=step, secret=app.secret
    ).update(**changes)
    return TotpOutcome.OK if moved else TotpOutcome.REPLAYED


def enrolled(user: object) -> bool:
    # Asked at every password step (for "Try another way"): SQL written once, see rowsql.
    return rowsql.exists(AuthenticatorApp, {"user": getattr(user, "pk", None)})
