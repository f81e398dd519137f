"""The flow engine: a flow is an ordered list of stages, each one screen.

A flow's progress is JSON kept server-side in its own database row (``FlowInstance``),
with its own expiry; the session holds only a pointer to it (flow name → instance id).
Only the stage the user has reached can be shown: a later stage's URL redirects back, and
a finished or expired flow cannot be replayed.

Every write of a flow's state is a compare-and-set on the row's revision. Two requests of
one session that run at the same time (two tabs, a double click, an attacker's scripted
burst) both read revision N; the first to finish writes N+1, and the second finds its copy
out of date: it writes nothing and the user is sent back to the page as it now stands
("This page was out of date; please try again."). A slower request can therefore never
put back an older state, and no guard kept in flow state can be rolled back.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import monotonic
from typing import Any, Protocol

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone

from caregate import rowsql
from caregate.flows import keys
from caregate.flows.models import FlowInstance

# Rows of abandoned attempts go once their flow has expired, at a flow start, at most
# once a minute per process: the DELETE and its commit on every start were a share of each
# sign-in's cost. A row kept a minute past its expiry opens nothing: dispatch() refuses an
# expired state before any stage sees it.
CLEANUP_INTERVAL_SECONDS = 60.0


class _Cleanup:
    next_at = 0.0  # monotonic() from which the next start drops expired rows


def _drop_expired_instances() -> None:
    clock = monotonic()
    if clock < _Cleanup.next_at:
        return
    _Cleanup.next_at = clock + CLEANUP_INTERVAL_SECONDS
    FlowInstance.objects.filter(expires_at__lt=timezone.now()).delete()


OUT_OF_DATE = "This page was out of date; please try again."

# --- results a stage returns ----------------------------------------------------------


@dataclass(frozen=True)
class Render:
    """Show the stage's page (again) with this context."""

    context: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    template: str | None = None


@dataclass(frozen=True)
class Advance:
    """The stage is finished; keep ``data`` for the stages after it."""

    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Back:
    """Return to an earlier stage (the guide's "Change"), forgetting that stage's state."""

    stage: str


@dataclass(frozen=True)
class Restart:
    """Throw the flow away and send the user back to its start with a message."""

    message: str


@dataclass(frozen=True)
class Leave:
    """End the flow and go elsewhere (another flow, a help page)."""

    url: str


@dataclass(frozen=True)
class Away:
    """Keep the flow and send the browser to another site (the staff LOGIN's identity
    provider); the flow goes on when the browser comes back to this stage's URL."""

    url: str


Result = Render | Advance | Back | Restart | Leave | Away


# --- state ----------------------------------------------------------------------------


class StaleState(Exception):
    """Another request changed this flow instance after this request read it."""


def _serialized(raw: dict[str, Any]) -> str:
    # An empty stage namespace (``stage()`` creates one on first look) is no change: a page
    # shown by GET must not write the row (a write per render, and a revision bump that
    # would make a concurrent POST of the same user "out of date" for nothing).
    stages = {key: value for key, value in raw.get("stages", {}).items() if value != {}}
    return json.dumps({**raw, "stages": stages}, sort_keys=True, separators=(",", ":"))


class FlowState:
    """The JSON state of one flow instance, and the revision this request read."""

    def __init__(self, raw: dict[str, Any], revision: int = 0) -> None:
        self.raw = raw
        self.revision = revision
        self._as_read = _serialized(raw)

    def changed(self) -> bool:
        """Whether this request changed the state since it was read or last saved."""
        return _serialized(self.raw) != self._as_read

    def saved(self) -> None:
        """The state was written: it is now revision + 1."""
        self.revision += 1
        self._as_read = _serialized(self.raw)

    @classmethod
    def new(cls, flow: str, timeout: int, data: dict[str, Any]) -> FlowState:
        now = int(time.time())
        return cls(
            {
                # Random per instance: codes and call digits are bound to it.
                "id": secrets.token_urlsafe(16),
                "flow": flow,
                "reached": 0,
                "started_at": now,
                "expires_at": now + timeout,
                "data": dict(data),
                "stages": {},
            }
        )

    @property
    def id(self) -> str:
        return self.raw["id"]

    @property
    def reached(self) -> int:
        return self.raw["reached"]

    @property
    def data(self) -> dict[str, Any]:
        return self.raw["data"]

    def expired(self, now: float | None = None) -> bool:
        return (now if now is not None else time.time()) >= self.raw["expires_at"]

    def stage(self, key: str) -> dict[str, Any]:
        """Return the mutable namespace of one stage's own state."""
        return self.raw["stages"].setdefault(key, {})


# --- stages and flows -----------------------------------------------------------------


class Stage(Protocol):
    key: str  # URL segment and the namespace of its state
    template: str

    def handle(self, request: HttpRequest, state: FlowState) -> Result: ...


OnDone = Callable[[HttpRequest, FlowState], HttpResponse]


@dataclass(frozen=True)
class When:
    """A stage that only some instances of a flow go through (e.g. PHONE, not EMAIL)."""

    applies: Callable[[FlowState], bool]
    stage: Stage

    @property
    def key(self) -> str:
        return self.stage.key

    @property
    def template(self) -> str:
        return self.stage.template

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        return self.stage.handle(request, state)

    def __getattr__(self, name: str) -> Any:
        # Stage-specific helpers (e.g. PhoneChallenge.current_call) stay reachable.
        return getattr(self.stage, name)


def _applies(stage: Stage, state: FlowState) -> bool:
    return not isinstance(stage, When) or stage.applies(state)


@dataclass
class Flow:
    """An ordered list of stages, read top to bottom like the guide's section."""

    name: str
    title: str
    stages: list[Stage]
    on_done: OnDone
    start_url: str = "portal:login"  # where a restarted or expired flow sends the user

    def url(self, stage_key: str) -> str:
        return reverse("flows:stage", args=[self.name, stage_key])

    def index_of(self, stage_key: str) -> int | None:
        for index, stage in enumerate(self.stages):
            if stage.key == stage_key:
                return index
        return None

    # -- storage: the row holds the state, the session only points at it --
    def _pointer(self, request: HttpRequest) -> str:
        pointer = request.session.get(keys.FLOWS, {}).get(self.name)
        return pointer if isinstance(pointer, str) else ""

    def _point(self, request: HttpRequest, instance_id: str | None) -> None:
        pointers = dict(request.session.get(keys.FLOWS, {}))
        if instance_id is None:
            if self.name not in pointers:
                return
            del pointers[self.name]
        elif pointers.get(self.name) == instance_id:
            return  # the same value: assigning it would mark the session modified
        else:
            pointers[self.name] = instance_id
        request.session[keys.FLOWS] = pointers

    def load(self, request: HttpRequest) -> FlowState | None:
        pointer = self._pointer(request)
        if not pointer:
            return None
        # By hand-written SQL (caregate.rowsql): nearly every request of a sign-in reads
        # its flow row, and building the query through the ORM cost 7x running it.
        row = rowsql.select_one(
            FlowInstance, ("state", "revision"), {"id": pointer, "flow": self.name}
        )
        return FlowState(row["state"], row["revision"]) if row is not None else None

    def save(self, request: HttpRequest, state: FlowState) -> None:
        """Write the state if this request changed it; raise StaleState if another
        request wrote it first (compare-and-set on the revision: never overwrite)."""
        if not state.changed():
            return
        written = rowsql.update(
            FlowInstance,
            {"state": state.raw},
            {"id": state.id, "revision": state.revision},
            increment="revision",
        )
        if not written:
            raise StaleState
        state.saved()

    def finish(self, request: HttpRequest, state: FlowState) -> None:
        """Delete the instance, only if it is still the revision this request read: of
        two concurrent last steps, exactly one finishes the flow."""
        deleted = rowsql.delete(FlowInstance, {"id": state.id, "revision": state.revision})
        self._point(request, None)
        if not deleted:
            raise StaleState

    def discard(self, request: HttpRequest) -> None:
        """Forget this session's instance of the flow (Cancel, restart, a new start)."""
        pointer = self._pointer(request)
        if pointer:
            rowsql.delete(FlowInstance, {"id": pointer, "flow": self.name})
        self._point(request, None)

    # -- entry points --
    def start(self, request: HttpRequest, **data: Any) -> HttpResponse:
        """Begin a fresh instance (any earlier one is dropped) at the first stage."""
        self.discard(request)
        _drop_expired_instances()
        state = FlowState.new(self.name, settings.CAREGATE_FLOW_TIMEOUT_SECONDS, data)
        state.raw["reached"] = self._next_index(state, 0)
        rowsql.insert(
            FlowInstance,
            {
                "id": state.id,
                "flow": self.name,
                "revision": 0,
                "state": state.raw,
                "expires_at": datetime.fromtimestamp(state.raw["expires_at"], tz=UTC),
            },
        )
        self._point(request, state.id)
        return redirect(self.url(self.stages[state.reached].key))

    def restart(self, request: HttpRequest, message: str) -> HttpResponse:
        self.discard(request)
        messages.warning(request, message)
        return redirect(self.start_url)

    def dispatch(self, request: HttpRequest, stage_key: str) -> HttpResponse:
        """Serve one stage's URL, refusing any stage the flow has not reached."""
        index = self.index_of(stage_key)
        state = self.load(request)
        if state is None:
            return self.restart(request, "Please start again from the login page.")
        if state.expired():
            return self.restart(
                request, "Your sign-in took too long and has expired. Please start again."
            )
        if index is None or index != state.reached:
            # Never skip ahead; going back re-enters the stage the user is on. An address
            # that names no stage of this flow leaves the attempt alone too: anyone can
            # make a browser GET one (only Cancel, a POST, throws an attempt away).
            return redirect(self.url(self.stages[state.reached].key))
        stage = self.stages[index]
        result = stage.handle(request, state)
        try:
            return self._apply(request, state, index, result)
        except StaleState:
            return self._out_of_date(request)

    def _out_of_date(self, request: HttpRequest) -> HttpResponse:
        """Another request changed the flow meanwhile: show the page as it now stands."""
        current = self.load(request)
        if current is None or current.expired():
            return self.restart(request, "Please start again from the login page.")
        messages.warning(request, OUT_OF_DATE)
        return redirect(self.url(self.stages[current.reached].key))

    def _next_index(self, state: FlowState, start: int) -> int:
        """The first stage from ``start`` on that this instance goes through."""
        index = start
        while index < len(self.stages) and not _applies(self.stages[index], state):
            index += 1
        return index

    def _apply(
        self, request: HttpRequest, state: FlowState, index: int, result: Result
    ) -> HttpResponse:
        stage = self.stages[index]
        if isinstance(result, Render):
            self.save(request, state)
            context = {"flow": self, "stage": stage, "state": state, **result.context}
            return render(
                request, result.template or stage.template, context, status=result.status
            )
        if isinstance(result, Advance):
            state.data.update(result.data)
            following = self._next_index(state, index + 1)
            state.raw["reached"] = following
            if following >= len(self.stages):
                # Finish first: a finished flow cannot be replayed.
                self.finish(request, state)
                return self.on_done(request, state)
            self.save(request, state)
            return redirect(self.url(self.stages[following].key))
        if isinstance(result, Back):
            target = self.index_of(result.stage)
            if target is not None and target < index:
                state.raw["reached"] = target
                state.raw["stages"].pop(result.stage, None)
            self.save(request, state)
            return redirect(self.url(self.stages[state.reached].key))
        if isinstance(result, Restart):
            return self.restart(request, result.message)
        if isinstance(result, Away):
            self.save(request, state)
            return redirect(result.url)
        self.finish(request, state)
        return redirect(result.url)
