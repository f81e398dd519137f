"""Attack: a code taken from another channel, number, flow instance or purpose.

Each code is bound to its flow instance, purpose, channel and destination: the typed-code
path takes only a code sent by SMS to the number on record, a call takes only the digits
of the code it was placed with, and neither ever takes the other's.
"""

from __future__ import annotations

import pytest
from django.test import Client

from caregate.verification import calls
from caregate.verification.codes import CodeStatus, CodeVerifier
from caregate.verification.models import PhoneCall
from tests import flowstate
from tests.phone_steps import (
    PHONE,
    PHONE_STAGE,
    answer,
    is_signed_in,
    newest_call,
    shown_call_code,
    sms_code,
    text,
    to_phone_stage,
)

pytestmark = pytest.mark.django_db
OTHER_PHONE = "+12025550177"


@pytest.fixture(autouse=True)
def _no_cooldown(settings):
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    settings.CAREGATE_CALL_MODE = "code"


@pytest.fixture
def phone_user(make_user):
    return make_user(mfa="phone", phone=PHONE)


def verifier(flow_id: str = "flow-a", purpose: str = "phone-login:phone") -> CodeVerifier:
    return CodeVerifier(flow_id, purpose, lifetime_seconds=300)


# --- through the flow, as the attacker drives it ----------------------------------------


def test_call_code_typed_as_the_sms_code_is_refused(client, phone_user):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    shown = shown_call_code(client.post(PHONE_STAGE, {"action": "call"}))
    # Even with the page state put back to "SMS sent" (the lost update of the review),
    # the call's number is no SMS code.
    flowstate.edit(
        client.session, "phone-login", lambda raw: raw["stages"]["phone"].update(mode="sms")
    )
    response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": shown})
    assert response.status_code == 200
    assert not is_signed_in(client)
    assert PhoneCall.objects.get().status == PhoneCall.Status.CALLING  # never answered


def test_sms_code_keyed_into_the_call_is_refused(client, phone_user):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "call"})
    call_message = newest_call()
    client.post(PHONE_STAGE, {"action": "sms"})  # the newest code is now the SMS one
    said = answer(client, call_message, sms_code() + "#")
    assert "not correct" in said["say"] or "no longer valid" in said["say"], said
    assert PhoneCall.objects.get().status != PhoneCall.Status.APPROVED
    client.post(PHONE_STAGE, {"action": "check-call"})
    assert not is_signed_in(client)


def test_sms_code_sent_to_a_number_changed_since_is_refused(client, phone_user):
    to_phone_stage(client, phone_user)
    client.post(PHONE_STAGE, {"action": "sms"})
    code = sms_code()
    phone_user.phone_number = OTHER_PHONE
    phone_user.save()
    response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    assert response.status_code == 200
    assert "No text message code is waiting for this number." in text(response)
    assert not is_signed_in(client)


def test_approved_call_to_a_number_changed_since_does_not_sign_in(client, phone_user):
    to_phone_stage(client, phone_user)
    shown = shown_call_code(client.post(PHONE_STAGE, {"action": "call"}))
    answer(client, newest_call(), shown + "#")
    assert PhoneCall.objects.get().status == PhoneCall.Status.APPROVED
    phone_user.phone_number = OTHER_PHONE
    phone_user.save()
    client.post(PHONE_STAGE, {"action": "check-call"})
    assert not is_signed_in(client)


def test_code_from_another_flow_instance_is_refused(phone_user):
    victim, attacker = Client(), Client()
    to_phone_stage(victim, phone_user)
    victim.post(PHONE_STAGE, {"action": "sms"})
    code = sms_code()
    to_phone_stage(attacker, phone_user)
    attacker.post(PHONE_STAGE, {"action": "sms"})  # a live code of its own, to the phone
    response = attacker.post(PHONE_STAGE, {"action": "verify-sms", "code": code})
    assert response.status_code == 200
    assert not is_signed_in(attacker)


def test_call_token_of_another_instance_cannot_be_consumed(phone_user):
    victim, attacker = Client(), Client()
    to_phone_stage(victim, phone_user)
    shown = shown_call_code(victim.post(PHONE_STAGE, {"action": "call"}))
    answer(victim, newest_call(), shown + "#")
    token = PhoneCall.objects.get().token
    to_phone_stage(attacker, phone_user)
    flowstate.edit(
        attacker.session,
        "phone-login",
        lambda raw: raw["stages"].setdefault("phone", {}).update(mode="call", call_token=token),
    )
    attacker.post(PHONE_STAGE, {"action": "check-call"})
    assert not is_signed_in(attacker)
    assert PhoneCall.objects.get().status == PhoneCall.Status.APPROVED  # not spent


# --- the verifier itself ----------------------------------------------------------------


def test_verifier_refuses_a_code_for_another_channel():
    issued = verifier().issue("voice", PHONE)
    assert verifier().check(issued.code, channel="sms", destination=PHONE).status is (
        CodeStatus.MISSING
    )


def test_verifier_refuses_a_code_for_another_destination():
    issued = verifier().issue("sms", PHONE)
    result = verifier().check(issued.code, channel="sms", destination=OTHER_PHONE)
    assert result.status is CodeStatus.MISSING
    # ... and the right one still works (the refusal spent nothing).
    assert verifier().check(issued.code, channel="sms", destination=PHONE).status is (
        CodeStatus.OK
    )


def test_verifier_refuses_a_code_of_another_instance_or_purpose():
    issued = verifier("flow-a").issue("sms", PHONE)
    for other in (verifier("flow-b"), verifier("flow-a", "mfa-registration:phone")):
        assert other.check(issued.code, channel="sms", destination=PHONE).status is not (
            CodeStatus.OK
        )


def test_a_call_checks_only_the_code_it_was_placed_with():
    v = verifier()
    voice = v.issue("voice", PHONE)
    call = calls.new_call("flow-a", "phone-login:phone", PHONE, voice.record)
    sms = v.issue("sms", PHONE)  # newer, and voids the call's code
    assert calls.check_call_code(call, sms.code) is not CodeStatus.OK
    assert calls.check_call_code(call, voice.code) is not CodeStatus.OK  # voided by the SMS


def test_a_call_refuses_its_code_when_the_stored_destination_differs():
    v = verifier()
    voice = v.issue("voice", PHONE)
    call = calls.new_call("flow-a", "phone-login:phone", OTHER_PHONE, voice.record)
    assert calls.check_call_code(call, voice.code) is CodeStatus.MISSING


def test_the_stored_hash_covers_channel_and_destination():
    """A row edited to another channel or number (database access, no key) stops working."""
    v = verifier()
    issued = v.issue("voice", PHONE)
    type(issued.record).objects.filter(pk=issued.record.pk).update(channel="sms")
    assert v.check(issued.code, channel="sms", destination=PHONE).status is CodeStatus.WRONG
