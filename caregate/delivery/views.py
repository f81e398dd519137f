"""The dev outbox pages (/dev/outbox/, /dev/outbox.json); 404 outside development mode."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from caregate.delivery.models import OutboxMessage
from caregate.flows.registry import FLOWS
from caregate.verification import calls
from caregate.verification.models import PhoneCall

_SHOWN = 100


def _require_dev() -> None:
    if not settings.CAREGATE_DEV_OUTBOX:
        raise Http404


def outbox(request: HttpRequest) -> HttpResponse:
    _require_dev()
    messages = OutboxMessage.objects.all()[:_SHOWN]
    return render(request, "delivery/outbox.html", {"outbox": messages})


def outbox_json(request: HttpRequest) -> JsonResponse:
    _require_dev()
    messages = OutboxMessage.objects.all()[:_SHOWN]
    return JsonResponse([m.as_json() for m in messages], safe=False)


@csrf_exempt  # a development tool driven by scripts and tests (DESIGN.md); 404 in production
@require_POST
def answer_call(request: HttpRequest, message_id: int) -> HttpResponse:
    """Answer a recorded call as the callee would: ``digits`` is what they key (e.g. 123456#)."""
    _require_dev()
    message = get_object_or_404(OutboxMessage, pk=message_id, channel="voice")
    keys = request.POST.get("digits", "")[:20]
    call = PhoneCall.objects.filter(token=message.call_token).first()
    if call is None:
        raise Http404
    calls.provider_status(call.token, "answered")
    # In code mode the # finishes the entry (Twilio drops it); in press-pound mode # is the key.
    digits = keys if call.mode == "press-pound" else keys.split("#", 1)[0]
    result = calls.keyed(call.token, digits)
    if request.headers.get("Accept", "").startswith("application/json"):
        return JsonResponse({"approved": result.approved, "say": result.say})
    return redirect("delivery:outbox")


@csrf_exempt
@require_POST
def decline_call(request: HttpRequest, message_id: int) -> HttpResponse:
    """Decline a recorded call (the callee hangs up without keying anything)."""
    _require_dev()
    message = get_object_or_404(OutboxMessage, pk=message_id, channel="voice")
    calls.provider_status(message.call_token, "completed")
    return redirect("delivery:outbox")


def delivery_status(request: HttpRequest, flow_name: str) -> JsonResponse:
    """How the current stage's code is being delivered (polled by delivery-status.js):
    only the delivery of this session's own flow instance, never one named by the URL."""
    flow = FLOWS.get(flow_name)
    state = flow.load(request) if flow is not None else None
    if flow is None or state is None or state.expired():
        return JsonResponse({"state": "gone"}, status=404)
    stage = flow.stages[min(state.reached, len(flow.stages) - 1)]
    status_of = getattr(stage, "delivery_status", None)
    if status_of is None:
        return JsonResponse({"state": "none"})
    word, message = status_of(state)
    return JsonResponse({"state": word, "message": message})
