"""Section 5, Remember Me: skip credentials and MFA on this browser for four hours.

The cookie is a browser-session cookie (no expiry of its own: it lives as long as the
browser keeps its session, as the guide says); the four hours are enforced here, on the
server, from the sign-in that set it (absolute, not sliding). Only a SHA-256 of the random
token is stored, and the row is bound to the user's security state by ``fingerprint``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from caregate.accounts.models import User
from caregate.flows import keys
from caregate.security.client import client_ip
from caregate.verification.models import RememberedBrowser


def fingerprint(user: User) -> str:
    """A digest of everything whose change must void a remembered browser."""
    state = "|".join(
        [
            str(user.pk),
            user.password,  # a password change (or reset) voids it
            user.mfa_method,  # a new or reset MFA registration voids it
            user.phone_number,
            str(user.mfa_registered_at.timestamp() if user.mfa_registered_at else ""),
            str(user.is_active),  # a disabled account voids it
        ]
    )
    return salted_hmac("caregate.remember", state, algorithm="sha256").hexdigest()


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _token(request: HttpRequest) -> str:
    return request.COOKIES.get(settings.CAREGATE_REMEMBER_COOKIE, "")[:100]


def remember(
    request: HttpRequest, response: HttpResponse, user: User, method: str
) -> RememberedBrowser:
    """Remember this browser for ``method`` (phone or email), replacing any earlier token."""
    old = _token(request)
    if old:
        RememberedBrowser.objects.filter(token_hash=_hash(old)).delete()
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    entry = RememberedBrowser.objects.create(
        user=user,
        method=method,
        token_hash=_hash(token),
        fingerprint=fingerprint(user),
        client_ip=client_ip(request),
        user_agent=request.headers.get("User-Agent", "")[:512],
        created_at=now,
        expires_at=now + timedelta(seconds=settings.CAREGATE_REMEMBER_ME_SECONDS),
    )
    response.set_cookie(
        settings.CAREGATE_REMEMBER_COOKIE,
        token,
        max_age=None,  # a browser-session cookie: no expiry date of its own
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Lax",
    )
    return entry


def _valid(entry: RememberedBrowser | None) -> tuple[RememberedBrowser | None, str]:
    """(entry, "") while ``entry`` may still sign its user in, else (None, reason).

    A token past its four hours or whose account changed is deleted on sight, so it can
    never come back (re-enabling an account does not revive it).
    """
    if entry is None:
        return None, "unknown"
    if timezone.now() >= entry.expires_at:
        entry.delete()
        return None, "expired"
    user = entry.user
    if not user.is_active or not constant_time_compare(entry.fingerprint, fingerprint(user)):
        entry.delete()
        return None, "security-state-changed"
    return entry, ""


def _lookup(token_hash: str) -> RememberedBrowser | None:
    return RememberedBrowser.objects.select_related("user").filter(token_hash=token_hash).first()


def recall(request: HttpRequest, method: str) -> tuple[RememberedBrowser | None, str]:
    """Return (entry, "") for a valid remembered browser of ``method``, else (None, reason)."""
    token = _token(request)
    if not token:
        return None, "no-cookie"
    entry = _lookup(_hash(token))
    if entry is not None and entry.method != method:
        return None, "other-method"
    return _valid(entry)


def is_remembered(request: HttpRequest) -> bool:
    """Whether this browser holds a token the server would honour (for either button)."""
    token = _token(request)
    return bool(token) and _valid(_lookup(_hash(token)))[0] is not None


def clear_stale_cookie(request: HttpRequest, response: HttpResponse) -> None:
    """Drop a cookie whose token the server no longer honours (expired, voided, unknown)."""
    if request.COOKIES.get(settings.CAREGATE_REMEMBER_COOKIE) is not None:
        response.delete_cookie(settings.CAREGATE_REMEMBER_COOKIE, samesite="Lax")


def bind_session(request: HttpRequest, entry: RememberedBrowser) -> None:
    """Tie the session to the token it was created from: it ends when the token ends."""
    request.session[keys.REMEMBERED_BY] = entry.token_hash
    request.session[keys.REMEMBER_UNTIL] = int(entry.expires_at.timestamp())


def note_token(request: HttpRequest, entry: RememberedBrowser) -> None:
    """Record the token set at a full sign-in, so Sign out can void it without the cookie."""
    request.session[keys.REMEMBER_SET] = entry.token_hash


def session_token_valid(request: HttpRequest) -> bool:
    """For a session created from a token: the token still exists, is current and is the
    signed-in user's (deleted at Sign out, voided by an account change, or expired)."""
    entry, _ = _valid(_lookup(request.session.get(keys.REMEMBERED_BY, "")))
    return entry is not None and entry.user_id == request.user.pk


def forget(request: HttpRequest, response: HttpResponse) -> None:
    """Turn the feature off for this browser (Remember Me unchecked, or Sign out).

    Deletes the token the cookie names and any token this session was created from or set
    (a cookie removed meanwhile must not leave a live token behind), then the cookie.
    """
    hashes = {request.session.get(keys.REMEMBERED_BY), request.session.get(keys.REMEMBER_SET)}
    token = _token(request)
    if token:
        hashes.add(_hash(token))
    hashes.discard(None)
    hashes.discard("")
    if hashes:
        RememberedBrowser.objects.filter(token_hash__in=hashes).delete()
    if request.COOKIES.get(settings.CAREGATE_REMEMBER_COOKIE) is not None:
        response.delete_cookie(settings.CAREGATE_REMEMBER_COOKIE, samesite="Lax")
