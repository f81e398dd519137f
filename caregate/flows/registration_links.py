"""The emailed link that completes MFA registration (Section 2, Registration Error, and
Having trouble logging in?): single use, 20 minutes, and out of the URL before any page."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac
from django.views.decorators.http import require_http_methods

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.delivery import tasks
from caregate.delivery.email import describe_seconds, queue_email
from caregate.delivery.phone import public_url
from caregate.flows.mfa_registration import COMPLETE_REGISTRATION
from caregate.portal.notices import mask_email
from caregate.verification.links import issue_link, peek_link, redeem_link
from caregate.verification.phones import national

PURPOSE = "mfa-registration"
PENDING = "caregate.pending_link"
ALREADY_REGISTERED = (
    "Your multi-factor authentication registration is already complete. Select LOGIN WITH "
    "PHONE or LOGIN WITH EMAIL to sign in."
)
REASONS = {
    "expired": "This link has expired: registration links last {lifetime}.",
    "used": "This link has already been used.",
    "unknown": "This link is not valid.",
}


def send_registration_link(user: User) -> bool:
    """Email ``user`` a fresh link to complete MFA registration (through the delivery
    worker); False if it is already known to have failed."""
    if user.is_operator_staff:
        # Staff register nothing here: their sign-in and MFA are the identity provider's.
        return False
    lifetime = settings.CAREGATE_REGISTRATION_LINK_SECONDS
    token = issue_link(user, PURPOSE, lifetime)
    context = {
        "user": user,
        "link": public_url(reverse("registration-link", args=[token])),
        "lifetime": describe_seconds(lifetime),
        "portal": settings.CAREGATE_PORTAL_NAME,
        "support_phone": settings.CAREGATE_SUPPORT_PHONE,
    }
    body = render_to_string("email/registration_link.txt", context)
    subject = f"{settings.CAREGATE_PORTAL_NAME}: complete your registration"
    delivery = queue_email(
        user.email,
        subject,
        body,
        purpose=PURPOSE,
        user_id=user.pk,
        send_before=timezone.now() + timedelta(seconds=lifetime),
    )
    return tasks.page_state(delivery) != tasks.FAILED


def registration_error(request: HttpRequest, reason: str = "") -> HttpResponse:
    """The guide's "Registration Error" page, with Reset."""
    lifetime = describe_seconds(settings.CAREGATE_REGISTRATION_LINK_SECONDS)
    detail = REASONS.get(reason, "").format(lifetime=lifetime)
    return render(request, "flows/registration_error.html", {"detail": detail})


LINK_CHANGED = (
    "The registration link in this browser changed after this page was shown. Check the "
    "account below before you select Continue."
)


def page_binding(token: str) -> str:
    """What the Continue form carries to say which link its page showed (never the token)."""
    return salted_hmac("caregate.registration-link.page", token).hexdigest()[:32]


def link_landing(request: HttpRequest, token: str) -> HttpResponse:
    """Move the token from the URL into the session, then show the page without it.

    Anyone can make a browser GET this URL (a link on another site), so it decides
    nothing: a signed-in session keeps no token at all, and a later token replaces an
    earlier one only for the page that names it (see link_continue).
    """
    if request.user.is_authenticated:
        request.session.pop(PENDING, None)
    else:
        request.session[PENDING] = token[:100]
    return redirect("registration-link-continue")


def registered_details(user: User) -> list[tuple[str, str]]:
    """What the account was registered with, as (label, value), the empty ones left out.

    Whoever holds the organization's registration code can register an address that has
    no account yet, with details of their choosing; the owner of the address then
    completes that account from this link. So the page shows the owner the details before
    they do: a wrong FAX would have the organization's determination letters faxed to
    someone else. (The link itself gives far more than this while the account is
    unregistered: the account. Once registered, a spare link gives nothing, and shows
    nothing of the account either.)
    """
    if user.mfa_method != User.MfaMethod.NONE:
        return []
    place = " ".join(part for part in (user.state, user.zip_code) if part)
    address = ", ".join(part for part in (user.address1, user.address2, user.city, place) if part)
    rows = [
        ("NAME", user.get_full_name()),
        ("ORGANIZATION", user.organization.name if user.organization_id else ""),
        ("ADDRESS", address),
        ("PHONE", national(user.office_phone) if user.office_phone else ""),
        ("FAX", national(user.fax) if user.fax else ""),
    ]
    return [(label, value) for label, value in rows if value]


def _continue_page(request: HttpRequest, token: str, user: User, notice: str = "") -> HttpResponse:
    # Name the account: a link planted by someone else shows their username, not the
    # victim's, before the victim completes (and signs in to) that account.
    context = {
        "username": user.username,
        "masked_email": mask_email(user.email),
        "details": registered_details(user),
        "binding": page_binding(token),
        "notice": notice,
    }
    return render(request, "flows/registration_link.html", context)


@require_http_methods(["GET", "POST"])
def link_continue(request: HttpRequest) -> HttpResponse:
    """Ask for one click before using the link: mail scanners that fetch links by GET
    must not spend a single-use link."""
    if request.user.is_authenticated:
        # Completing another account's registration would switch this session to it.
        request.session.pop(PENDING, None)
        record("registration.link", "signed-in", request=request, user=request.user)
        return render(request, "flows/registration_link.html", {"signed_in": True})
    token = request.session.get(PENDING, "")
    if not token:
        return registration_error(request, "unknown")
    if request.method == "GET":
        pending, outcome = peek_link(token, PURPOSE)
        if pending is None:
            record("registration.link", outcome, request=request)
            return registration_error(request, outcome)
        return _continue_page(request, token, pending)
    shown = request.POST.get("link")
    if not constant_time_compare(shown or "", page_binding(token)):
        # The page was shown for another link, which a later (maybe planted) link replaced.
        pending, outcome = peek_link(token, PURPOSE)
        record("registration.link", "changed", request=request, user=pending)
        if pending is None:
            return registration_error(request, outcome)
        return _continue_page(request, token, pending, notice=LINK_CHANGED)
    del request.session[PENDING]
    user, outcome = redeem_link(token, PURPOSE)
    record("registration.link", outcome, request=request, user=user)
    if user is None:
        return registration_error(request, outcome)
    if user.is_operator_staff:
        record("registration.link", "staff-account", request=request, user=user)
        return registration_error(request, "unknown")
    if user.mfa_method != User.MfaMethod.NONE:
        # A spare link (e.g. from Reset) must not re-open a finished registration.
        record("registration.link", "already-registered", request=request, user=user)
        messages.info(request, ALREADY_REGISTERED)
        return redirect("portal:login")
    return COMPLETE_REGISTRATION.start(request, user_id=user.pk, email=user.email)
