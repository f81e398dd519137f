"""Twilio's requests to Caregate: the TwiML that drives a call, and status callbacks
(of calls, and of the SMS the delivery worker sent).

Every request must carry a valid X-Twilio-Signature for the public URL it was sent to
(Twilio's RequestValidator); anything else gets 403 and changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse

from caregate.audit.log import record
from caregate.delivery import tasks
from caregate.delivery.phone import public_url
from caregate.verification import calls
from caregate.verification.models import PhoneCall

View = Callable[..., HttpResponse]
GATHER_SECONDS = 15


def twilio_signed(view: View) -> View:
    """Refuse (403) any request whose Twilio signature does not match."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        token = settings.TWILIO_AUTH_TOKEN
        signature = request.headers.get("X-Twilio-Signature", "")
        url = public_url(request.get_full_path())
        if not token or not signature:
            return HttpResponseForbidden("signature required")
        if not RequestValidator(token).validate(url, request.POST.dict(), signature):
            record("twilio.webhook", "bad-signature", request=request, path=request.path)
            return HttpResponseForbidden("bad signature")
        return view(request, *args, **kwargs)

    return csrf_exempt(require_POST(wrapper))


def _twiml(response: VoiceResponse) -> HttpResponse:
    return HttpResponse(str(response), content_type="text/xml")


def _gather(call: PhoneCall, say: str) -> VoiceResponse:
    response = VoiceResponse()
    action = public_url(reverse("delivery:twiml-gather", args=[call.token]))
    if call.mode == "press-pound":
        # No finishing key: '#' itself arrives as the one gathered digit.
        gather = response.gather(
            action=action, method="POST", num_digits=1, finish_on_key="", timeout=GATHER_SECONDS
        )
    else:
        gather = response.gather(
            action=action,
            method="POST",
            finish_on_key="#",
            timeout=GATHER_SECONDS,
            action_on_empty_result=True,  # a bare # reaches us (and approves nothing)
        )
    gather.say(say)
    response.say("We did not receive your input. Goodbye.")
    return response


@twilio_signed
def answer(request: HttpRequest, token: str) -> HttpResponse:
    """The call was answered: say the prompt and gather the keys."""
    call = PhoneCall.objects.filter(token=token).first()
    if call is None or calls.refresh(call).status not in calls.OPEN:
        response = VoiceResponse()
        response.say("This call is no longer valid. Goodbye.")
        return _twiml(response)
    calls.provider_status(token, "answered")
    return _twiml(_gather(call, calls.prompt(call, settings.CAREGATE_BRAND_NAME)))


@twilio_signed
def gather(request: HttpRequest, token: str) -> HttpResponse:
    """The callee keyed something."""
    call = PhoneCall.objects.select_related("user").filter(token=token).first()
    digits = request.POST.get("Digits", "")[:20]
    result = calls.keyed(token, digits)
    record(
        "call.keys",
        "approved" if result.approved else "refused",
        request=request,
        user=call.user if call is not None else None,
        channel="voice",
    )
    if result.ask_again and call is not None:
        return _twiml(_gather(call, result.say))
    response = VoiceResponse()
    response.say(result.say)
    response.hangup()
    return _twiml(response)


@twilio_signed
def status(request: HttpRequest, token: str) -> HttpResponse:
    """Twilio's call status callback (ringing, no-answer, busy, completed…)."""
    value = request.POST.get("CallStatus", "")[:20]
    calls.provider_status(token, value)
    call = PhoneCall.objects.select_related("user").filter(token=token).first()
    record(
        "call.status",
        value or "unknown",
        request=request,
        user=call.user if call is not None else None,
        channel="voice",
    )
    return HttpResponse(status=204)


@twilio_signed
def sms_status(request: HttpRequest, token: str) -> HttpResponse:
    """Twilio's message status callback: an SMS that could not be delivered shows on the
    page (the token in the URL names the one delivery; the message SID must match it)."""
    value = request.POST.get("MessageStatus", "")[:20]
    delivery = tasks.sms_status(
        token,
        request.POST.get("MessageSid", "")[:64],
        value,
        request.POST.get("ErrorCode", "")[:10],
    )
    if value in {"delivered", "undelivered", "failed"}:
        record(
            "sms.status",
            value,
            request=request,
            user=delivery.user if delivery is not None else None,
            channel="sms",
        )
    return HttpResponse(status=204)
