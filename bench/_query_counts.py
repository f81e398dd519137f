"""SQL queries per request of one login, counted in-process with CaptureQueriesContext.

Run by login_cost.py with the target's own environment and Python (Caregate's or the
reference site's), so it needs nothing but Django. Prints one JSON object: step -> queries
of the last of ``--logins`` logins (the first ones warm the caches, as a server's would).
Mail goes to Django's in-memory outbox here (setup_test_environment): sending costs no
query on either site.

    python bench/_query_counts.py caregate|peer USER_NUMBER [--logins 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

PASSWORD = "Bench-Password-2026!"  # noqa: S105 - the benchmark's own throwaway users


def _csrf(response: object) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode())
    assert match, "no CSRF token on the page"
    return match.group(1)


def _code() -> str:
    from django.core import mail
    from django.core.management import call_command, get_commands

    if not mail.outbox and "db_worker" in get_commands():
        # Production queues the send for the background worker: run the queue here. main()
        # calls this before it starts counting the step that needs the code, so the
        # worker's queries are not counted as the request's.
        call_command("db_worker", batch=True, startup_delay=False, verbosity=0)
    return re.search(r"(?<!\d)(\d{6})(?!\d)", mail.outbox[-1].body).group(1)


# The steps whose request carries the emailed code (read before they are counted).
_CODE_STEPS = {"verify", "token"}


def caregate_flow(client: object, number: int) -> Iterator[tuple[str, Callable]]:
    """Each step as (name, request thunk), in the order a browser sends them."""
    email = f"bench{number}@example.com"
    state: dict[str, object] = {}

    def keep(name: str, response: object) -> object:
        state[name] = response
        return response

    yield "login page", lambda: keep("page", client.get("/"))
    yield (
        "start",
        lambda: keep(
            "start",
            client.post(
                "/login/start/", {"method": "email", "csrfmiddlewaretoken": _csrf(state["page"])}
            ),
        ),
    )
    yield "credentials page", lambda: keep("page", client.get(state["start"]["Location"]))
    yield (
        "password",
        lambda: keep(
            "moved",
            client.post(
                state["start"]["Location"],
                {
                    "email": email,
                    "password": PASSWORD,
                    "csrfmiddlewaretoken": _csrf(state["page"]),
                },
            ),
        ),
    )
    yield "code page", lambda: keep("page", client.get(state["moved"]["Location"]))

    def post(action: str, **data: str) -> Callable:
        return lambda: keep(
            action,
            client.post(
                state["moved"]["Location"],
                {"action": action, "csrfmiddlewaretoken": _csrf(state["page"]), **data},
            ),
        )

    yield "send code", post("send")

    def verify() -> object:
        return post("verify", code=_code())()  # the code is read only once it was sent

    yield "verify", verify
    yield "continue", post("continue")
    yield "home", lambda: keep("home", client.get(state["continue"]["Location"]))


def peer_flow(client: object, number: int) -> Iterator[tuple[str, Callable]]:
    state: dict[str, object] = {}
    url = "/account/login/"

    def keep(response: object) -> object:
        state["last"] = response
        return response

    yield "login page", lambda: keep(client.get(url))
    yield (
        "password",
        lambda: keep(
            client.post(
                url,
                {
                    "csrfmiddlewaretoken": _csrf(state["last"]),
                    "login_view-current_step": "auth",
                    "auth-username": f"peer{number}",
                    "auth-password": PASSWORD,
                },
            )
        ),
    )
    yield (
        "token",
        lambda: keep(
            client.post(
                url,
                {
                    "csrfmiddlewaretoken": _csrf(state["last"]),
                    "login_view-current_step": "token",
                    "token-otp_token": _code(),
                },
            )
        ),
    )
    yield "home", lambda: keep(client.get(state["last"]["Location"]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("site", choices=["caregate", "peer"])
    parser.add_argument("first_user", type=int)
    parser.add_argument("--logins", type=int, default=3)
    args = parser.parse_args()
    if args.site == "caregate":
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext, setup_test_environment

    setup_test_environment()
    production = getattr(settings, "PRODUCTION", False)
    counts: dict[str, int] = {}
    from django.core import mail

    for n in range(args.logins):
        mail.outbox.clear()
        client = Client(
            SERVER_NAME="127.0.0.1",
            headers={"X-Forwarded-Proto": "https"} if production else None,
        )
        flow = caregate_flow if args.site == "caregate" else peer_flow
        for name, send in flow(client, args.first_user + n):
            if name in _CODE_STEPS:
                _code()  # the worker's send happens here, outside the count
            with CaptureQueriesContext(connection) as queries:
                response = send()
            assert response.status_code in (200, 302), (name, response.status_code)
            counts[name] = len(queries)
    print(json.dumps(counts))


if __name__ == "__main__":
    os.environ.setdefault("CAREGATE_LOG_LEVEL", "WARNING")
    main()
