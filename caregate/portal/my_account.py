"""Setup → My Account: the login method on record, changing the phone number or email
(each with the current second factor again), the sign-in methods beyond it (authenticator
app, recovery codes: caregate/factors), the signed-in sessions and the remembered
browsers, each of which the user can end."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from caregate.accounts.models import SignedInSession, User
from caregate.audit.log import record
from caregate.factors import recovery, registry
from caregate.factors.models import AuthenticatorApp
from caregate.flows import keys
from caregate.flows.change_email import CHANGE_EMAIL
from caregate.flows.change_phone import CHANGE_PHONE, NOT_REGISTERED, start_data
from caregate.flows.engine import Flow
from caregate.portal.decorators import portal_page
from caregate.portal.forms import CaseSearchForm
from caregate.portal.notices import mask_email
from caregate.security import sessions
from caregate.verification import remember
from caregate.verification.models import RememberedBrowser
from caregate.verification.phones import mask_phone

CHANGES: dict[str, Flow] = {"phone": CHANGE_PHONE, "email": CHANGE_EMAIL}
SESSION_ENDED = "The session was ended: that browser is signed out."
BROWSER_ENDED = "The remembered browser was ended: it will be asked for the password again."

# (what the User-Agent contains, what people call it), first match wins: Edge and Opera
# say "Chrome" too, and Chrome says "Safari".
_BROWSERS = [
    ("Edg/", "Edge"),
    ("OPR/", "Opera"),
    ("Firefox/", "Firefox"),
    ("Chrome/", "Chrome"),
    ("Safari/", "Safari"),
]
_SYSTEMS = [
    ("Windows", "Windows"),
    ("iPhone", "iPhone"),
    ("iPad", "iPad"),
    ("Android", "Android"),
    ("Mac OS X", "Mac"),
    ("CrOS", "ChromeOS"),
    ("Linux", "Linux"),
]


def describe_device(user_agent: str) -> str:
    """'Chrome on Windows': enough for a user to recognise their own browser."""
    browser = next((name for mark, name in _BROWSERS if mark in user_agent), "")
    system = next((name for mark, name in _SYSTEMS if mark in user_agent), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "Unknown browser"


# The login page's buttons, by the method a session records (caregate/flows/*.py sign_in()).
BUTTONS = {
    "phone": "LOGIN WITH PHONE",
    "email": "LOGIN WITH EMAIL",
    "passkey": "LOGIN WITH PASSKEY",  # caregate/flows/passkey_login.py
}


def describe_method(method: str) -> str:
    """How a session signed in, in the login page's words ("remembered-phone" → ...)."""
    if method == "staff-sso":
        return f"LOGIN ({settings.CAREGATE_BRAND_NAME} staff)"
    remembered = method.startswith("remembered-")
    button = method.removeprefix("remembered-").removeprefix("registration-")
    label = BUTTONS.get(button, method)
    return f"{label} (Remember Me)" if remembered else label


@dataclass(frozen=True)
class SessionRow:
    entry: SignedInSession
    device: str
    current: bool

    @property
    def method(self) -> str:
        return describe_method(self.entry.method)


@dataclass(frozen=True)
class BrowserRow:
    entry: RememberedBrowser
    current: bool

    @property
    def device(self) -> str:
        return describe_device(self.entry.user_agent)


def _enrolled(user: User) -> dict[str, str]:
    """The login method on record, masked as the login pages show it."""
    method = user.usable_mfa_method
    if method == User.MfaMethod.PHONE:
        return {"method_label": "Phone", "masked_factor": mask_phone(user.phone_number)}
    if method == User.MfaMethod.EMAIL:
        return {"method_label": "Email", "masked_factor": mask_email(user.email)}
    return {"method_label": "Not registered", "masked_factor": ""}


def _session_rows(request: HttpRequest) -> list[SessionRow]:
    current = request.session.session_key
    return [
        SessionRow(entry, describe_device(entry.user_agent), entry.session_key == current)
        for entry in sessions.active_sessions(request.user)
    ]


def _browser_rows(request: HttpRequest) -> list[BrowserRow]:
    """The user's remembered browsers that can still sign in (not expired, not voided by
    an account change); "this browser" is the one this session set or was created from."""
    own = {request.session.get(keys.REMEMBERED_BY), request.session.get(keys.REMEMBER_SET)}
    own.discard(None)
    fingerprint = remember.fingerprint(request.user)
    entries = RememberedBrowser.objects.filter(
        user=request.user, expires_at__gt=timezone.now(), fingerprint=fingerprint
    ).order_by("-created_at")
    return [BrowserRow(entry, entry.token_hash in own) for entry in entries]


def _sign_in_methods(user: User) -> dict[str, object]:
    """Sign-in methods: the authenticator app and recovery codes, where the deployment
    allows them, for registered customers (staff factors are the identity provider's)."""
    if user.is_operator_staff or user.usable_mfa_method == User.MfaMethod.NONE:
        return {"methods_shown": False}
    app_allowed = registry.allowed("authenticator-app")
    codes_allowed = registry.allowed(recovery.KEY)
    return {
        "methods_shown": app_allowed or codes_allowed,
        "app_allowed": app_allowed,
        "codes_allowed": codes_allowed,
        "authenticator_app": AuthenticatorApp.objects.filter(user=user).first()
        if app_allowed
        else None,
        "recovery_left": recovery.remaining(user) if codes_allowed else 0,
        "recovery_count": recovery.count(),
    }


@portal_page
def my_account(request: HttpRequest) -> HttpResponse:
    user = request.user
    context = {
        **_enrolled(user),
        "masked_email": mask_email(user.email),
        "masked_phone": mask_phone(user.phone_number) if user.phone_number else "",
        "registered": user.usable_mfa_method != User.MfaMethod.NONE,
        "session_rows": _session_rows(request),
        "browser_rows": _browser_rows(request),
        **_sign_in_methods(user),
        # The Passkeys link only where the deployment offers passkeys (else its page 404s).
        "passkeys_allowed": registry.allowed("passkey"),
        "search_form": CaseSearchForm(),
        "active": "SETUP",
    }
    return render(request, "portal/my_account/index.html", context)


@require_POST
@portal_page
def start_change(request: HttpRequest, what: str) -> HttpResponse:
    """Change phone number / Change email address: begin that flow for the signed-in user
    (its data names them, and its last step refuses to save for anyone else)."""
    flow = CHANGES.get(what)
    if flow is None:
        raise Http404
    if request.user.is_operator_staff or request.user.usable_mfa_method == User.MfaMethod.NONE:
        # Staff factors are the identity provider's; customers must be registered first.
        messages.error(request, NOT_REGISTERED)
        return redirect("portal:my-account")
    record("account.change", "started", request=request, user=request.user, flow=flow.name)
    return flow.start(request, **start_data(request.user))


def posted_id(request: HttpRequest) -> int:
    """The row id a My Account form posts (an integer, else 404): ids are looked up only
    among the signed-in user's own rows, so an edited one finds nothing."""
    raw = request.POST.get("id", "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise Http404
    return int(raw)


@require_POST
@portal_page
def end_session(request: HttpRequest) -> HttpResponse:
    """End one other session of the signed-in user. Another user's id, or this session's
    own (Sign out ends that), finds nothing: 404 and nothing ended."""
    session_id = posted_id(request)
    mine = SignedInSession.objects.filter(user=request.user, pk=session_id).exclude(
        session_key=request.session.session_key or ""
    )
    if not mine.exists() or not sessions.end_session(request.user, session_id):
        raise Http404
    record("session.end", "success", request=request, user=request.user, session_id=session_id)
    messages.success(request, SESSION_ENDED)
    return redirect("portal:my-account")


@require_POST
@portal_page
def end_browser(request: HttpRequest) -> HttpResponse:
    """End one remembered browser of the signed-in user; sessions created from it end at
    their next request (the middleware checks their token). Another user's id: 404."""
    deleted, _ = RememberedBrowser.objects.filter(
        user=request.user, pk=posted_id(request)
    ).delete()
    if not deleted:
        raise Http404
    record("remember.end", "success", request=request, user=request.user)
    messages.success(request, BROWSER_ENDED)
    return redirect("portal:my-account")
