"""The login page's staff LOGIN: "Use this login button if you have a … domain account."

Staff sign in at the operator's identity provider through OpenID Connect (authorization
code flow with PKCE; caregate/staff/oidc.py). The attempt is a flow of one stage, so it
has what every Caregate flow has: its state (the ``state``, ``nonce`` and PKCE verifier)
in a server-side row bound to this browser's session, written by compare-and-set:

    LOGIN (a POST from the login page)  →  /staff-login/identity-provider/
        →  the identity provider (sign in there, with its MFA)
        →  back to /staff-login/identity-provider/?code=…&state=…
        →  the flow is finished (its row deleted) BEFORE the code is exchanged, so a
           replayed or concurrent callback finds nothing; then the ID token is verified,
           the staff account created or updated from its claims, and the session starts.

A callback whose ``state`` is not this browser's (login CSRF: an attacker's code planted
in a victim's browser) is refused. A provider that is down or answers nonsense gives a
page that says so, and an audit event, never a 500.
"""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_POST

from caregate.audit.log import record
from caregate.flows import keys
from caregate.flows.engine import Advance, Away, Flow, FlowState, Render, Restart, Result
from caregate.flows.signin import sign_in
from caregate.staff import oidc
from caregate.staff.identity import StaffRefused, staff_account

NAME = "staff-login"
METHOD = "staff-sso"
UNAVAILABLE = "staff/unavailable.html"
REFUSED = "staff/refused.html"

# What the staff member is told, by refusal. Never the token's contents.
REFUSALS = {
    "no-role": (
        "Your {brand} account does not give you access to this portal. Ask your manager "
        "or the IT help desk to add you to the right group."
    ),
    "no-mfa": (
        "Your sign-in at {brand} did not use multi-factor authentication, which this "
        "portal requires. Sign out of {brand} and sign in again with your second factor."
    ),
    "weak-mfa": (
        "Your sign-in at {brand} did not use a second factor this portal accepts for staff: "
        "it requires a phishing-resistant one, such as a security key or a passkey. Sign "
        "out of {brand} and sign in again with it; if you have none, contact the IT help "
        "desk."
    ),
    "no-email": "Your {brand} account has no email address. Please contact the IT help desk.",
    "email-unverified": (
        "{brand} has not verified the email address of your account. Please contact the "
        "IT help desk."
    ),
    "outside-domain": (
        "Only {brand} staff accounts can use this LOGIN button. Customer and provider "
        "users sign in with LOGIN WITH PHONE or LOGIN WITH EMAIL."
    ),
    "email-in-use": (
        "Your staff email address is already used by another portal account, so your "
        "staff account could not be set up. Please contact the IT help desk."
    ),
    "disabled": "Your staff account in this portal is disabled. Please contact the IT help desk.",
    "try-again": "Your sign-in could not be completed. Please try again.",
}
NOT_VERIFIED = (
    "Your sign-in at {brand} could not be verified, so you were not signed in. Please try "
    "again; if it happens again, contact the IT help desk."
)
PROVIDER_SAID = (
    "{brand} did not sign you in. Please try again; if it happens again, contact the IT help desk."
)
# The provider's error code is shown to the audit log only in this shape (RFC 6749 §4.1.2.1).
_ERROR_CODE = re.compile(r"[a-z_]{1,64}")
_MAX_CODE = 2048


def _brand(text: str) -> str:
    return text.format(brand=settings.CAREGATE_BRAND_NAME)


def _audit_unavailable(request: HttpRequest, error: Exception) -> None:
    """The provider could not be reached or answered nonsense: audited, with the reason."""
    record(
        "staff-login.provider", "unavailable", request=request, flow=NAME, error=str(error)[:300]
    )


def _page(request: HttpRequest, template: str, message: str, status: int) -> HttpResponse:
    return render(request, template, {"message": _brand(message)}, status=status)


class AtIdentityProvider:
    """The one stage: send the browser to the provider, and take its answer back."""

    key = "identity-provider"
    template = UNAVAILABLE

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        if request.method != "GET":
            return Restart("Please start again from the login page.")
        returned = any(name in request.GET for name in ("state", "code", "error"))
        return self._returned(request, state) if returned else self._send(request, state)

    def _send(self, request: HttpRequest, state: FlowState) -> Result:
        pending = state.stage(self.key).get("url")
        if pending:
            # The Back button, or a link from another site to this address: the same
            # request again, so a stray GET cannot replace the one the user is finishing.
            return Away(pending)
        # After a Sign out that did not end the provider's session (its confirmation not
        # given), the next staff LOGIN in this browser asks the provider for the password
        # again instead of signing the next person at the PC straight in.
        prompt = "login" if request.session.pop(keys.STAFF_REAUTHENTICATE, False) else ""
        try:
            outgoing = oidc.authorization_request(prompt=prompt)
        except oidc.ProviderUnavailable as error:
            _audit_unavailable(request, error)
            return Render({"message": _brand(UNAVAILABLE_TEXT)}, status=503)
        # A fresh request each time (the Back button, a second tab): only the newest is
        # accepted at the callback.
        state.raw["stages"][self.key] = {
            "url": outgoing.url,
            "state": outgoing.state,
            "nonce": outgoing.nonce,
            "code_verifier": outgoing.code_verifier,
        }
        record("staff-login.start", "success", request=request, flow=NAME)
        return Away(outgoing.url)

    def _returned(self, request: HttpRequest, state: FlowState) -> Result:
        sent = state.stage(self.key)
        answered = request.GET.get("state", "")
        if not sent.get("state") or not constant_time_compare(answered, sent["state"]):
            # Not the answer to this browser's request: a stale tab, or someone else's
            # code planted here (login CSRF). This browser's own attempt is kept.
            record("staff-login.callback", "state-mismatch", request=request, flow=NAME)
            return Render({"message": _brand(NOT_VERIFIED)}, template=REFUSED, status=400)
        if not self._issuer_matches(request):
            # RFC 9207: an answer naming another issuer is a mix-up attack (another
            # provider's code sent to this one); it is refused before any exchange.
            record("staff-login.callback", "wrong-issuer", request=request, flow=NAME)
            state.raw["stages"].pop(self.key, None)
            return Render({"message": _brand(NOT_VERIFIED)}, template=REFUSED, status=400)
        error = request.GET.get("error", "")
        code = request.GET.get("code", "")
        if error or not code or len(code) > _MAX_CODE:
            shown = error if _ERROR_CODE.fullmatch(error) else "invalid"
            record(
                "staff-login.callback", "provider-error", request=request, flow=NAME, error=shown
            )
            state.raw["stages"].pop(self.key, None)  # this request is spent
            return Render({"message": _brand(PROVIDER_SAID)}, template=REFUSED, status=400)
        sent = {k: v for k, v in sent.items() if k != "url"}
        # Advance finishes the flow (deletes its row by revision) before finish() runs:
        # of two callbacks carrying this state, only one goes on to exchange the code.
        return Advance({"code": code, **sent})

    @staticmethod
    def _issuer_matches(request: HttpRequest) -> bool:
        """RFC 9207: the ``iss`` the answer names must be ours, and must be present when
        the provider says it always sends it."""
        issuer = settings.CAREGATE_OIDC_ISSUER
        if "iss" in request.GET:
            return request.GET["iss"] == issuer
        try:
            promised = oidc.metadata().get("authorization_response_iss_parameter_supported")
        except oidc.ProviderUnavailable:
            return True  # the code exchange will say the provider is unavailable
        return promised is not True


UNAVAILABLE_TEXT = (
    "Staff sign-in is not available right now: the {brand} identity provider cannot be "
    "reached. Please try again in a few minutes. Customer and provider users are not "
    "affected."
)


def finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    """Exchange the code, verify the ID token, set up the account, sign in."""
    data: dict[str, Any] = state.data
    try:
        token = oidc.exchange_code(data["code"], data["code_verifier"])
        claims = oidc.verify_id_token(token["id_token"], nonce=data["nonce"])
    except oidc.ProviderUnavailable as error:
        _audit_unavailable(request, error)
        return _page(request, UNAVAILABLE, UNAVAILABLE_TEXT, 503)
    except oidc.TokenRefused as error:
        record(
            "staff-login.token", error.reason, request=request, flow=NAME, error=error.detail[:300]
        )
        return _page(request, REFUSED, NOT_VERIFIED, 403)
    try:
        user, found = staff_account(claims)
    except StaffRefused as refused:
        record(
            "staff-login.account",
            refused.reason,
            request=request,
            user=refused.user,
            flow=NAME,
            subject=str(claims.get("sub", ""))[:255],
            amr=claims.get("amr"),
            acr=claims.get("acr"),
        )
        return _page(request, REFUSED, REFUSALS[refused.reason], 403)
    record(
        "staff-login.account",
        "success",
        request=request,
        user=user,
        flow=NAME,
        roles=user.staff_roles,
        amr=list(found.amr),
        acr=found.acr,
    )
    response = sign_in(request, user, method=METHOD, flow=NAME)
    # After login() rotated the session: the provider's logout needs the token as a hint.
    request.session[keys.STAFF_ID_TOKEN] = token["id_token"]
    return response


STAFF_LOGIN = Flow(NAME, title="Staff LOGIN", stages=[AtIdentityProvider()], on_done=finish)


@require_POST
def start(request: HttpRequest) -> HttpResponse:
    """The login page's staff LOGIN button (a POST, so no other site can start it)."""
    if not oidc.configured():
        raise Http404("Staff sign-in is not configured.")
    return STAFF_LOGIN.start(request)


def provider_logout_url(request: HttpRequest) -> str:
    """Where Sign out sends a staff session: the provider's RP-initiated logout, or ""."""
    id_token = request.session.get(keys.STAFF_ID_TOKEN)
    if not (oidc.configured() and isinstance(id_token, str) and id_token):
        return ""
    return oidc.end_session_url(id_token)
