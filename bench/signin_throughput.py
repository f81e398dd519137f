"""Benchmark: complete email sign-ins per second under gunicorn, PostgreSQL and Redis.

Starts gunicorn on 127.0.0.1 (a free port) against a benchmark database of its own,
then has several client threads each run whole email logins (credentials → send code →
read it from the dev outbox → verify → continue → home page) for a bounded count. Prints
medians, the 95th percentile and sign-ins per second, and the ratio of a sign-in to one
Argon2id hash measured in the same run (the hash is the designed-in cost of a password
check). Run: `make bench` (or .venv/bin/python bench/signin_throughput.py --help).
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Bench-Password-2026!"  # noqa: S105 - the benchmark's own throwaway users


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="caregate.settings",
        DATABASE_URL=args.database_url,
        REDIS_URL=args.redis_url,
        CAREGATE_ENV="development",
        CAREGATE_DEBUG="false",
        # The benchmark signs in many times from one address: lift the per-client limits.
        CAREGATE_SIGNIN_LIMIT_PER_CLIENT="1000000",
        CAREGATE_SEND_LIMIT_PER_CLIENT="1000000",
        CAREGATE_VERIFY_LIMIT_PER_CLIENT="1000000",
        CAREGATE_CODE_RESEND_COOLDOWN_SECONDS="0",
        CAREGATE_LOG_LEVEL="WARNING",
    )
    return env


def prepare(args: argparse.Namespace, env: dict[str, str]) -> None:
    """Create the benchmark database, migrate it and create the benchmark users."""
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc",
         "DROP DATABASE IF EXISTS caregate_bench"], check=True, env=env)  # fmt: skip
    subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc",
         "CREATE DATABASE caregate_bench"], check=True, env=env)  # fmt: skip
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "-v0"], check=True, env=env, cwd=ROOT)
    script = f"""
from caregate.accounts.models import Organization, User
from django.contrib.auth.hashers import make_password
org = Organization(name="Bench Clinic", npi="1234567893")
org.set_registration_code("BENCH")
org.save()
hashed = make_password({PASSWORD!r})
User.objects.bulk_create([
    User(username=f"bench{{i}}", email=f"bench{{i}}@example.com", password=hashed,
         organization=org, mfa_method="email")
    for i in range({args.users})
])
"""
    subprocess.run([*manage, "shell", "-c", script], check=True, env=env, cwd=ROOT)


def argon2_median(env: dict[str, str], rounds: int = 15) -> float:
    """Median seconds of one Argon2id hash with the configured parameters."""
    script = (
        "import time,statistics;from django.contrib.auth.hashers import make_password;"
        f"t=[];\nfor _ in range({rounds}):\n s=time.perf_counter();make_password('x'*16);"
        "t.append(time.perf_counter()-s)\nprint(statistics.median(t))"
    )
    out = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), "shell", "-c", script],
        check=True, env=env, cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    return float(out.stdout.strip().splitlines()[-1])


def csrf(session: requests.Session, html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


def one_signin(base: str, email: str, timings: dict[str, list[float]]) -> None:
    """Run one whole email login as a browser would; record each step's latency."""
    s = requests.Session()

    def step(name: str, method: str, path: str, **kwargs: object) -> requests.Response:
        start = time.perf_counter()
        response = s.request(method, base + path, timeout=30, **kwargs)
        timings.setdefault(name, []).append(time.perf_counter() - start)
        response.raise_for_status()
        return response

    page = step("login page", "GET", "/")
    page = step("start", "POST", "/login/start/",
                data={"method": "email", "csrfmiddlewaretoken": csrf(s, page.text)})  # fmt: skip
    page = step("password", "POST", "/email-login/credentials/",
                data={"email": email, "password": PASSWORD,
                      "csrfmiddlewaretoken": csrf(s, page.text)})  # fmt: skip
    token = csrf(s, page.text)
    page = step("send code", "POST", "/email-login/email-code/",
                data={"action": "send", "csrfmiddlewaretoken": token})  # fmt: skip
    outbox = s.get(base + "/dev/outbox.json", timeout=30).json()
    body = next(m["body"] for m in outbox if m["to"] == email)
    code = re.search(r"\b(\d{6})\b", body).group(1)
    step("verify", "POST", "/email-login/email-code/",
         data={"action": "verify", "code": code, "csrfmiddlewaretoken": token})  # fmt: skip
    home = step("continue+home", "POST", "/email-login/email-code/",
                data={"action": "continue", "csrfmiddlewaretoken": token})  # fmt: skip
    assert home.url.endswith("/home/"), home.url


def run_clients(base: str, args: argparse.Namespace) -> tuple[dict[str, list[float]], float]:
    timings: dict[str, list[float]] = {}
    totals: list[float] = []
    lock = threading.Lock()
    per_client = args.signins // args.clients

    def client(index: int) -> None:
        for n in range(per_client):
            user = (index * per_client + n) % args.users
            local: dict[str, list[float]] = {}
            start = time.perf_counter()
            one_signin(base, f"bench{user}@example.com", local)
            elapsed = time.perf_counter() - start
            with lock:
                totals.append(elapsed)
                for key, values in local.items():
                    timings.setdefault(key, []).extend(values)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    timings["whole sign-in"] = totals
    return timings, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--signins", type=int, default=80)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument(
        "--database-url", default="postgres://postgres@127.0.0.1:5432/caregate_bench"
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/11")
    args = parser.parse_args()
    env = bench_env(args)
    prepare(args, env)
    hash_seconds = argon2_median(env)
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "caregate.wsgi", "-b",
         f"127.0.0.1:{port}", "-w", str(args.workers), "--log-level", "warning"],
        env=env, cwd=ROOT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                if requests.get(base + "/healthz", timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        one_signin(base, "bench0@example.com", {})  # warm-up
        timings, wall = run_clients(base, args)
    finally:
        server.terminate()
        server.wait(timeout=10)
    done = len(timings["whole sign-in"])
    print(f"gunicorn workers={args.workers} clients={args.clients} sign-ins={done}")
    print(f"{'step':<16}{'median ms':>10}{'p95 ms':>10}")
    for name, raw in timings.items():
        values = sorted(raw)
        p95 = values[min(len(values) - 1, int(len(values) * 0.95))]
        print(f"{name:<16}{statistics.median(values) * 1000:>10.1f}{p95 * 1000:>10.1f}")
    print(f"sign-ins per second: {done / wall:.1f}")
    print(f"one Argon2id hash (median): {hash_seconds * 1000:.1f} ms")
    ratio = statistics.median(timings["password"]) / hash_seconds
    print(f"password step / one Argon2id hash: {ratio:.2f}x")


if __name__ == "__main__":
    main()
