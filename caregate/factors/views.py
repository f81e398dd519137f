"""Setup → My Account → Sign-in methods: start the authenticator app's set-up, remove
it, create recovery codes (after a new factor, and on demand)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.factors import notices, recovery, registry
from caregate.factors.flows import (
    ADD_AUTHENTICATOR,
    ALREADY_HAVE_APP,
    NEW_RECOVERY_CODES,
    add_app_data,
    show_codes,
)
from caregate.factors.models import AuthenticatorApp
from caregate.flows.change_phone import MY_ACCOUNT, NOT_REGISTERED, start_data
from caregate.portal.decorators import portal_page
from caregate.portal.forms import CaseSearchForm
from caregate.portal.my_account import posted_id

APP_REMOVED = "Your authenticator app was removed. Its codes no longer sign you in."
OFFER_GONE = "That page can no longer show recovery codes. Create new ones under Sign-in methods."


def _may_add_factors(request: HttpRequest) -> bool:
    """Registered customers only: staff factors are the identity provider's, and an
    account without a second factor has nothing to prove itself with first."""
    user = request.user
    if user.is_operator_staff or user.usable_mfa_method == User.MfaMethod.NONE:
        messages.error(request, NOT_REGISTERED)
        return False
    return True


@require_POST
@portal_page
def start_add_app(request: HttpRequest) -> HttpResponse:
    if not registry.allowed("authenticator-app"):
        raise Http404
    if not _may_add_factors(request):
        return redirect(MY_ACCOUNT)
    if AuthenticatorApp.objects.filter(user=request.user).exists():
        messages.error(request, ALREADY_HAVE_APP)
        return redirect(MY_ACCOUNT)
    record(
        "factor.enrol",
        "started",
        request=request,
        user=request.user,
        flow=ADD_AUTHENTICATOR.name,
        factor="authenticator-app",
    )
    return ADD_AUTHENTICATOR.start(request, **add_app_data(request.user))


@require_POST
@portal_page
def remove_app(request: HttpRequest) -> HttpResponse:
    """Remove the signed-in user's app. Another user's id finds nothing: 404."""
    deleted, _ = AuthenticatorApp.objects.filter(user=request.user, pk=posted_id(request)).delete()
    if not deleted:
        raise Http404
    notices.authenticator_removed(request, request.user)
    messages.success(request, APP_REMOVED)
    return redirect(MY_ACCOUNT)


@require_POST
@portal_page
def start_new_codes(request: HttpRequest) -> HttpResponse:
    if not registry.allowed(recovery.KEY):
        raise Http404
    if not _may_add_factors(request):
        return redirect(MY_ACCOUNT)
    record(
        "factor.recovery-codes",
        "started",
        request=request,
        user=request.user,
        flow=NEW_RECOVERY_CODES.name,
    )
    return NEW_RECOVERY_CODES.start(request, **start_data(request.user))


@require_http_methods(["GET", "POST"])
@portal_page
def recovery_offer(request: HttpRequest) -> HttpResponse:
    """Right after a new factor: "Save your recovery codes". Showing the page writes
    nothing; its button makes the first set and shows it, once, for this session's user."""
    user = request.user
    if request.method == "GET":
        if not recovery.has_offer(request, user):
            messages.info(request, OFFER_GONE)
            return redirect(MY_ACCOUNT)
        context = {"count": recovery.count(), "search_form": CaseSearchForm(), "active": "SETUP"}
        return render(request, "factors/recovery_offer.html", context)
    if not recovery.take_offer(request, user) or recovery.enrolled(user):
        messages.info(request, OFFER_GONE)
        return redirect(MY_ACCOUNT)
    codes = recovery.generate(user)
    notices.recovery_codes_created(request, user, "", replaced=False)
    return show_codes(request, codes, replaced=False)
