"""The fixed CPU cost of one request, before any screen does its work (issue #10).

Prints, for the SQLite default (DEBUG off):
- gunicorn (1 sync worker) CPU per GET of /healthz, a view that reads nothing: the HTTP
  server, Django's handler and the whole middleware stack;
- the same request in-process through Django's WSGIHandler, with every middleware and with
  none, and what each middleware adds;
- one Argon2id verify, so the figures read as fractions of the issue's 1.9-verify budget
  for a nine-request login.

    .venv/bin/python bench/request_floor.py [--requests 3000]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c

LOGIN_REQUESTS = 9  # an email login, as the guides have it (bench/README.md)


def gunicorn_cost(count: int) -> tuple[float, float, float]:
    """Worker CPU per GET /healthz in ms: (total, user, system)."""
    env = c.caregate_env(smtp_port=c.free_port(), var_dir=c.temp_dir("request-floor-"))
    c.prepare_caregate(env, 1)
    server = c.start_gunicorn("floor", c.venv_gunicorn(), "caregate.wsgi", env, c.ROOT, 1)
    try:
        session = requests.Session()
        for _ in range(200):
            session.get(server.base + "/healthz")
        workers = [p for p in c.children_of(server.process.pid) if p != server.process.pid]
        pid = workers[0]

        def times() -> tuple[float, float]:
            fields = c._stat_fields(pid) or ["0"] * 13
            return int(fields[11]) / c.CLOCK_TICK, int(fields[12]) / c.CLOCK_TICK

        user0, system0 = times()
        for _ in range(count):
            session.get(server.base + "/healthz")
        user1, system1 = times()
    finally:
        server.stop()
    user, system = (user1 - user0) / count * 1000, (system1 - system0) / count * 1000
    return user + system, user, system


def _environ() -> dict[str, object]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/healthz",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "127.0.0.1:8000",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
    }


def in_process_costs(count: int) -> tuple[float, float, list[tuple[str, float]]]:
    """In-process ms per request: all middleware, none, and each one's share."""
    env = c.caregate_env(smtp_port=c.free_port(), var_dir=c.temp_dir("request-floor-ip-"))
    os.environ.update(env)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    sys.path.insert(0, str(c.ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler

    def start_response(*_: object) -> None:
        return None

    def run(middleware: list[str]) -> float:
        settings.MIDDLEWARE = middleware
        handler = WSGIHandler()
        for _ in range(300):
            handler(_environ(), start_response).close()
        began = time.process_time()
        for _ in range(count):
            handler(_environ(), start_response).close()
        return (time.process_time() - began) / count * 1000

    full = list(settings.MIDDLEWARE)
    everything, nothing = run(full), run([])
    # A middleware another one needs (sessions before auth) cannot be left out alone.
    needed = {"django.contrib.sessions.middleware.SessionMiddleware"}
    needed |= {"django.contrib.auth.middleware.AuthenticationMiddleware"}
    shares = [
        (name.rsplit(".", 1)[1], everything - run([m for m in full if m != name]))
        for name in full
        if name not in needed
    ]
    settings.MIDDLEWARE = full
    return everything, nothing, shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    print(f"request_floor {c.stamp()}")
    env = c.caregate_env(smtp_port=c.free_port(), var_dir=c.temp_dir("request-floor-a2-"))
    c.prepare_caregate(env, 1)
    verify = c.argon2_verify(env).cpu * 1000
    served, user, system = gunicorn_cost(args.requests)
    everything, nothing, shares = in_process_costs(args.requests)
    print(f"gunicorn worker CPU per GET /healthz: {served:.3f} ms", end=" ")
    print(f"(user {user:.3f}, system {system:.3f})")
    print(f"in-process, every middleware:        {everything:.3f} ms")
    print(f"in-process, no middleware:           {nothing:.3f} ms")
    for name, share in shares:
        print(f"  {name:34s} {share:+.3f} ms")
    print(f"outside Django's handler (server, sockets): {served - everything:.3f} ms per request")
    floor = served * LOGIN_REQUESTS
    print(
        f"x {LOGIN_REQUESTS} requests of an email login: {floor:.1f} ms before any screen's work"
    )
    print(f"  = {floor / verify:.2f} Argon2id verifies ({verify:.1f} ms each) of the 1.9")


if __name__ == "__main__":
    main()
