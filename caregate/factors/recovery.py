"""Recovery codes: single-use codes for when no other factor is at hand.

Storage: a keyed HMAC-SHA256 (Django's salted_hmac with SECRET_KEY, bound to the user), not
a password hasher. A code is ~50 random bits from ``secrets`` (10 characters of a
31-letter alphabet), not a human-chosen password, so a slow hash adds nothing against
guessing; the key means a copy of the database alone cannot check guesses offline. And a
deterministic hash can be looked up, so using a code is one conditional UPDATE (``used_at IS
NULL``): two requests with the same code at once, exactly one of them signs in.
"""

from __future__ import annotations

import secrets
import time

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac

from caregate import rowsql
from caregate.accounts.models import User
from caregate.factors import registry
from caregate.factors.models import RecoveryCode

ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper
CODE_CHARS = 10
_SALT = "caregate.factors.recovery-code"
OFFER_KEY = "caregate.factors.recovery_offer"  # session: {"user": id, "until": epoch}
OFFER_SECONDS = 600
KEY = "recovery-code"


def count() -> int:
    return int(getattr(settings, "CAREGATE_RECOVERY_CODE_COUNT", 10))


def normalize(code: str) -> str:
    """What the user typed, as stored: case, spaces and dashes do not matter."""
    return "".join(ch for ch in code.lower() if ch not in " -\t")[:64]


def _hashes(user_id: int, code: str) -> list[str]:
    # Every key that may have made the stored hash: SECRET_KEY, then its fallbacks.
    value = f"{user_id}:{normalize(code)}"
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [salted_hmac(_SALT, value, secret=key, algorithm="sha256").hexdigest() for key in keys]


def _new_code() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(CODE_CHARS))
    return f"{raw[:5]}-{raw[5:]}"


def generate(user: User) -> list[str]:
    """A new set of codes for ``user``; every earlier code is voided. Returns the plain
    codes, to show once: only their hashes are kept."""
    codes = [_new_code() for _ in range(count())]
    with transaction.atomic():
        # Lock the account row: two generations at once end with one set, not two.
        User.objects.select_for_update().filter(pk=user.pk).first()
        RecoveryCode.objects.filter(user=user).delete()
        RecoveryCode.objects.bulk_create(
            RecoveryCode(user=user, code_hash=_hashes(user.pk, code)[0]) for code in codes
        )
    return codes


def use(user_id: int, code: str) -> bool:
    """Use up one code of the user; False if it is wrong or already used."""
    if not normalize(code):
        return False
    used = RecoveryCode.objects.filter(
        user_id=user_id, code_hash__in=_hashes(user_id, code), used_at__isnull=True
    ).update(used_at=timezone.now())
    return used > 0


def remaining(user: object) -> int:
    return RecoveryCode.objects.filter(
        user_id=getattr(user, "pk", None), used_at__isnull=True
    ).count()


def enrolled(user: object) -> bool:
    # Asked at every password step (for "Try another way"): SQL written once, see rowsql.
    where = {"user": getattr(user, "pk", None), "used_at is null": None}
    return rowsql.exists(RecoveryCode, where)


def offer_after_enrolment(request: HttpRequest, user: User) -> str | None:
    """After a new factor (authenticator app, passkey): the URL of the page that shows the
    user a first set of recovery codes, or None if they have codes already (or the
    deployment does not allow them). The page generates them only for this session's
    user, within OFFER_SECONDS, once."""
    if not registry.allowed(KEY) or enrolled(user):
        return None
    request.session[OFFER_KEY] = {"user": user.pk, "until": int(time.time()) + OFFER_SECONDS}
    return reverse("factors:recovery-offer")


def take_offer(request: HttpRequest, user: User) -> bool:
    """Use up this session's offer; True if it was this user's and still open."""
    offer = request.session.pop(OFFER_KEY, None)
    return (
        isinstance(offer, dict)
        and offer.get("user") == user.pk
        and int(offer.get("until", 0)) > time.time()
    )


def has_offer(request: HttpRequest, user: User) -> bool:
    offer = request.session.get(OFFER_KEY)
    return (
        isinstance(offer, dict)
        and offer.get("user") == user.pk
        and int(offer.get("until", 0)) > time.time()
    )
