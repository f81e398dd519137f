"""The stages of the authenticator app and recovery codes.

At sign-in (behind "Try another way", caregate/flows/stages/factor_choice.py):
``AuthenticatorCode`` and ``RecoveryCodeEntry`` verify a factor of the flow's user and
Advance, as EmailCode does. In My Account: ``AuthenticatorSetup`` shows a new secret (QR
code and text) and takes a current code of it before the app counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.http import HttpRequest

from caregate.accounts.models import User
from caregate.factors import crypto, limits, notices, recovery, totp
from caregate.factors.forms import AppCodeForm, RecoveryCodeForm
from caregate.flows.engine import Advance, FlowState, Render, Restart, Result
from caregate.flows.events import record_step

APP = "authenticator-app"
WRONG_APP_CODE = (
    "That code is not correct. Check that the time on your phone is right, then enter the "
    "code the app shows now."
)
USED_APP_CODE = (
    "That code was already used. Wait for the app to show a new code and enter that one."
)
NO_APP = "There is no authenticator app on your account any more. Please try another way."
UNREADABLE_APP = (
    "Your authenticator app must be set up again (Setup → My Account). Please try another way."
)
START_AGAIN = "Please start again from My Account."
WRONG_RECOVERY = "That recovery code is not correct, or it was already used."


def _throttled(request: HttpRequest, state: FlowState, channel: str) -> bool:
    if limits.attempt_allowed(request, int(state.data["user_id"])):
        return False
    record_step(request, state, "factor.verify", "throttled", channel=channel)
    return True


@dataclass(frozen=True)
class AuthenticatorCode:
    """Enter the 6-digit code of the user's authenticator app."""

    key: str = APP
    template: str = "factors/authenticator_code.html"

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        if request.method != "POST" or request.POST.get("action") != "verify":
            return Render({"form": AppCodeForm()})
        form = AppCodeForm(request.POST)
        if not form.is_valid():
            return Render({"form": form})
        if _throttled(request, state, APP):
            return Render({"form": AppCodeForm(), "error": limits.TOO_MANY})
        # The code is used up and its audit event written in one transaction.
        with transaction.atomic():
            outcome = totp.verify(int(state.data["user_id"]), form.cleaned_data["code"])
            record_step(request, state, "factor.verify", outcome.value, channel=APP)
        if outcome is totp.TotpOutcome.OK:
            return Advance({"factor_verified": APP})
        error = {
            totp.TotpOutcome.WRONG: WRONG_APP_CODE,
            totp.TotpOutcome.REPLAYED: USED_APP_CODE,
            totp.TotpOutcome.UNREADABLE: UNREADABLE_APP,
        }.get(outcome, NO_APP)
        return Render({"form": AppCodeForm(), "error": error})


@dataclass(frozen=True)
class RecoveryCodeEntry:
    """Enter one of the user's recovery codes; it is used up, and the user is told by
    email and in the Message Center how many are left."""

    key: str = recovery.KEY
    template: str = "factors/recovery_code.html"

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        if request.method != "POST" or request.POST.get("action") != "verify":
            return Render({"form": RecoveryCodeForm()})
        form = RecoveryCodeForm(request.POST)
        if not form.is_valid():
            return Render({"form": form})
        if _throttled(request, state, recovery.KEY):
            return Render({"form": RecoveryCodeForm(), "error": limits.TOO_MANY})
        user_id = int(state.data["user_id"])
        with transaction.atomic():
            used = recovery.use(user_id, form.cleaned_data["code"])
            record_step(
                request, state, "factor.verify", "ok" if used else "wrong", channel=recovery.KEY
            )
        if not used:
            return Render({"form": RecoveryCodeForm(), "error": WRONG_RECOVERY})
        user = User.objects.filter(pk=user_id).first()
        if user is not None:
            notices.recovery_code_used(user, recovery.remaining(user))
        return Advance({"factor_verified": recovery.KEY})


@dataclass(frozen=True)
class AuthenticatorSetup:
    """Scan the QR code (or type the key), then enter a current code of the new app.

    The new secret is made when the flow starts and kept in its state encrypted (the flow
    state is a database row too: ``state.data["pending_secret"]``); it becomes the
    account's app only once a code of it was right, and the step of that code is stored as
    used, so that code cannot sign in afterwards.
    """

    key: str = "set-up-app"
    template: str = "factors/authenticator_setup.html"

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        try:
            secret = crypto.decrypt(str(state.data.get("pending_secret", "")))
        except crypto.SecretUnreadable:  # not started by Set up authenticator app, or the
            return Restart(START_AGAIN)  # key changed meanwhile: a new secret is needed
        if request.method != "POST" or request.POST.get("action") != "verify":
            return self._render(state, secret, AppCodeForm())
        form = AppCodeForm(request.POST)
        if not form.is_valid():
            return self._render(state, secret, form)
        if _throttled(request, state, APP):
            return self._render(state, secret, AppCodeForm(), error=limits.TOO_MANY)
        step = totp.matching_step(secret, form.cleaned_data["code"])
        record_step(
            request, state, "factor.confirm", "ok" if step is not None else "wrong", channel=APP
        )
        if step is None:
            return self._render(state, secret, AppCodeForm(), error=WRONG_APP_CODE)
        return Advance({"app_step": step})

    def _render(
        self, state: FlowState, secret: str, form: AppCodeForm, *, error: str = ""
    ) -> Render:
        uri = totp.provisioning_uri(secret, str(state.data.get("username", "")))
        context: dict[str, Any] = {
            "form": form,
            "error": error,
            "qr_data_uri": totp.qr_data_uri(uri),
            "secret_text": totp.grouped(secret),
        }
        return Render(context)
