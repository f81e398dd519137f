"""The flow engine: a flow is an ordered list of stages, each one screen.

A flow's progress lives server-side in the session as JSON, namespaced by flow name, with
its own expiry. Only the stage the user has reached can be shown: a later stage's URL
redirects back, and a finished or expired flow cannot be replayed.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse

from caregate.flows import keys

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


Result = Render | Advance | Back | Restart | Leave


# --- state ----------------------------------------------------------------------------


class FlowState:
    """The JSON state of one flow instance, as kept in the session."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.raw = raw

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

    # -- session storage --
    def load(self, request: HttpRequest) -> FlowState | None:
        raw = request.session.get(keys.FLOWS, {}).get(self.name)
        return FlowState(raw) if raw else None

    def save(self, request: HttpRequest, state: FlowState) -> None:
        flows = request.session.get(keys.FLOWS, {})
        flows[self.name] = state.raw
        request.session[keys.FLOWS] = flows

    def discard(self, request: HttpRequest) -> None:
        flows = request.session.get(keys.FLOWS, {})
        if self.name in flows:
            del flows[self.name]
            request.session[keys.FLOWS] = flows

    # -- entry points --
    def start(self, request: HttpRequest, **data: Any) -> HttpResponse:
        """Begin a fresh instance (any earlier one is dropped) at the first stage."""
        state = FlowState.new(self.name, settings.CAREGATE_FLOW_TIMEOUT_SECONDS, data)
        state.raw["reached"] = self._next_index(state, 0)
        self.save(request, state)
        return redirect(self.url(self.stages[state.reached].key))

    def restart(self, request: HttpRequest, message: str) -> HttpResponse:
        self.discard(request)
        messages.warning(request, message)
        return redirect(self.start_url)

    def dispatch(self, request: HttpRequest, stage_key: str) -> HttpResponse:
        """Serve one stage's URL, refusing any stage the flow has not reached."""
        index = self.index_of(stage_key)
        state = self.load(request)
        if index is None or state is None:
            return self.restart(request, "Please start again from the login page.")
        if state.expired():
            return self.restart(
                request, "Your sign-in took too long and has expired. Please start again."
            )
        if index != state.reached:
            # Never skip ahead; going back re-enters the stage the user is on.
            return redirect(self.url(self.stages[state.reached].key))
        stage = self.stages[index]
        result = stage.handle(request, state)
        return self._apply(request, state, index, result)

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
                # Discard first: a finished flow cannot be replayed.
                self.discard(request)
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
        self.discard(request)
        return redirect(result.url)
