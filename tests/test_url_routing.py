"""The URLconf: the flow stages are matched first, and shadow no other page.

caregate/flows/urls.py comes first in the URLconf and its ``flow`` converter matches only
a registered flow's name; these tests build an address for every named pattern and check
that it still resolves to that pattern, and that flow addresses reach the flow view.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse
from django.urls.resolvers import RoutePattern

from caregate.flows import views as flow_views
from caregate.flows.registry import FLOWS

# A sample value for each converter a pattern uses.
SAMPLES = {"int": "7", "slug": "sample-slug", "str": "sample", "flow": "email-login"}


def named_patterns(
    patterns: list, prefix: str = "", namespace: str = ""
) -> Iterator[tuple[str, str]]:
    """(view name, a sample path) for every named route in the URLconf."""
    for entry in patterns:
        route = str(entry.pattern)
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from named_patterns(entry.url_patterns, prefix + route, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            assert isinstance(entry.pattern, RoutePattern), route
            path = re.sub(
                r"<(?:(\w+):)?\w+>", lambda m: SAMPLES[m.group(1) or "str"], prefix + route
            )
            yield f"{namespace}{entry.name}", "/" + path


def test_every_named_page_resolves_to_itself() -> None:
    routes = list(named_patterns(get_resolver().url_patterns))
    assert len(routes) > 50  # the whole URLconf, not an empty walk
    wrong = {
        name: resolve(path).view_name for name, path in routes if resolve(path).view_name != name
    }
    assert wrong == {}


@pytest.mark.parametrize("flow_name", sorted(FLOWS))
def test_each_flows_stage_address_reaches_the_flow_view(flow_name: str) -> None:
    stage_key = FLOWS[flow_name].stages[0].key
    url = reverse("flows:stage", args=[flow_name, stage_key])
    match = resolve(url)
    assert match.func is flow_views.stage
    assert match.kwargs == {"flow_name": flow_name, "stage_key": stage_key}
    assert resolve(f"/{flow_name}/cancel/").func is flow_views.cancel


def test_two_segment_pages_are_not_taken_for_flows() -> None:
    for path in ("/login/start/", "/setup/users/", "/staff/login/", "/registration-error/reset/"):
        assert resolve(path).func is not flow_views.stage, path


@pytest.mark.django_db
def test_an_unknown_flow_is_not_found(client) -> None:
    assert client.get("/no-such-flow/credentials/").status_code == 404
    assert client.get("/no-such-flow/cancel/").status_code == 404


@pytest.mark.django_db
def test_a_flow_added_at_run_time_is_served(client, monkeypatch) -> None:
    # The converter reads the registry when it matches (tests and the passkey flows add
    # entries): a flow registered later is reachable at once.
    monkeypatch.setitem(FLOWS, "late-flow", FLOWS["email-login"])
    assert resolve("/late-flow/credentials/").func is flow_views.stage
    monkeypatch.delitem(FLOWS, "late-flow")
    assert client.get("/late-flow/credentials/").status_code == 404
