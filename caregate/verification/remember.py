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


def remember(request: HttpRequest, response: HttpResponse, user: User, method: str) -> None:
    """Remember this browser for ``method`` (phone or email), replacing any earlier token."""
    old = _token(request)
    if old:
        RememberedBrowser.objects.filter(token_hash=_hash(old)).delete()
    token = secrets.token_urlsafe(32)
    now = timezone.now()
    RememberedBrowser.objects.create(
        user=user,
        method=method,
        token_hash=_hash(token),
        fingerprint=fingerprint(user),
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


def recall(request: HttpRequest, method: str) -> tuple[User | None, str]:
    """Return (user, "") for a valid remembered browser of ``method``, else (None, reason)."""
    token = _token(request)
    if not token:
        return None, "no-cookie"
    entry = (
        RememberedBrowser.objects.select_related("user").filter(token_hash=_hash(token)).first()
    )
    if entry is None:
        return None, "unknown"
    if entry.method != method:
        return None, "other-method"
    if timezone.now() >= entry.expires_at:
        entry.delete()
        return None, "expired"
    user = entry.user
    if not user.is_active or not constant_time_compare(entry.fingerprint, fingerprint(user)):
        entry.delete()
        return None, "security-state-changed"
    return user, ""


def forget(request: HttpRequest, response: HttpResponse) -> None:
    """Turn the feature off for this browser (Remember Me unchecked)."""
    token = _token(request)
    if token:
        RememberedBrowser.objects.filter(token_hash=_hash(token)).delete()
        response.delete_cookie(settings.CAREGATE_REMEMBER_COOKIE, samesite="Lax")
