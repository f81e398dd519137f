"""The gate in front of every portal page: signed in, and the current terms accepted."""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from caregate.accounts.terms import needs_terms
from caregate.factors import policy
from caregate.portal.forms import CaseSearchForm

View = Callable[..., HttpResponse]


def portal_page(view: View) -> View:
    """Require sign-in, then send anyone who has not accepted the current terms to them,
    and an administrator past the factor policy's grace period without a required factor
    to its enrolment page (caregate/factors/policy.py: every portal page but enrolling one
    is closed to them; no query for a user the policy does not apply to)."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if needs_terms(request.user) is not None:
            return redirect("portal:terms")
        if policy.closed(request):
            return redirect("factors:policy-required")
        return view(request, *args, **kwargs)

    return login_required(wrapper)


def org_admin_page(view: View) -> View:
    """A portal page for provider administrators only (Setup → Manage Users).

    ``request.user`` is read from the database on every request, so an administrator whose
    role was removed (or who was deactivated) loses these pages at their next request. A
    standard user gets 403, the same answer for every address under it, so the pages tell
    nothing about which user ids exist.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        user = request.user
        if not (user.is_org_admin and user.organization_id is not None):
            return render(
                request,
                "portal/manage_users/denied.html",
                {"search_form": CaseSearchForm(), "active": "SETUP"},
                status=403,
            )
        return view(request, *args, **kwargs)

    return portal_page(wrapper)
