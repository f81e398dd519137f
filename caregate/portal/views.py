"""The login page, the home page and the portal shell around it."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from caregate.accounts.terms import accept, needs_terms
from caregate.audit.log import record
from caregate.factors import policy
from caregate.flows import keys, passkey_login
from caregate.flows.email_login import EMAIL_LOGIN
from caregate.flows.phone_login import PHONE_LOGIN
from caregate.flows.signin import sign_in
from caregate.portal import queries
from caregate.portal.context import EXTERNAL_MODULES
from caregate.portal.decorators import portal_page
from caregate.portal.forms import CaseSearchForm, LoginOptionsForm
from caregate.security import sessions
from caregate.security.client import client_ip
from caregate.staff import oidc
from caregate.staff.staff_login import provider_logout_url
from caregate.verification import remember


def login_page(request: HttpRequest) -> HttpResponse:
    """LOGIN OPTIONS: the staff column (when SSO is configured) and Customer/Provider."""
    if request.user.is_authenticated:
        return redirect("portal:home")
    # Section 5: a remembered browser shows the box checked ("To turn off this feature,
    # uncheck the Remember Me box"); clicking the same button then skips the prompts,
    # while leaving it unchecked would turn the feature off. Only a token the server still
    # honours counts: a leftover cookie (signed out, expired, voided) would otherwise
    # pre-check the box for the next person at a shared PC.
    remembered = remember.is_remembered(request)
    response = render(
        request,
        "portal/login.html",
        {
            "staff_sso": oidc.configured(),
            "form": LoginOptionsForm(),
            "remember_me_checked": remembered,
            # LOGIN WITH PASSKEY (issue #11), where the deployment turned it on.
            "passkey_login": passkey_login.offered(),
        },
    )
    if not remembered:
        remember.clear_stale_cookie(request, response)
    return response


LOGIN_FLOWS = {"phone": PHONE_LOGIN, "email": EMAIL_LOGIN}


@require_POST
def start_login(request: HttpRequest) -> HttpResponse:
    """LOGIN WITH PHONE / LOGIN WITH EMAIL, honouring the Remember Me box (Section 5)."""
    form = LoginOptionsForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Please choose LOGIN WITH PHONE or LOGIN WITH EMAIL.")
        return redirect("portal:login")
    method = form.cleaned_data["method"]
    flow = LOGIN_FLOWS[method]
    if not form.cleaned_data["remember_me"]:
        # Unchecked: the feature is off, and the next sign-on asks for everything.
        response = flow.start(request, remember_me=False)
        remember.forget(request, response)
        return response
    entry, reason = remember.recall(request, method)
    if entry is not None and not policy.allowed(method):
        # Remembered for a button whose factor the policy has since turned off (the aal2
        # profile's email): the token no longer stands for a second factor.
        entry, reason = None, "factor-off"
    if entry is None:
        if reason != "no-cookie":
            record("remember.use", reason, request=request, method=method)
        return flow.start(request, remember_me=True)
    user = entry.user
    record("remember.use", "success", request=request, user=user, method=method)
    return sign_in(request, user, method=f"remembered-{method}", flow=flow.name, remembered=entry)


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    """Sign out: the server-side session is deleted, not just the cookie.

    Sign out also ends Remember Me on this browser (the token on the server and the
    cookie): the user chose to leave, and the next person at a shared front-desk PC must be
    asked for the password. Only the automatic logoff (idle, absolute) keeps the token, so
    the same button brings the user back within the four hours.
    """
    # A staff session also ends at the identity provider when it offers RP-initiated
    # logout (read before logout() flushes the session that holds the token hint).
    at_provider = provider_logout_url(request) if request.user.is_authenticated else ""
    if request.user.is_authenticated:
        record(
            "signout", "success", request=request, user=request.user, provider=bool(at_provider)
        )
    response = redirect(at_provider or "portal:login")
    remember.forget(request, response)  # reads the session: before logout() flushes it
    sessions.forget(request)
    was_staff = request.user.is_authenticated and request.user.is_operator_staff
    logout(request)
    if was_staff:  # in the new, empty session: see staff_login.AtIdentityProvider._send
        request.session[keys.STAFF_REAUTHENTICATE] = True
    messages.info(request, "You have signed out.")
    return response


@portal_page
def home(request: HttpRequest) -> HttpResponse:
    user = request.user
    return render(
        request,
        "portal/home.html",
        {
            "counters": queries.counters(user),
            "saved_cases": queries.saved_not_submitted(user),
            "search_form": CaseSearchForm(),
            "active": "HOME",
        },
    )


@portal_page
def cases(request: HttpRequest) -> HttpResponse:
    """CASES, and the results of "Search for Case # or Program #"."""
    form = CaseSearchForm(request.GET or None)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    found = queries.search_cases(request.user, query)[:200] if not form.errors else []
    return render(
        request,
        "portal/cases.html",
        {"search_form": form, "cases": found, "query": query, "active": "CASES"},
    )


@portal_page
def message_center(request: HttpRequest) -> HttpResponse:
    user = request.user
    inbox = list(queries.messages_for(user).prefetch_related("read_by")[:200])
    unread_ids = {m.pk for m in inbox if user not in m.read_by.all()}
    for message in inbox:
        if message.pk in unread_ids:
            message.read_by.add(user)
    return render(
        request,
        "portal/messages.html",
        {
            "inbox": inbox,
            "unread_ids": unread_ids,
            "search_form": CaseSearchForm(),
            "active": "MESSAGE CENTER",
        },
    )


@portal_page
def help_page(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/help.html", {"search_form": CaseSearchForm(), "active": "Help"})


@portal_page
def setup(request: HttpRequest) -> HttpResponse:
    """SETUP: My Account for everyone, Manage Users for the provider administrator."""
    return render(
        request,
        "portal/setup.html",
        {"active": "SETUP", "manage_users": request.user.is_org_admin},
    )


@portal_page
def module(request: HttpRequest, slug: str) -> HttpResponse:
    """CREATE CASE, CONSUMERS, REPORTS: modules of other applications, at configured
    addresses. Without one the menu item still opens, on a page that says so."""
    found = EXTERNAL_MODULES.get(slug)
    if found is None:
        raise Http404
    if found.address:
        return redirect(found.address)  # the operator's setting, never a request value
    return render(
        request,
        "portal/module_not_configured.html",
        {"active": found.label, "module": found, "title": found.label},
    )


@login_required
def terms(request: HttpRequest) -> HttpResponse:
    """Terms of Use: "I have read and agree to these terms of use." + CONTINUE."""
    current = needs_terms(request.user)
    if current is None:
        return redirect("portal:home")
    error = ""
    if request.method == "POST":
        if request.POST.get("agree") == "yes":
            accept(request.user, current, client_ip(request))
            record("terms.accept", current.version, request=request, user=request.user)
            return redirect("portal:home")
        error = "Please check the box to agree to the terms of use before you continue."
    return render(request, "portal/terms.html", {"terms": current, "error": error})


FEATURES = {
    "setup": "Setup",
    "my-account": "My Account",
    "manage-users": "Manage Users",
}
# Pages of the portal itself: shown inside the shell (header, menu, the user's name).
IN_PORTAL = {"setup", "my-account", "manage-users"}


def not_available(request: HttpRequest, feature: str) -> HttpResponse:
    """A page for guide sections whose flows have not been built yet.

    A signed-in user who has accepted the terms sees it inside the portal, with its menu,
    instead of a bare page whose only way on is the login page.
    """
    title = FEATURES.get(feature)
    if title is None:
        return render(request, "404.html", status=404)
    in_portal = (
        feature in IN_PORTAL
        and request.user.is_authenticated
        and needs_terms(request.user) is None
    )
    context = {
        "title": title,
        "base_template": "portal_base.html" if in_portal else "base.html",
        "active": "SETUP" if in_portal else "",
    }
    return render(request, "portal/not_available.html", context)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A stale or missing CSRF token: explain, in the portal's words, and offer a way on."""
    return render(request, "403_csrf.html", status=403)
