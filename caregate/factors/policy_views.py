"""The factor policy's two pages (caregate/factors/policy.py): "add a passkey now" in the
grace period, and "add one to continue" after it (the only portal page, with the
enrolment pages, that an administrator past the grace period can open)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.timezone import localtime

from caregate.factors import policy
from caregate.portal.decorators import portal_page
from caregate.portal.forms import CaseSearchForm


def _page(request: HttpRequest, template: str, found: policy.Standing) -> HttpResponse:
    context = {
        "search_form": CaseSearchForm(),
        "active": "SETUP",
        "standing": found,
        "deadline": localtime(found.deadline),
        "why_passkey": policy.WHY_PASSKEY,
    }
    return render(request, template, context)


@portal_page
def prompt(request: HttpRequest) -> HttpResponse:
    """The grace period's prompt (the sign-in ends here); "Remind me later" goes home."""
    found = policy.standing(request.user)
    if found is None:
        return redirect("portal:home")
    if found.overdue:
        return redirect("factors:policy-required")
    return _page(request, "factors/policy_prompt.html", found)


@portal_page
def required(request: HttpRequest) -> HttpResponse:
    """After the grace period: what to enrol before the portal opens again."""
    found = policy.standing(request.user)
    if found is None:
        return redirect("portal:home")
    if not found.overdue:
        return redirect("factors:policy-prompt")
    return _page(request, "factors/policy_required.html", found)
