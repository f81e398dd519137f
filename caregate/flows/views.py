"""The one view that serves every stage of every flow."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_http_methods

from caregate.factors import policy
from caregate.flows.change_phone import AccountFlow
from caregate.flows.registry import FLOWS
from caregate.flows.stages.phone_challenge import CALL_MESSAGES
from caregate.verification import calls
from caregate.verification.models import PhoneCall


@require_http_methods(["GET", "POST"])
def stage(request: HttpRequest, flow_name: str, stage_key: str) -> HttpResponse:
    flow = FLOWS.get(flow_name)
    if flow is None:
        raise Http404
    if isinstance(flow, AccountFlow) and policy.closed(request, flow=flow_name):
        # A My Account change begun before the factor policy's grace period ended: closed
        # like every portal page (portal_page), except enrolling a required factor.
        return redirect("factors:policy-required")
    return flow.dispatch(request, stage_key)


# Flows a link on the login page starts (the sign-in flows start from its form instead).
LINK_STARTED = {"register", "mfa-registration", "forgot-password"}


def start(request: HttpRequest, flow_name: str) -> HttpResponse:
    """ "register here" and "click here": begin that flow afresh.

    A GET that drops any attempt of this browser's at the same flow: another site's link
    can therefore restart it (an annoyance, not a way in). Kept so on purpose: on an
    office's shared PC, going on with what the last person left half-done (a password
    reset past its code, say) would hand it to whoever clicks next."""
    flow = FLOWS.get(flow_name)
    if flow is None or flow_name not in LINK_STARTED:
        raise Http404
    return flow.start(request)


@require_http_methods(["GET", "POST"])
def cancel(request: HttpRequest, flow_name: str) -> HttpResponse:
    """Cancel (a form on every flow page): forget the flow's progress and go back to where
    the flow starts. Only a POST forgets (CSRF-checked); a GET, from an old page or another
    site's link, goes back without touching the attempt."""
    flow = FLOWS.get(flow_name)
    if flow is None:
        raise Http404
    if request.method == "POST":
        flow.discard(request)
    return redirect(flow.start_url)


def call_status(request: HttpRequest, flow_name: str) -> JsonResponse:
    """How the current stage's verification call is going (polled by call-status.js)."""
    flow = FLOWS.get(flow_name)
    state = flow.load(request) if flow is not None else None
    if flow is None or state is None or state.expired():
        return JsonResponse({"status": "gone", "open": False, "approved": False}, status=404)
    stage = flow.stages[min(state.reached, len(flow.stages) - 1)]
    current_call = getattr(stage, "current_call", None)
    call = current_call(state.stage(stage.key)) if current_call is not None else None
    if call is None:
        return JsonResponse({"status": "none", "open": False, "approved": False})
    return JsonResponse(
        {
            "status": call.status,
            "open": call.status in calls.OPEN,
            "approved": call.status == PhoneCall.Status.APPROVED,
            "message": CALL_MESSAGES[PhoneCall.Status(call.status)],
        }
    )
