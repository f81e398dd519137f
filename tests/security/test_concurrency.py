"""Attack: two requests at once in one session, so that the slower one writes back an
older flow state and rolls a guard back (issue #7, the Call Me / Send Code bypass).

Every stage of every flow is tried: a concurrent request writes a guard into the flow's
state after this request read it and before it saved; the guard must survive, whatever
this request did, with every session engine the settings allow.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from unittest import mock

import pytest
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.flows import keys
from caregate.flows.engine import OUT_OF_DATE, Flow, FlowState, When
from caregate.flows.models import FlowInstance
from caregate.flows.registry import FLOWS
from caregate.staff import oidc
from tests import flowstate
from tests.conftest import PASSWORD
from tests.phone_steps import PHONE_STAGE, is_signed_in, sms_code, start, text, to_phone_stage

# The engines the settings choose (caregate/security/session_store.py): without and with
# Redis in front of the database.
SESSION_ENGINES = [
    "caregate.security.session_store_db",
    "caregate.security.session_store",
]
# Every action any stage knows, each posted with every field any stage reads: whatever
# the stage, one of these requests does what it can (send, verify, advance, go back).
ACTIONS = [
    "",
    "send",
    "resend",
    "verify",
    "continue",
    "change",
    "sms",
    "call",
    "verify-sms",
    "check-call",
    "change-number",
    "create",
]
GUARD = "concurrent-guard"

STAGES = [
    (flow_name, index, stage.key)
    for flow_name, flow in FLOWS.items()
    for index, stage in enumerate(flow.stages)
]


def _fields(user, org) -> dict[str, str]:
    return {
        "email": user.email,
        "username": user.username,
        "password": PASSWORD,
        "method": "phone",
        "code": "123456",
        "new_password": "Brand-New-Passphrase-42",
        "confirm_password": "Brand-New-Passphrase-42",
        "country_code": "1",
        "phone_number": "202-555-0143",
        "npi": org.npi,
        "registration_code": "REG-CODE-1",
        "first_name": "Dana",
        "last_name": "Smith",
        "confirm_email": "fresh.person@clinic.example",
        "fax": "(202) 555-0144",
    }


def flow_data(user, org, flow_name: str, stage_key: str) -> dict:
    """Flow data that lets any stage of ``flow_name`` run for ``user``."""
    data = {
        "user_id": user.pk,
        "email": user.email,
        "phone": user.phone_number or "+12025550143",
        "method": "phone",
        "organization_id": org.pk,
        "remember_me": False,
    }
    if (flow_name, stage_key) == ("forgot-password", "factor"):
        # Forgot password's stronger factor (a When stage): only for an account that has one.
        data["reset_factor"] = "authenticator-app"
    return data


def put_at_stage(client: Client, flow: Flow, index: int, data: dict) -> FlowState:
    """A flow instance of this client's session that has reached stage ``index``."""
    state = FlowState.new(flow.name, 900, data)
    state.raw["reached"] = index
    FlowInstance.objects.create(
        id=state.id, flow=flow.name, state=state.raw, expires_at="2999-01-01T00:00:00Z"
    )
    session = client.session
    session[keys.FLOWS] = {flow.name: state.id}
    session.save()
    return state


def concurrent_guard_write(flow: Flow, instance_id: str, stage_key: str) -> None:
    """What another request of the same session does meanwhile: it sets a guard, through
    the engine's own save (compare-and-set on the revision it reads)."""
    row = FlowInstance.objects.get(pk=instance_id)
    other = FlowState(row.state, row.revision)
    other.stage(stage_key)[GUARD] = True
    written = FlowInstance.objects.filter(pk=instance_id, revision=other.revision).update(
        state=other.raw, revision=row.revision + 1
    )
    assert written == 1


def _identity_provider(flow_name: str):
    """The staff LOGIN's stage sends the browser to the identity provider: stand in for
    the provider's discovery (its page is otherwise "not available", a 503 by design)."""
    if flow_name != "staff-login":
        return contextlib.nullcontext()
    outgoing = oidc.AuthorizationRequest(
        url="https://idp.example.org/authorize?state=s", state="s", nonce="n", code_verifier="v"
    )
    return mock.patch.object(oidc, "authorization_request", return_value=outgoing)


@pytest.mark.django_db
@pytest.mark.parametrize("session_engine", SESSION_ENGINES)
@pytest.mark.parametrize(("flow_name", "index", "stage_key"), STAGES)
def test_a_slower_request_never_rolls_back_a_guard_written_meanwhile(
    settings, make_user, org, session_engine, flow_name, index, stage_key
):
    settings.SESSION_ENGINE = session_engine
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    flow = FLOWS[flow_name]
    stage = flow.stages[index]
    user = make_user(mfa="phone" if flow_name == "phone-login" else "email")
    if flow_name in {"mfa-registration", "complete-registration"}:
        user.mfa_method = "none"
        user.save()
    data = flow_data(user, org, flow_name, stage_key)
    fields = _fields(user, org)
    original_apply = Flow._apply
    for method, action in [("GET", None), *(("POST", a) for a in ACTIONS)]:
        client = Client()
        state = put_at_stage(client, flow, index, data)
        if isinstance(stage, When):
            assert stage.applies(state)

        def racing_apply(self, request, state, index, result, _id=state.id):
            # The other request lands after this one read the state and ran the stage,
            # and before this one saves: the window in which a lost update happens.
            concurrent_guard_write(self, _id, stage_key)
            return original_apply(self, request, state, index, result)

        url = flow.url(stage_key)
        with mock.patch.object(Flow, "_apply", racing_apply), _identity_provider(flow_name):
            if method == "GET":
                response = client.get(url)
            else:
                response = client.post(url, {**fields, "action": action})
        assert response.status_code < 500, (flow_name, stage_key, action)
        row = FlowInstance.objects.filter(pk=state.id).first()
        if row is not None:
            # Still there: the guard written meanwhile must not have been overwritten.
            assert row.state["stages"].get(stage_key, {}).get(GUARD) is True, (
                flow_name,
                stage_key,
                method,
                action,
            )
        else:
            # Gone: only a Restart (which throws the attempt away) may remove it; a stale
            # request must never finish the flow (no sign-in from an outdated state).
            assert not is_signed_in(client), (flow_name, stage_key, action)


@pytest.mark.django_db
def test_stale_request_is_told_the_page_was_out_of_date(client, make_user, settings):
    """The out-of-date answer: nothing written, the page as it now stands, a message."""
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    user = make_user(mfa="phone")
    to_phone_stage(client, user)
    flow = FLOWS["phone-login"]
    instance_id = client.session[keys.FLOWS]["phone-login"]
    original_apply = Flow._apply

    def racing_apply(self, request, state, index, result):
        concurrent_guard_write(self, instance_id, "phone")
        return original_apply(self, request, state, index, result)

    with mock.patch.object(Flow, "_apply", racing_apply):
        response = client.post(PHONE_STAGE, {"action": "sms"})
    assert response.status_code == 302 and response.url == flow.url("phone")
    assert OUT_OF_DATE in text(client.get(response.url))
    assert flowstate.raw(client.session, "phone-login")["stages"]["phone"] == {GUARD: True}


@pytest.mark.django_db
def test_rolled_back_session_pointer_cannot_revive_an_older_attempt(client, make_user):
    """A slower request that saves an old copy of the session puts back the pointer to
    a flow instance started before: that instance was deleted when the new one began."""
    user = make_user(mfa="phone")
    to_phone_stage(client, user)
    old_pointer = client.session[keys.FLOWS]["phone-login"]
    start(client, "phone")  # a new attempt replaces the old one
    session = client.session
    session[keys.FLOWS] = {"phone-login": old_pointer}  # the stale write of the session
    session.save()
    response = client.post(PHONE_STAGE, {"action": "sms"})
    assert response.status_code == 302 and response.url == "/"
    assert "Please start again from the login page." in text(client.get("/"))


@pytest.mark.django_db
def test_the_other_flow_of_the_session_cannot_overwrite_this_one(client, make_user, settings):
    """The review's bypass, step by step without threads: the email flow's requests save
    the session they loaded before Call Me; the phone flow's state is not in it."""
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    user = make_user(mfa="phone")
    to_phone_stage(client, user)
    start(client, "email")
    client.post(PHONE_STAGE, {"action": "sms"})
    stale_session = dict(client.session.items())  # what a slow request has loaded
    response = client.post(PHONE_STAGE, {"action": "call"})
    call_code = response.content.decode().split('class="call-code"')[1].split(">")[1][:6]
    session = client.session
    for key, value in stale_session.items():  # ... and what it writes back afterwards
        session[key] = value
    session.save()
    response = client.post(PHONE_STAGE, {"action": "verify-sms", "code": call_code})
    assert not (response.status_code == 302 and response.url == "/home/")
    assert not is_signed_in(client)
    assert flowstate.raw(client.session, "phone-login")["stages"]["phone"]["mode"] == "call"


@pytest.mark.django_db(transaction=True)
def test_two_last_steps_at_once_sign_in_once(make_user, settings):
    """Replay by concurrency: the same correct code posted twice at the same moment."""
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    user = make_user(mfa="phone")
    first = Client()
    to_phone_stage(first, user)
    first.post(PHONE_STAGE, {"action": "sms"})
    code = sms_code(user.phone_number)
    second = Client()
    second.cookies = first.cookies
    barrier = threading.Barrier(2)
    responses = []

    def post(client):
        barrier.wait()
        responses.append(client.post(PHONE_STAGE, {"action": "verify-sms", "code": code}))

    threads = [threading.Thread(target=post, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    homes = [r for r in responses if r.status_code == 302 and r.url == "/home/"]
    assert len(homes) == 1
    assert AuditEvent.objects.filter(event="signin", outcome="success").count() == 1


def test_every_stage_is_tried():
    """The parametrization above covers every stage of every registered flow."""
    assert len(STAGES) == sum(len(flow.stages) for flow in FLOWS.values())
    assert {name for name, _, _ in STAGES} == set(FLOWS)
    assert len(list(itertools.product(SESSION_ENGINES, STAGES))) >= 2 * len(STAGES)
