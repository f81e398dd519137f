"""How much of an email login's CPU is Django's template rendering (issue #10).

Runs complete email logins in-process through Django's test client on the SQLite default
(DEBUG off, mail to Django's in-memory outbox, no HTTP server) and reads the thread's CPU
time around every request and around every outermost template render (the page and the
form widgets it draws, via django.template.backends.django.Template.render). Prints, per
step and per login: the request's CPU, the rendering's CPU and its share, beside one
Argon2id verify measured in the same process. The figure bounds what a faster template
engine could save: a login's rendering times the engine's speed-up.

    .venv/bin/python bench/render_share.py [--logins 40]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as c
import _query_counts as q


def setup(logins: int) -> None:
    """A SQLite default of its own with ``logins`` bench users, and Django set up on it."""
    env = c.caregate_env(smtp_port=c.free_port(), var_dir=c.temp_dir("render-share-"))
    c.prepare_caregate(env, logins)
    os.environ.update(env)
    for name in ("DATABASE_URL", "REDIS_URL"):
        os.environ.pop(name, None)
    os.environ["CAREGATE_LOG_LEVEL"] = "WARNING"
    sys.path.insert(0, str(c.ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core import mail

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    mail.outbox = []


def time_renders() -> list[float]:
    """Wrap the Django backend's Template.render; the returned cell sums the thread CPU
    of the outermost renders (a form widget drawn inside a page is part of the page)."""
    from django.template.backends.django import Template

    render = Template.render
    depth = [0]
    spent = [0.0]

    def timed_render(self, context=None, request=None):
        depth[0] += 1
        began = time.thread_time()
        try:
            return render(self, context, request)
        finally:
            depth[0] -= 1
            if depth[0] == 0:
                spent[0] += time.thread_time() - began

    Template.render = timed_render
    return spent


def run_logins(count: int, warmup: int, spent: list[float]) -> tuple[dict, dict]:
    """Per step: (request CPU, rendering CPU), in seconds summed over the measured logins."""
    from django.core import mail
    from django.test import Client

    step_cpu: dict[str, float] = {}
    step_render: dict[str, float] = {}
    for n in range(warmup + count):
        mail.outbox.clear()
        client = Client(SERVER_NAME="127.0.0.1")
        for name, send in q.caregate_flow(client, n):
            spent[0] = 0.0
            began = time.thread_time()
            response = send()
            cpu = time.thread_time() - began
            assert response.status_code in (200, 302), (name, response.status_code)
            if n >= warmup:
                step_cpu[name] = step_cpu.get(name, 0.0) + cpu
                step_render[name] = step_render.get(name, 0.0) + spent[0]
    return step_cpu, step_render


def one_hash() -> float:
    from django.contrib.auth.hashers import make_password

    began = time.thread_time()
    for _ in range(21):
        make_password(q.PASSWORD)
    return (time.thread_time() - began) / 21


def report(step_cpu: dict, step_render: dict, logins: int, verify: float) -> None:
    print(f"one Argon2id hash (make_password, in-process): {verify * 1000:.1f} ms CPU")
    print()
    print(f"{'step':<18}{'CPU ms':>9}{'render ms':>11}{'share':>8}")
    for name, cpu in step_cpu.items():
        ms, rendered = cpu / logins * 1000, step_render[name] / logins * 1000
        print(f"{name:<18}{ms:>9.2f}{rendered:>11.2f}{rendered / ms if ms else 0:>8.0%}")
    total = sum(step_cpu.values()) / logins * 1000
    rendered = sum(step_render.values()) / logins * 1000
    print(f"{'a login':<18}{total:>9.2f}{rendered:>11.2f}{rendered / total:>8.0%}")
    other = total - verify * 1000
    print()
    print(
        f"besides the hash ({other:.1f} ms), rendering is {rendered / other:.0%}: "
        f"{rendered / (verify * 1000):.2f} verifies a login; an engine k times faster "
        f"saves {rendered:.1f} x (1 - 1/k) ms ({rendered * 0.75:.1f} ms at k = 4)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    print(f"render_share {c.stamp()}: {args.logins} logins in-process, {args.warmup} warm-up")
    setup(args.logins + args.warmup + 1)
    spent = time_renders()
    step_cpu, step_render = run_logins(args.logins, args.warmup, spent)
    report(step_cpu, step_render, args.logins, one_hash())


if __name__ == "__main__":
    main()
