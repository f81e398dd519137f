"""The signed-in sessions of each user: registered at sign-in, ended on demand.

Django's session store cannot be searched by user, so every sign-in records its session
key here. Ending a session deletes it from the session store (the next request of that
browser is signed out) and forgets the row; this works with every session engine the
settings allow (db and cached_db).
"""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.http import HttpRequest

from caregate.accounts.models import SignedInSession, User
from caregate.security.client import client_ip


def _store(session_key: str):  # noqa: ANN202 - the configured engine's SessionStore
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)


def register(request: HttpRequest, user: User, method: str) -> None:
    """Record the session a sign-in just created (after login() rotated its key)."""
    if not request.session.session_key:
        request.session.save()
    entry = SignedInSession(
        session_key=request.session.session_key,
        user=user,
        method=method[:40],
        client_ip=client_ip(request),
        user_agent=request.headers.get("User-Agent", "")[:512],
    )
    # One INSERT ... ON CONFLICT DO UPDATE (update_or_create takes a savepoint, a locking
    # SELECT and the INSERT): the key is new at every sign-in, so it is nearly always an
    # insert, and a repeated register of one key still leaves one row.
    SignedInSession.objects.bulk_create(
        [entry],
        update_conflicts=True,
        unique_fields=["session_key"],
        update_fields=["user", "method", "client_ip", "user_agent"],
    )


def forget(request: HttpRequest) -> None:
    """Drop the row of the session being signed out (call before logout() flushes it)."""
    key = request.session.session_key
    if key:
        SignedInSession.objects.filter(session_key=key).delete()


def active_sessions(user: User) -> list[SignedInSession]:
    """The user's sessions that still exist in the session store, newest first."""
    alive = []
    for entry in SignedInSession.objects.filter(user=user).order_by("-created_at"):
        if _store(entry.session_key).exists(entry.session_key):
            alive.append(entry)
        else:  # ended by time (idle or absolute logoff) or flushed: forget it
            entry.delete()
    return alive


def end_session(user: User, session_id: int) -> bool:
    """End one session of ``user`` (by its row id); False if it is not theirs."""
    entry = SignedInSession.objects.filter(user=user, pk=session_id).first()
    if entry is None:
        return False
    _store(entry.session_key).delete()
    entry.delete()
    return True


def end_sessions(user: User, *, keep: str | None = None) -> int:
    """End every session of ``user`` except the one keyed ``keep``; return how many."""
    ended = 0
    for entry in SignedInSession.objects.filter(user=user).exclude(session_key=keep or ""):
        _store(entry.session_key).delete()
        entry.delete()
        ended += 1
    return ended
