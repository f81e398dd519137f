"""Setup → My Account → Passkeys → Add a passkey: the second factor on record first.

A passkey is the password and the second factor in one, so adding one asks, as Set up
authenticator app does (caregate/factors/flows.py), for a code to the phone or email on
record: a session alone (a clinic PC left signed in, a stolen cookie) must not be able to
add a way in that outlives it. Passing that step gives this session a ticket, kept in the
cache (not in the session, which a concurrent request could write back), for one passkey
within CAREGATE_PASSKEY_REAUTH_SECONDS. The ticket holds the proof (what was verified,
and the factors the account had), and is good only while that proof would still count for
a My Account change: a factor removed or replaced in those minutes (the user reacting to
a stolen phone, app or passkey), or a policy that no longer counts it, voids it. It is
used up before the passkey is registered, so one proof adds one passkey.
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from caregate.accounts.models import User
from caregate.flows.change_phone import (
    MY_ACCOUNT,
    AccountFlow,
    CurrentFactor,
    owner,
    owner_of_proof,
    proof_of,
    refuse,
)
from caregate.flows.engine import FlowState

NAME = "add-passkey"


def _ticket_key(request: HttpRequest) -> str:
    return f"caregate:passkeys:add-ticket:{request.session.session_key}"


def ticket_seconds() -> int:
    return int(settings.CAREGATE_PASSKEY_REAUTH_SECONDS)


def grant_ticket(request: HttpRequest, user: User, proof: dict[str, Any]) -> None:
    ticket = {"user": user.pk, "proof": proof, "until": time.time() + ticket_seconds()}
    cache.set(_ticket_key(request), ticket, ticket_seconds())


def _valid(request: HttpRequest, ticket: object) -> bool:
    """For the signed-in user, unexpired, and its proof still counts as My Account's
    changes check theirs at the end (owner_of_proof): the same user, the factors it was
    proved with unchanged, and where the policy no longer counts the account's own factor,
    the very passkey or app that was proved still the account's strongest. A factor removed
    or replaced in those minutes, or a policy switched on, voids it (the attacker review
    of session 13c)."""
    if not isinstance(ticket, dict) or ticket.get("user") != request.user.pk:
        return False
    until, proof = ticket.get("until"), ticket.get("proof")
    if not isinstance(until, float) or time.time() >= until or not isinstance(proof, dict):
        return False
    return owner_of_proof(request, proof)[0] is not None


def has_ticket(request: HttpRequest) -> bool:
    """This session proved the current factor for the signed-in user, lately, and the
    proof still counts."""
    if not request.session.session_key:
        return False
    return _valid(request, cache.get(_ticket_key(request)))


def take_ticket(request: HttpRequest) -> dict[str, Any] | None:
    """Use the ticket up before a passkey is registered, or None if there is none: the
    delete is one Redis command, so of two concurrent registrations one gets it."""
    if not request.session.session_key:
        return None
    key = _ticket_key(request)
    ticket = cache.get(key)
    if not _valid(request, ticket) or not cache.delete(key):
        return None
    return ticket


def give_back(request: HttpRequest, ticket: dict[str, Any]) -> None:
    """A refused registration returns the ticket, for what is left of its time only."""
    left = int(ticket["until"] - time.time())
    if left > 0:
        cache.add(_ticket_key(request), ticket, left)


def finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    user, why = owner(request, state)
    if user is None:
        return refuse(request, NAME, why)
    grant_ticket(request, user, proof_of(state))
    return redirect("passkeys:add")


ADD_PASSKEY = AccountFlow(
    NAME,
    title="Add a passkey",
    stages=[
        CurrentFactor(
            purpose=NAME,
            phone_intro=(
                "To add a passkey, first verify the number we have on record for you. "
                "We can send a code via SMS or phone."
            ),
            email_intro=(
                "To add a passkey, first verify your email address. Please click Send button."
            ),
        ),
    ],
    on_done=finish,
    start_url=MY_ACCOUNT,
)
