"""The guide's "Registration Error Message": Reset → username → Submit → an emailed link.

Reset answers the same whatever the username, by its page and by its work: the request
looks the username up (one query, found or not) and enqueues one task, with the account's
id or none; the worker issues the link and queues its email. Issuing the link in the
request wrote its rows (void the older links, insert the new one) only when the username
had a registration in progress, which its SQL and timing showed. With the immediate tasks
backend (development and tests; production refuses it) the task runs inside the request.
"""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods
from django_tasks import TaskResultStatus, task

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.delivery.email import describe_seconds
from caregate.flows.registration_links import registration_error, send_registration_link
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


def _resettable(accounts: QuerySet[User]) -> QuerySet[User]:
    # Operator staff are never found: they have no registration here to reset.
    return accounts.filter(is_active=True, mfa_method=User.MfaMethod.NONE, oidc_subject="")


@task()
def send_reset_link(user_id: int | None) -> str:
    """The worker's half of Reset: email a fresh link to the account found by the request,
    if it still has a registration in progress (it may have finished since)."""
    user = _resettable(User.objects.filter(pk=user_id)).first() if user_id is not None else None
    if user is None:
        return "no-match"
    return "sent" if send_registration_link(user) else "failed"


@require_http_methods(["GET", "POST"])
def reset(request: HttpRequest) -> HttpResponse:
    """Same answer and same work whether or not the username exists (no account
    enumeration): one lookup, one task."""
    form = ResetForm(request.POST if request.method == "POST" else None)
    if request.method != "POST" or not form.is_valid():
        return render(request, "flows/registration_reset.html", {"form": form})
    username = form.cleaned_data["username"].strip()
    # The username's budget only for a request this address's allowed: refused requests
    # from one address cannot keep someone else's reset link from them (hit_in_turn).
    allowed = ratelimit.hit_in_turn(
        [("link-request:client", client_ip(request))], [("link-request:account", username)]
    )
    user = _resettable(User.objects.with_username(username)).first() if allowed else None
    outcome = "throttled"
    if allowed:
        result = send_reset_link.enqueue(user.pk if user is not None else None)
        # Queued for the worker: "sent" means handed over, as for every other email.
        outcome = "sent" if user is not None else "no-match"
        if result.is_finished:  # the immediate backend: it ran here
            succeeded = result.status == TaskResultStatus.SUCCESSFUL
            outcome = str(result.return_value) if succeeded else "failed"
    record("registration.reset", outcome, request=request, user=user, username=username)
    lifetime = describe_seconds(settings.CAREGATE_REGISTRATION_LINK_SECONDS)
    return render(
        request, "flows/registration_reset.html", {"sent": SENT.format(lifetime=lifetime)}
    )
