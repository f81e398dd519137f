"""The guide's "Having Trouble Logging In?" and its "Multi-Factor Authentication Help"."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from caregate.accounts.backends import check_password
from caregate.accounts.hashers import spend_failed_check
from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.delivery import tasks
from caregate.delivery.email import describe_seconds
from caregate.flows.forms import EmailSignInForm
from caregate.flows.registration_links import PURPOSE, send_registration_link
from caregate.security.client import client_ip
from caregate.verification import ratelimit

SENT = (
    "If this email address and password belong to a registration that was started but not "
    "finished, we have sent a link to that email address to complete the multi-factor "
    "authentication registration. The link works once, within {lifetime}."
)


@require_http_methods(["GET", "POST"])
def trouble(request: HttpRequest) -> HttpResponse:
    """For someone who verified their email and created a password but did not finish."""
    form = EmailSignInForm(request.POST if request.method == "POST" else None)
    if request.method != "POST" or not form.is_valid():
        return render(request, "flows/trouble.html", {"form": form})
    email = form.cleaned_data["email"]
    # The account's sign-in budget is counted by check_password (the one budget of every
    # flow that checks a password); this form adds its own per-address limit.
    allowed = ratelimit.hit("link-request:client", client_ip(request))
    user = None
    if allowed:
        attempt = check_password(form.cleaned_data["password"], email=email)
        allowed = attempt.outcome != "throttled"
        user = attempt.user
    else:
        # The same work as a password check, found or not (ModelBackend's timing pattern).
        spend_failed_check(form.cleaned_data["password"])
    outcome = "throttled" if not allowed else "no-match"
    if (
        user is not None
        and user.mfa_method == User.MfaMethod.NONE
        and user.email_verified_at is not None
    ):
        outcome = "sent" if send_registration_link(user) else "failed"
    elif allowed:
        # The same work as a link for an account: a delivery row and a task, no email.
        tasks.enqueue_withheld(PURPOSE)
    record("trouble.link", outcome, request=request, user=user, username=email)
    lifetime = describe_seconds(settings.CAREGATE_REGISTRATION_LINK_SECONDS)
    return render(request, "flows/trouble.html", {"sent": SENT.format(lifetime=lifetime)})


def mfa_help(request: HttpRequest) -> HttpResponse:
    return render(request, "flows/mfa_help.html")
