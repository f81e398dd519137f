"""Audit events of a flow's steps, named with the user the flow is about and its channel."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.flows.engine import FlowState


@dataclass(frozen=True)
class FlowUser:
    """Who a step is about, as the audit records them (its id and username snapshot)."""

    pk: int
    username: str


def flow_user(state: FlowState) -> FlowUser | User | None:
    """The account this flow instance is about (known once the password or link passed).

    The stage that named the account keeps its username beside its id: the audit's
    snapshot needs nothing more, so a step's audit event reads no row. The account's
    state (active, security mark) is re-read where it decides anything, not here.
    """
    user_id = state.data.get("user_id")
    if not user_id:
        return None
    username = state.data.get("username")
    if isinstance(username, str):
        return FlowUser(int(user_id), username)
    return User.objects.filter(pk=user_id).first()


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
