"""Audit events of a flow's steps, named with the user the flow is about and its channel."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.flows.engine import FlowState


def flow_user(state: FlowState) -> User | None:
    """The account this flow instance is about (known once the password or link passed)."""
    user_id = state.data.get("user_id")
    return User.objects.filter(pk=user_id).first() if user_id else None


def record_step(
    request: HttpRequest,
    state: FlowState,
    event: str,
    outcome: str,
    *,
    channel: str,
    **detail: Any,
) -> None:
    """Audit one step of a flow: who (the flow's user), which flow, which channel."""
    record(
        event,
        outcome,
        request=request,
        user=flow_user(state),
        flow=state.raw["flow"],
        channel=channel,
        **detail,
    )
