"""Read and edit a flow instance's state as the server keeps it (its own row)."""

from __future__ import annotations

from collections.abc import Callable

from caregate.flows import keys
from caregate.flows.models import FlowInstance


def instance(session, flow: str) -> FlowInstance | None:
    pointer = session.get(keys.FLOWS, {}).get(flow)
    return FlowInstance.objects.filter(pk=pointer).first() if pointer else None


def raw(session, flow: str) -> dict | None:
    """The JSON state of ``flow`` in this session, or None."""
    row = instance(session, flow)
    return row.state if row is not None else None


def edit(session, flow: str, change: Callable[[dict], None]) -> None:
    """Change the stored state in place (as a test's shortcut, bumping the revision)."""
    row = instance(session, flow)
    assert row is not None, f"no {flow} instance in this session"
    change(row.state)
    row.revision += 1
    row.save()
