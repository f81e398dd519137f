"""Device cookies: a stranger's guesses cannot lock a user out of the browser they use.

OWASP's "Slow Down Online Guessing Attacks with Device Cookies". The sign-in budget of an
account (``signin:account``, 10 attempts in 15 minutes from anywhere) stops distributed
guessing, and so lets anyone who knows an email or a username keep that account's sign-in
paused. A browser where the account has completed a sign-in (password and second factor)
gets a signed cookie naming the account and a random nonce; a password attempt for that
account from that browser counts against the nonce's own budget (``signin:device``)
instead of the account's and the typed identity's. Guesses from anywhere else still use
up only the account's budget: the owner's browser keeps its own.

The cookie opens nothing: it holds no secret of the account, skips no step, and only
decides which budget an attempt counts against. It is signed with the secret key
(django.core.signing), so it cannot be made for another account; each entry has its own
age limit, and a mark of the account's security state (the Remember Me fingerprint: a
password reset, a new MFA registration or phone, a disabled account end every entry, as
they end remembered browsers). All of an account's browsers together have one budget
more (``signin:account-devices``): whoever minted entries with a stolen Remember Me token
gets no more guesses from them than that. One cookie holds the last few accounts signed
in on the browser (a shared office PC).
"""

from __future__ import annotations

import secrets
import time

from django.conf import settings
from django.core import signing
from django.http import HttpRequest, HttpResponse
from django.utils.crypto import constant_time_compare, salted_hmac

from caregate.accounts.models import User
from caregate.verification.remember import fingerprint

SALT = "caregate.security.devices"
MAX_ACCOUNTS = 5  # entries per browser; the oldest goes first
MAX_COOKIE_CHARS = 2048  # anything longer is not ours


def _mark(user: User) -> str:
    """A short digest of the account's security state (not the fingerprint itself)."""
    return salted_hmac(SALT, fingerprint(user), algorithm="sha256").hexdigest()[:20]


def _entries(request: HttpRequest) -> list[tuple[int, str, int, str]]:
    """(account id, nonce, issued at, mark) of the request's device cookie, each still
    young enough; [] for no cookie, a bad signature or a malformed value."""
    raw = request.COOKIES.get(settings.CAREGATE_DEVICE_COOKIE, "")
    if not raw or len(raw) > MAX_COOKIE_CHARS:
        return []
    try:
        value = signing.loads(raw, salt=SALT)
    except (signing.BadSignature, ValueError):
        return []
    oldest = time.time() - settings.CAREGATE_DEVICE_COOKIE_SECONDS
    entries = []
    for item in value if isinstance(value, list) else []:
        if (
            isinstance(item, list)
            and len(item) == 4
            and all(isinstance(part, int) for part in (item[0], item[2]))
            and all(isinstance(part, str) for part in (item[1], item[3]))
            and item[2] >= oldest
        ):
            entries.append((item[0], item[1], item[2], item[3]))
    return entries[-MAX_ACCOUNTS:]


def nonce_for(request: HttpRequest | None, user: User | None) -> str:
    """The nonce this browser holds for ``user``'s account, or "" (untrusted)."""
    if request is None or user is None:
        return ""
    entry = next((e for e in _entries(request) if e[0] == user.pk), None)
    if entry is None or not constant_time_compare(entry[3], _mark(user)):
        return ""  # none, or from before a password reset, new registration, disable...
    return entry[1]


def remember_device(request: HttpRequest, response: HttpResponse, user: User) -> None:
    """After a completed sign-in: this browser now has ``user``'s entry (a fresh nonce)."""
    kept = [list(entry) for entry in _entries(request) if entry[0] != user.pk]
    kept.append([user.pk, secrets.token_urlsafe(16), int(time.time()), _mark(user)])
    response.set_cookie(
        settings.CAREGATE_DEVICE_COOKIE,
        signing.dumps(kept[-MAX_ACCOUNTS:], salt=SALT, compress=True),
        max_age=settings.CAREGATE_DEVICE_COOKIE_SECONDS,
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
