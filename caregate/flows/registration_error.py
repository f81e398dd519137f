"""The guide's "Registration Error Message": Reset → username → Submit → an emailed link."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.delivery import tasks
from caregate.delivery.email import describe_seconds
from caregate.flows.registration_links import (
    PURPOSE,
    registration_error,
    send_registration_link,
)
from caregate.security.client import client_ip
from caregate.verification import ratelimit

SENT = (
    "If that username has a registration in progress, an email with a link to complete the "
    "registration has been sent to its registered email address. The link works once, "
    "within {lifetime}."
)


class ResetForm(forms.Form):
    username = forms.CharField(
        label="Username",
        max_length=150,
        error_messages={"required": "Please enter your Username."},
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )


def error_page(request: HttpRequest) -> HttpResponse:
    return registration_error(request)


@require_http_methods(["GET", "POST"])
def reset(request: HttpRequest) -> HttpResponse:
    """Same answer whether or not the username exists (no account enumeration)."""
    form = ResetForm(request.POST if request.method == "POST" else None)
    if request.method != "POST" or not form.is_valid():
        return render(request, "flows/registration_reset.html", {"form": form})
    username = form.cleaned_data["username"].strip()
    allowed = ratelimit.hit_all(
        [("link-request:client", client_ip(request)), ("link-request:account", username)]
    )
    user = (
        # Operator staff are never found: they have no registration here to reset.
        User.objects.with_username(username)
        .filter(is_active=True, mfa_method=User.MfaMethod.NONE, oidc_subject="")
        .first()
        if allowed
        else None
    )
    outcome = "throttled" if not allowed else "no-match"
    if user is not None:
        outcome = "sent" if send_registration_link(user) else "failed"
    elif allowed:
        # The same work as a link for an account: a delivery row and a task, no email.
        tasks.enqueue_withheld(PURPOSE)
    record("registration.reset", outcome, request=request, user=user, username=username)
    lifetime = describe_seconds(settings.CAREGATE_REGISTRATION_LINK_SECONDS)
    return render(
        request, "flows/registration_reset.html", {"sent": SENT.format(lifetime=lifetime)}
    )
