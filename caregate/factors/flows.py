"""Setup → My Account: Set up authenticator app, Create new recovery codes.

Both begin, as Change phone number does, by proving the second factor on record again
(CurrentFactor: a code to the phone or email on record). A signed-in session alone is not
enough: a session left open, or taken over, must not be able to add a factor that would
let its holder sign in later (an app, or recovery codes it reads off the page).
"""

from __future__ import annotations

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from caregate.factors import crypto, notices, recovery, totp
from caregate.factors.models import AuthenticatorApp
from caregate.factors.stages import AuthenticatorSetup
from caregate.flows.change_phone import (
    MY_ACCOUNT,
    AccountFlow,
    CurrentFactor,
    owner,
    refuse,
    start_data,
)
from caregate.flows.engine import FlowState

ADD_APP = "add-authenticator"
NEW_CODES = "new-recovery-codes"
ALREADY_HAVE_APP = (
    "Your account already has an authenticator app. Remove it first to set up another one."
)
APP_ADDED = "Your authenticator app is set up. After your password, select Try another way."


def add_app_data(user: object) -> dict:
    """What Set up authenticator app starts with: the account, and a new secret."""
    return {**start_data(user), "pending_secret": crypto.encrypt(totp.new_secret())}


def finish_add_app(request: HttpRequest, state: FlowState) -> HttpResponse:
    user, why = owner(request, state)
    if user is None:
        return refuse(request, ADD_APP, why)
    try:
        with transaction.atomic():
            AuthenticatorApp.objects.create(
                user=user,
                secret=state.data["pending_secret"],
                last_used_step=int(state.data["app_step"]),
            )
            notices.authenticator_added(request, user, ADD_APP)
    except IntegrityError:  # another session of this user set one up meanwhile
        messages.error(request, ALREADY_HAVE_APP)
        return redirect(MY_ACCOUNT)
    offer = recovery.offer_after_enrolment(request, user)
    messages.success(request, APP_ADDED)
    return redirect(offer or MY_ACCOUNT)


def show_codes(request: HttpRequest, codes: list[str], *, replaced: bool) -> HttpResponse:
    """The one page that shows the codes; never cached, never shown again."""
    response = render(
        request,
        "factors/recovery_codes.html",
        {"codes": codes, "replaced": replaced, "active": "SETUP"},
    )
    response["Cache-Control"] = "no-store"
    return response


def finish_new_codes(request: HttpRequest, state: FlowState) -> HttpResponse:
    user, why = owner(request, state)
    if user is None:
        return refuse(request, NEW_CODES, why)
    replaced = recovery.enrolled(user)
    codes = recovery.generate(user)
    notices.recovery_codes_created(request, user, NEW_CODES, replaced)
    return show_codes(request, codes, replaced=replaced)


ADD_AUTHENTICATOR = AccountFlow(
    ADD_APP,
    title="Set up authenticator app",
    stages=[
        CurrentFactor(
            purpose=ADD_APP,
            phone_intro=(
                "To set up an authenticator app, first verify the number we have on record "
                "for you. We can send a code via SMS or phone."
            ),
            email_intro=(
                "To set up an authenticator app, first verify your email address. "
                "Please click Send button."
            ),
        ),
        AuthenticatorSetup(),
    ],
    on_done=finish_add_app,
    start_url=MY_ACCOUNT,
)

NEW_RECOVERY_CODES = AccountFlow(
    NEW_CODES,
    title="Create new recovery codes",
    stages=[
        CurrentFactor(
            purpose=NEW_CODES,
            phone_intro=(
                "To create new recovery codes, first verify the number we have on record "
                "for you. We can send a code via SMS or phone."
            ),
            email_intro=(
                "To create new recovery codes, first verify your email address. "
                "Please click Send button."
            ),
        ),
    ],
    on_done=finish_new_codes,
    start_url=MY_ACCOUNT,
)

FACTOR_FLOWS = [ADD_AUTHENTICATOR, NEW_RECOVERY_CODES]
