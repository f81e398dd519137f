"""Setup → My Account → Passkeys: the list, adding one (the registration ceremony),
renaming and removing one; and the login page's LOGIN WITH PASSKEY.

Adding a passkey asks for the second factor on record again (caregate/passkeys/flows.py,
a code to the phone or email, as Set up authenticator app does): a passkey signs in on
its own, so a session alone (a browser left signed in, a stolen cookie, one that skipped
the prompts with Remember Me) must not be able to add one.
"""

from __future__ import annotations

import json
from importlib import import_module

from django.conf import settings
from django.contrib import messages
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.factors import policy, registry
from caregate.flows import passkey_login
from caregate.flows.change_phone import NOT_REGISTERED, start_data
from caregate.flows.passkey_login import PASSKEY_LOGIN
from caregate.passkeys import ceremony, flows
from caregate.passkeys.models import Passkey, PasskeyChallenge
from caregate.portal.decorators import portal_page
from caregate.portal.forms import CaseSearchForm
from caregate.portal.notices import notify

ENROL_POINTER = "caregate.passkeys.enrol"  # session key: the registration challenge's id
ADDED = "Your passkey “{name}” was added. You can now use it to sign in."
RENAMED = "The passkey is now called “{name}”."
REMOVED = "The passkey “{name}” was removed: it can no longer sign in to your account."
NAME_NEEDED = "Please give the passkey a name (up to 60 characters), e.g. “Work laptop”."
NO_RESPONSE = (
    "Your browser did not send a passkey. Select Create passkey and follow your browser's "
    "steps; if your browser cannot make passkeys, use another browser or device."
)
REFUSED = "The passkey could not be added. Please try again."
DUPLICATE = "That passkey is already added."
LAST_REQUIRED = (
    "This is your last passkey, and administrators of your organization must keep one: "
    "add another passkey first, then remove this one."
)
STAFF = "Your sign-in is managed by {brand}: passkeys are not used for your account."


def _page(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    base = {"search_form": CaseSearchForm(), "active": "SETUP"}
    return render(request, template, {**base, **context}, status=status)


def _own(request: HttpRequest, passkey_id: int) -> Passkey:
    """The signed-in user's passkey by id; anyone else's (or none) is a 404."""
    found = Passkey.objects.filter(pk=passkey_id, user=request.user).first()
    if found is None:
        raise Http404
    return found


def allowed() -> bool:
    """Whether the deployment offers passkeys (CAREGATE_SECOND_FACTORS)."""
    return registry.allowed("passkey")


@portal_page
def passkey_list(request: HttpRequest) -> HttpResponse:
    if not allowed():
        raise Http404
    return _page(
        request,
        "passkeys/list.html",
        {
            "passkeys": Passkey.objects.filter(user=request.user),
            "staff": request.user.is_operator_staff,
            "passkey_login": settings.CAREGATE_PASSKEY_LOGIN,
        },
    )


@portal_page
def add(request: HttpRequest) -> HttpResponse:
    user = request.user
    if not allowed():
        raise Http404
    if user.is_operator_staff:
        messages.error(request, STAFF.format(brand=settings.CAREGATE_BRAND_NAME))
        return redirect("passkeys:list")
    if not flows.has_ticket(request):
        # Not yet verified with the current factor in this session (or too long ago).
        return _page(request, "passkeys/verify_first.html", {}, status=403)
    if request.method == "POST":
        return _finish_add(request)
    return _add_page(request)


@require_POST
@portal_page
def start_add(request: HttpRequest) -> HttpResponse:
    """Add a passkey → the current factor first (flows.ADD_PASSKEY), then the add page."""
    user = request.user
    if not allowed():
        raise Http404
    if user.is_operator_staff or user.usable_mfa_method == User.MfaMethod.NONE:
        messages.error(request, NOT_REGISTERED)
        return redirect("passkeys:list")
    return flows.ADD_PASSKEY.start(request, **start_data(user))


def _add_page(
    request: HttpRequest,
    *,
    name: str = "",
    error: str = "",
    status: int = 200,
    replaces: object = None,
) -> HttpResponse:
    # This session's earlier challenge (or the one a refused try used up) goes.
    issued = ceremony.issue_challenge(
        PasskeyChallenge.Purpose.REGISTER,
        user_id=request.user.pk,
        replaces=replaces or request.session.get(ENROL_POINTER),
    )
    request.session[ENROL_POINTER] = issued.pk
    options = json.loads(ceremony.registration_options(request.user, bytes(issued.challenge)))
    context = {"options": options, "name": name, "error": error}
    return _page(request, "passkeys/add.html", context, status=status)


def _finish_add(request: HttpRequest) -> HttpResponse:
    user = request.user
    name = ceremony.clean_name(request.POST.get("name"))
    if not name:
        return _add_page(
            request,
            name=ceremony.clean_name(request.POST.get("name", "")[:60]),
            error=NAME_NEEDED,
            status=400,
        )
    # One passkey per proof of the current factor: the ticket is used up before the
    # registration (two tabs posting at once: one gets it), and given back if refused.
    ticket = flows.take_ticket(request)
    if ticket is None:
        return _page(request, "passkeys/verify_first.html", {}, status=403)
    pointer = request.session.pop(ENROL_POINTER, None)
    try:
        # Used up first, committed whatever follows: one try per challenge.
        challenge = ceremony.consume_challenge(
            pointer, PasskeyChallenge.Purpose.REGISTER, user_id=user.pk
        )
        with transaction.atomic():
            passkey = ceremony.register(user, request.POST.get("credential", ""), challenge, name)
            record("passkey.enrol", "success", request=request, user=user, passkey_id=passkey.pk)
    except ceremony.Refused as refusal:
        flows.give_back(request, ticket)
        record("passkey.enrol", "refused", request=request, user=user, reason=refusal.reason)
        error = {"no-response": NO_RESPONSE, "already-enrolled": DUPLICATE}.get(
            refusal.reason, REFUSED
        )
        return _add_page(request, name=name, error=error, status=400, replaces=pointer)
    notify(
        user,
        "New passkey",
        f"A passkey called “{name}” was added to your account. It can sign in to your "
        "account with the PIN, fingerprint or face of the device that holds it.",
    )
    messages.success(request, ADDED.format(name=name))
    return _after_enrolment(request, passkey)


def _after_enrolment(request: HttpRequest, passkey: Passkey) -> HttpResponse:
    """Recovery codes are offered after a factor is enrolled (caregate/factors/recovery.py,
    where present): its page, if it has codes to offer, else the passkey list."""
    try:
        recovery = import_module("caregate.factors.recovery")
    except ImportError:
        recovery = None
    offer = getattr(recovery, "offer_after_enrolment", None)
    # It returns the URL of its page, or None when there is nothing to offer.
    url = offer(request, request.user) if offer is not None else None
    return redirect(url) if isinstance(url, str) and url else redirect("passkeys:list")


@require_POST
@portal_page
def rename(request: HttpRequest, passkey_id: int) -> HttpResponse:
    passkey = _own(request, passkey_id)
    name = ceremony.clean_name(request.POST.get("name"))
    if not name:
        messages.error(request, NAME_NEEDED)
        return redirect("passkeys:list")
    old = passkey.name
    with transaction.atomic():
        Passkey.objects.filter(pk=passkey.pk, user=request.user).update(name=name)
        record(
            "passkey.rename", "success", request=request, user=request.user, passkey_id=passkey.pk
        )
    if old != name:
        messages.success(request, RENAMED.format(name=name))
    return redirect("passkeys:list")


@require_POST
@portal_page
def remove(request: HttpRequest, passkey_id: int) -> HttpResponse:
    passkey = _own(request, passkey_id)
    with transaction.atomic():
        # The user's row locked: two removals at once cannot each see another passkey left.
        User.objects.select_for_update().filter(pk=request.user.pk).first()
        if not policy.keeps_requirement(request.user, removing="passkey"):
            record("factor-policy.remove", "refused", request=request, user=request.user,
                   passkey_id=passkey.pk)  # fmt: skip
            messages.error(request, LAST_REQUIRED)
            return redirect("passkeys:list")
        deleted, _ = Passkey.objects.filter(pk=passkey.pk, user=request.user).delete()
        if not deleted:  # removed by a concurrent request: that one told the user
            raise Http404
        record(
            "passkey.remove", "success", request=request, user=request.user, passkey_id=passkey.pk
        )
    notify(
        request.user,
        "Passkey removed",
        f"The passkey called “{passkey.name}” was removed from your account: it can no "
        "longer sign in.",
    )
    messages.success(request, REMOVED.format(name=passkey.name))
    return redirect("passkeys:list")


@require_POST
def start_login(request: HttpRequest) -> HttpResponse:
    """LOGIN WITH PASSKEY: only where the deployment turned it on."""
    if not passkey_login.offered():
        raise Http404
    if request.user.is_authenticated:
        return redirect("portal:home")
    return PASSKEY_LOGIN.start(request)
