"""The passkey stage: a WebAuthn authentication ceremony as one flow screen.

Two uses. As the second factor after the password (``discoverable=False``): the browser
is asked for one of the flow user's own passkeys (allowCredentials), and a passkey of
anyone else is refused. As LOGIN WITH PASSKEY (``discoverable=True``): no username was
typed, the browser offers its discoverable credentials, and the credential's user handle
names the account.

Each showing of the page issues a fresh challenge, bound to this flow instance (and to
the flow's user, as a second factor); its id is kept in the stage's own state. The POST
uses it up before anything is verified (see caregate/passkeys/ceremony.py), so each
challenge gets one try and a replayed or concurrent second POST is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.http import HttpRequest

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.flows.engine import Advance, FlowState, Render, Restart, Result
from caregate.flows.signin import active_user
from caregate.passkeys import ceremony
from caregate.passkeys.models import PasskeyChallenge

REFUSED = "That passkey could not be used to sign in. Please try again, or use another way."
NO_RESPONSE = (
    "Your browser did not send a passkey. Select the button again and follow your "
    "browser's steps; if your browser has no passkeys, use another way to sign in."
)
CLONED = (
    "This passkey was refused: its security counter went back, which can mean it was "
    "copied. Please use another way to sign in, remove this passkey under Setup → My "
    "Account and call the help desk."
)


@dataclass(frozen=True)
class PasskeyAssertion:
    discoverable: bool = False
    heading: str = "Sign in with a passkey"
    key: str = "passkey"
    template: str = "passkeys/assert.html"

    @property
    def purpose(self) -> str:
        return (
            PasskeyChallenge.Purpose.LOGIN
            if self.discoverable
            else PasskeyChallenge.Purpose.SECOND_FACTOR
        )

    def _user(self, state: FlowState) -> User | None:
        return None if self.discoverable else active_user(state.data.get("user_id"))

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        user = self._user(state)
        if not self.discoverable and user is None:
            return Restart("Please sign in again.")
        own = state.stage(self.key)
        if request.method != "POST" or request.POST.get("action") != "verify":
            return self._render(state, own, user)
        pointer = own.pop("challenge", None)
        try:
            # Used up in its own statement, committed whatever follows: a refused response
            # must not give the challenge back for another try.
            challenge = ceremony.consume_challenge(
                pointer, self.purpose, user_id=user.pk if user else None, flow_instance=state.id
            )
            # The counter's update and the audit event are written together, or neither.
            with transaction.atomic():
                assertion = ceremony.authenticate(
                    request.POST.get("credential", ""), challenge, user
                )
                self._audit(request, state, "success", assertion.user, assertion.passkey.pk)
        except ceremony.Refused as refusal:
            return self._refused(request, state, own, user, refusal, pointer)
        return Advance(
            {
                "user_id": assertion.user.pk,
                "username": assertion.user.username,
                "second_factor": "passkey",
                "passkey_id": assertion.passkey.pk,
            }
        )

    def _refused(
        self,
        request: HttpRequest,
        state: FlowState,
        own: dict[str, Any],
        user: User | None,
        refusal: ceremony.Refused,
        pointer: object,
    ) -> Render:
        owner = refusal.passkey.user if refusal.passkey is not None else user
        passkey_id = refusal.passkey.pk if refusal.passkey is not None else None
        self._audit(request, state, "refused", owner, passkey_id, reason=refusal.reason)
        if refusal.reason == "no-response":
            error = NO_RESPONSE
        elif refusal.reason == "cloned-authenticator":
            error = CLONED
        else:
            error = REFUSED
        return self._render(state, own, user, error=error, replaces=pointer)

    def _audit(
        self,
        request: HttpRequest,
        state: FlowState,
        outcome: str,
        user: User | None,
        passkey_id: int | None,
        **detail: str,
    ) -> None:
        record(
            "passkey.verify",
            outcome,
            request=request,
            user=user,
            flow=state.raw["flow"],
            passkey_id=passkey_id,
            mode="login" if self.discoverable else "second-factor",
            **detail,
        )

    def _render(
        self,
        state: FlowState,
        own: dict[str, Any],
        user: User | None,
        *,
        error: str = "",
        replaces: object = None,
    ) -> Render:
        # The challenge this page showed before (or the one a refused try used up) goes.
        issued = ceremony.issue_challenge(
            self.purpose,
            user_id=user.pk if user else None,
            flow_instance=state.id,
            replaces=replaces or own.get("challenge"),
        )
        own["challenge"] = issued.pk
        options = ceremony.authentication_options(bytes(issued.challenge), user)
        return Render(
            {
                "heading": self.heading,
                "discoverable": self.discoverable,
                "options": json.loads(options),
                "error": error,
            }
        )
