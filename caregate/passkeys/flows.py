"""Setup → My Account → Passkeys → Add a passkey: the second factor on record first.

A passkey is the password and the second factor in one, so adding one asks, as Set up
authenticator app does (caregate/factors/flows.py), for a code to the phone or email on
record: a session alone (a clinic PC left signed in, a stolen cookie) must not be able to
add a way in that outlives it. Passing that step gives this session a ticket, kept in the
cache (not in the session, which a concurrent request could write back), for one passkey
within CAREGATE_PASSKEY_REAUTH_SECONDS. The ticket holds the account's factors as they
were when it was granted, and is good only while they are the same: a factor removed or
changed in those minutes (the user reacting to a stolen phone or app) voids it.
"""

from __future__ import annotations

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from caregate.accounts.models import User
from caregate.factors import registry
from caregate.flows.change_phone import MY_ACCOUNT, AccountFlow, CurrentFactor, owner, refuse
from caregate.flows.engine import FlowState

NAME = "add-passkey"


def _ticket_key(request: HttpRequest) -> str:
    return f"caregate:passkeys:add-ticket:{request.session.session_key}"


def ticket_seconds() -> int:
    return int(settings.CAREGATE_PASSKEY_REAUTH_SECONDS)


PASSKEY = "passkey"  # the factor the ticket adds: not part of what the proof stood on


def factors_now(user: User) -> list[str]:
    """What a proof of the current factor stood on: the account's own factor (method,
    number, address, registration) and its other enrolled factors, by key."""
    others = sorted(
        factor.key
        for factor in registry.registered()
        if factor.key != PASSKEY and factor.enrolled(user)
    )
    registered = user.mfa_registered_at.isoformat() if user.mfa_registered_at else ""
    own = [str(user.usable_mfa_method), user.phone_number, user.email.lower(), registered]
    return [*own, *others]


def grant_ticket(request: HttpRequest, user: User) -> None:
    ticket = {"user": user.pk, "factors": factors_now(user)}
    cache.set(_ticket_key(request), ticket, ticket_seconds())


def has_ticket(request: HttpRequest) -> bool:
    """This session proved the current factor for the signed-in user, lately, and the
    account's factors are still those it proved."""
    if not request.session.session_key:
        return False
    ticket = cache.get(_ticket_key(request))
    return (
        isinstance(ticket, dict)
        and ticket.get("user") == request.user.pk
        and ticket.get("factors") == factors_now(request.user)
    )


def use_ticket(request: HttpRequest) -> None:
    cache.delete(_ticket_key(request))


def finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    user, why = owner(request, state)
    if user is None:
        return refuse(request, NAME, why)
    grant_ticket(request, user)
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
