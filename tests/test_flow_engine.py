"""The flow engine: stage order, results, expiry, no replay, JSON state per flow.

Most tests drive a tiny three-stage flow built here through RequestFactory with a real
session store; the rest drive the real email-login flow through the test client.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from unittest import mock

import pytest
from django.contrib.messages import get_messages
from django.contrib.messages.storage.fallback import FallbackStorage
from django.http import HttpResponse
from django.test import RequestFactory

from caregate.audit.models import AuditEvent
from caregate.flows import keys
from caregate.flows.engine import (
    Advance,
    Back,
    Flow,
    FlowState,
    Leave,
    Render,
    Restart,
    When,
)
from tests import flowstate
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db

NAME = "engine-test"
TEMPLATE = "enginetest/stage.html"


@dataclass
class Step:
    """A dummy stage: GET shows it; POST does what ``action`` says."""

    key: str
    template: str = TEMPLATE
    calls: list[str] = field(default_factory=list)

    def handle(self, request, state: FlowState):
        self.calls.append(request.method)
        if request.method != "POST":
            return Render({"note": "shown"})
        action = request.POST.get("action", "next")
        own = state.stage(self.key)
        if action == "next":
            return Advance({self.key: request.POST.get("value", "")})
        if action == "restart":
            return Restart("Start over, please.")
        if action == "leave":
            return Leave("/help/")
        if action == "back":
            return Back(request.POST["to"])
        if action == "remember":
            own["tries"] = own.get("tries", 0) + 1
            return Render({"note": f"tries={own['tries']}"})
        if action == "teapot":
            return Render({"note": "brewing"}, status=418, template="enginetest/other.html")
        raise AssertionError(action)


@dataclass
class Engine:
    flow: Flow
    steps: list[Step]
    done: list[dict]
    session: object
    rf: RequestFactory

    def request(self, method: str, stage: str, data: dict | None = None):
        path = f"/{NAME}/{stage}/"
        request = self.rf.post(path, data or {}) if method == "POST" else self.rf.get(path)
        request.session = self.session
        request._messages = FallbackStorage(request)
        return request

    def get(self, stage: str):
        request = self.request("GET", stage)
        return self.flow.dispatch(request, stage), request

    def post(self, stage: str, **data):
        request = self.request("POST", stage, data)
        return self.flow.dispatch(request, stage), request

    def start(self, **data):
        request = self.request("GET", "start")
        return self.flow.start(request, **data), request

    @property
    def raw(self) -> dict | None:
        return flowstate.raw(self.session, NAME)


@pytest.fixture
def templates(settings, tmp_path):
    folder = tmp_path / "enginetest"
    folder.mkdir()
    (folder / "stage.html").write_text(
        "stage={{ stage.key }} note={{ note }} reached={{ state.reached }} flow={{ flow.name }}"
    )
    (folder / "other.html").write_text("other template: {{ note }}")
    engine = {**settings.TEMPLATES[0], "DIRS": [*settings.TEMPLATES[0]["DIRS"], tmp_path]}
    settings.TEMPLATES = [engine]


@pytest.fixture
def engine(templates, settings) -> Engine:
    steps = [Step("one"), Step("two"), Step("three")]
    done: list[dict] = []

    def on_done(request, state):
        done.append(dict(state.data))
        return HttpResponse("finished")

    flow = Flow(NAME, title="Engine test", stages=list(steps), on_done=on_done)
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    return Engine(flow, steps, done, store, RequestFactory())


def messages_of(request) -> list[str]:
    return [str(m) for m in get_messages(request)]


# --- start and order --------------------------------------------------------------------


def test_start_goes_to_the_first_stage(engine):
    response, _ = engine.start(origin="test")
    assert response.status_code == 302
    assert response.url == f"/{NAME}/one/"
    assert engine.raw["reached"] == 0
    assert engine.raw["data"] == {"origin": "test"}


def test_render_shows_the_reached_stage(engine):
    engine.start()
    response, _ = engine.get("one")
    assert response.status_code == 200
    assert response.content.decode() == f"stage=one note=shown reached=0 flow={NAME}"


def test_advance_moves_on_and_keeps_data(engine):
    engine.start(origin="test")
    response, _ = engine.post("one", value="first")
    assert response.status_code == 302 and response.url == f"/{NAME}/two/"
    assert engine.raw["reached"] == 1
    assert engine.raw["data"] == {"origin": "test", "one": "first"}


def test_a_later_stage_redirects_to_the_reached_one(engine):
    engine.start()
    response, _ = engine.get("three")
    assert response.status_code == 302 and response.url == f"/{NAME}/one/"
    response, _ = engine.post("two", value="skip-ahead")
    assert response.status_code == 302 and response.url == f"/{NAME}/one/"
    # The later stages never ran, and nothing moved.
    assert engine.steps[1].calls == [] and engine.steps[2].calls == []
    assert engine.raw["reached"] == 0
    assert "two" not in engine.raw["data"]


def test_an_earlier_stage_redirects_to_the_reached_one(engine):
    engine.start()
    engine.post("one", value="x")
    engine.steps[0].calls.clear()
    response, _ = engine.post("one", value="again")
    assert response.status_code == 302 and response.url == f"/{NAME}/two/"
    assert engine.steps[0].calls == []
    assert engine.raw["data"]["one"] == "x"


# --- restart ----------------------------------------------------------------------------


def test_no_state_restarts_at_the_login_page_with_a_message(engine):
    response, request = engine.get("two")
    assert response.status_code == 302 and response.url == "/"
    assert messages_of(request) == ["Please start again from the login page."]
    assert engine.steps[1].calls == []


def test_unknown_stage_goes_back_to_the_reached_one_and_keeps_the_attempt(engine):
    """Anyone can make a browser GET /<flow>/<anything>/: it must not throw the attempt
    away (the attacker review of session 16); only Cancel, a POST, does."""
    engine.start()
    before = dict(engine.raw)
    response, request = engine.get("nonexistent")
    assert response.status_code == 302 and response.url == "/engine-test/one/"
    assert messages_of(request) == []
    assert engine.raw == before


def test_unknown_stage_without_an_attempt_restarts(engine):
    response, request = engine.get("nonexistent")
    assert response.status_code == 302 and response.url == "/"
    assert messages_of(request) == ["Please start again from the login page."]


def test_expired_flow_restarts(engine, settings):
    settings.CAREGATE_FLOW_TIMEOUT_SECONDS = 60
    started = time.time()
    with mock.patch("caregate.flows.engine.time", mock.Mock(time=lambda: started)):
        engine.start()
    assert engine.raw["expires_at"] == int(started) + 60
    with mock.patch("caregate.flows.engine.time", mock.Mock(time=lambda: int(started) + 59)):
        response, _ = engine.get("one")
        assert response.status_code == 200
    with mock.patch("caregate.flows.engine.time", mock.Mock(time=lambda: int(started) + 60)):
        response, request = engine.post("one", value="late")
    assert response.status_code == 302 and response.url == "/"
    assert messages_of(request) == [
        "Your sign-in took too long and has expired. Please start again."
    ]
    assert engine.raw is None
    assert engine.steps[0].calls == ["GET"]  # the late POST never reached the stage


def test_expired_by_editing_the_session(engine):
    engine.start()
    flowstate.edit(engine.session, NAME, lambda raw: raw.update(expires_at=int(time.time()) - 1))
    response, request = engine.get("one")
    assert response.url == "/"
    assert "expired" in messages_of(request)[0]


def test_restart_result_discards_the_flow(engine):
    engine.start()
    engine.post("one", value="x")
    response, request = engine.post("two", action="restart")
    assert response.status_code == 302 and response.url == "/"
    assert messages_of(request) == ["Start over, please."]
    assert engine.raw is None
    response, _ = engine.get("two")
    assert response.url == "/"


def test_restart_goes_to_the_flows_start_url(engine):
    engine.flow.start_url = "portal:help"
    response, _ = engine.get("one")
    assert response.url == "/help/"


# --- the end of a flow ------------------------------------------------------------------


def test_finishing_calls_on_done_once_and_cannot_be_replayed(engine):
    engine.start()
    engine.post("one", value="a")
    engine.post("two", value="b")
    response, _ = engine.post("three", value="c")
    assert response.content == b"finished"
    assert engine.done == [{"one": "a", "two": "b", "three": "c"}]
    assert engine.raw is None
    # Posting the last stage again (a replay) restarts instead of finishing again.
    response, request = engine.post("three", value="c")
    assert response.status_code == 302 and response.url == "/"
    assert messages_of(request) == ["Please start again from the login page."]
    assert len(engine.done) == 1


def test_leave_ends_the_flow_and_goes_elsewhere(engine):
    engine.start()
    response, _ = engine.post("one", action="leave")
    assert response.status_code == 302 and response.url == "/help/"
    assert engine.raw is None
    assert engine.done == []


def test_render_keeps_stage_state_and_honours_status_and_template(engine):
    engine.start()
    response, _ = engine.post("one", action="remember")
    assert b"note=tries=1" in response.content
    response, _ = engine.post("one", action="remember")
    assert b"note=tries=2" in response.content
    assert engine.raw["stages"]["one"] == {"tries": 2}
    response, _ = engine.post("one", action="teapot")
    assert response.status_code == 418
    assert response.content == b"other template: brewing"
    assert engine.raw["reached"] == 0


def test_back_returns_to_an_earlier_stage_and_forgets_its_state(engine):
    engine.start()
    engine.post("one", action="remember")
    engine.post("one", value="a")
    response, _ = engine.post("two", action="back", to="one")
    assert response.status_code == 302 and response.url == f"/{NAME}/one/"
    assert engine.raw["reached"] == 0
    assert "one" not in engine.raw["stages"]


def test_back_cannot_jump_forward(engine):
    engine.start()
    engine.post("one", value="a")
    response, _ = engine.post("two", action="back", to="three")
    assert response.url == f"/{NAME}/two/"
    assert engine.raw["reached"] == 1


def test_when_skips_stages_that_do_not_apply(templates, settings):
    steps = [Step("one"), Step("two"), Step("three")]
    flow = Flow(
        NAME,
        title="t",
        stages=[steps[0], When(lambda s: s.data.get("one") == "yes", steps[1]), steps[2]],
        on_done=lambda request, state: HttpResponse("done"),
    )
    store = import_module(settings.SESSION_ENGINE).SessionStore()
    e = Engine(flow, steps, [], store, RequestFactory())
    e.start()
    response, _ = e.post("one", value="no")
    assert response.url == f"/{NAME}/three/"
    response, _ = e.get("two")
    assert response.url == f"/{NAME}/three/"
    assert steps[1].calls == []
    e.start()
    response, _ = e.post("one", value="yes")
    assert response.url == f"/{NAME}/two/"


# --- state in the session ---------------------------------------------------------------


def test_state_is_json_in_its_own_row_and_the_session_only_points_at_it(engine):
    engine.start(origin="test")
    engine.post("one", action="remember")
    raw = engine.raw
    assert set(raw) == {"id", "flow", "reached", "started_at", "expires_at", "data", "stages"}
    assert raw["flow"] == NAME
    assert json.loads(json.dumps(raw)) == raw
    # The session keeps only the instance id, and it survives the real session store.
    assert engine.session[keys.FLOWS] == {NAME: raw["id"]}
    engine.session.save()
    reloaded = type(engine.session)(engine.session.session_key)
    assert flowstate.raw(reloaded, NAME) == raw


def test_flows_do_not_share_state(engine, templates, settings):
    other = Flow(
        "other-flow",
        title="other",
        stages=[Step("one")],
        on_done=lambda request, state: HttpResponse("done"),
    )
    engine.start()
    first_id = engine.raw["id"]
    request = engine.request("GET", "start")
    other.start(request, mine=True)
    flows = engine.session[keys.FLOWS]
    assert set(flows) == {NAME, "other-flow"}
    assert flows["other-flow"] != first_id
    engine.post("one", value="a")
    assert flowstate.raw(engine.session, "other-flow")["reached"] == 0
    assert flowstate.raw(engine.session, "other-flow")["data"] == {"mine": True}
    # Discarding one leaves the other.
    engine.flow.discard(engine.request("GET", "x"))
    assert set(engine.session[keys.FLOWS]) == {"other-flow"}


def test_starting_again_drops_the_earlier_instance(engine):
    engine.start()
    first = engine.raw["id"]
    engine.post("one", value="a")
    engine.start()
    assert engine.raw["id"] != first
    assert engine.raw["reached"] == 0 and engine.raw["data"] == {}


# --- the real email-login flow through the test client ---------------------------------


def test_client_stage_without_state_restarts_with_message(client):
    response = client.get("/email-login/email-code/")
    assert response.status_code == 302 and response.url == "/"
    page = client.get("/")
    assert "Please start again from the login page." in page.content.decode()


def test_client_later_stage_redirects_back(client, email_user):
    client.post("/login/start/", {"method": "email"})
    response = client.get("/email-login/email-code/")
    assert response.status_code == 302 and response.url == "/email-login/credentials/"
    response = client.post("/email-login/email-code/", {"action": "send"})
    assert response.status_code == 302 and response.url == "/email-login/credentials/"


def test_client_unknown_flow_is_404(client):
    assert client.get("/no-such-flow/credentials/").status_code == 404


def test_client_expired_flow_restarts(client, email_user):
    client.post("/login/start/", {"method": "email"})
    flowstate.edit(
        client.session, "email-login", lambda raw: raw.update(expires_at=int(time.time()) - 1)
    )
    response = client.post(
        "/email-login/credentials/", {"email": email_user.email, "password": PASSWORD}
    )
    assert response.status_code == 302 and response.url == "/"
    assert "email-login" not in client.session.get(keys.FLOWS, {})
    page = client.get("/").content.decode()
    assert "Your sign-in took too long and has expired. Please start again." in page
    # The password was never checked: no audit event for it.
    assert not AuditEvent.objects.filter(event="signin.password").exists()


def test_client_expired_by_timeout_setting(client, email_user, settings):
    settings.CAREGATE_FLOW_TIMEOUT_SECONDS = 30
    client.post("/login/start/", {"method": "email"})
    later = time.time() + 31
    with mock.patch("caregate.flows.engine.time", mock.Mock(time=lambda: later)):
        response = client.get("/email-login/credentials/")
    assert response.status_code == 302 and response.url == "/"
    assert "email-login" not in client.session.get(keys.FLOWS, {})


def test_client_cancel_discards(client, email_user):
    client.post("/login/start/", {"method": "email"})
    assert "email-login" in client.session[keys.FLOWS]
    response = client.post("/email-login/cancel/")
    assert response.status_code == 302 and response.url == "/"
    assert "email-login" not in client.session.get(keys.FLOWS, {})


def test_client_finished_flow_cannot_be_replayed(signed_in):
    signins = AuditEvent.objects.filter(event="signin", outcome="success").count()
    assert "email-login" not in signed_in.session.get(keys.FLOWS, {})
    response = signed_in.post("/email-login/email-code/", {"action": "continue"})
    assert response.status_code == 302 and response.url == "/"
    assert AuditEvent.objects.filter(event="signin", outcome="success").count() == signins


def test_client_state_is_namespaced_per_flow(client, email_user):
    client.post("/login/start/", {"method": "email"})
    client.post("/login/start/", {"method": "phone"})
    flows = client.session[keys.FLOWS]
    assert set(flows) >= {"email-login", "phone-login"}
    assert flows["email-login"] != flows["phone-login"]
    assert flowstate.raw(client.session, "email-login")["flow"] == "email-login"


# --- expired rows ------------------------------------------------------------------------


def test_a_start_drops_expired_rows_at_most_once_a_minute(engine):
    from caregate.flows import engine as flow_engine
    from caregate.flows.models import FlowInstance

    engine.start()  # whoever started last set the next cleanup's time
    clock = flow_engine._Cleanup.next_at
    # Another browser's attempt, abandoned long ago.
    FlowInstance.objects.create(
        id="abandoned", flow=NAME, state={}, expires_at=datetime(2000, 1, 1, tzinfo=UTC)
    )
    with mock.patch.object(flow_engine, "monotonic", lambda: clock - 1):
        engine.start()  # within the minute: the expired row stays (and opens nothing)
    assert FlowInstance.objects.filter(pk="abandoned").exists()
    with mock.patch.object(flow_engine, "monotonic", lambda: clock):
        engine.start()  # the minute is over: this start drops it
    assert not FlowInstance.objects.filter(pk="abandoned").exists()
    assert FlowInstance.objects.filter(pk=engine.raw["id"]).exists()


def test_an_expired_row_left_behind_opens_nothing(engine):
    from caregate.flows.models import FlowInstance

    engine.start()
    engine.post("one", value="a")
    flowstate.edit(engine.session, NAME, lambda raw: raw.update(expires_at=int(time.time()) - 1))
    assert FlowInstance.objects.filter(pk=engine.raw["id"]).exists()
    response, request = engine.post("two", value="b")
    assert response.url == "/"
    assert "expired" in messages_of(request)[0]
    assert engine.steps[1].calls == []
