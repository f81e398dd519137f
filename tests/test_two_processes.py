"""Two Caregate processes share everything: a sign-in and a rate limit span both.

Each process is `make serve`'s deploy/serve.sh (gunicorn with deploy/gunicorn.conf.py and
the task worker when installed) in production mode, over plain http on loopback, against
one PostgreSQL database made for this module and the same Redis (a key prefix of its own),
with a real SMTP server (aiosmtpd) receiving the code emails.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
import requests
from aiosmtpd.controller import Controller

from tests.served import Browser, Inbox, free_port

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "Correct-Horse-Battery-9"
SIGNIN_LIMIT = 4  # password attempts per account: two on each process use it up
START_SECONDS = 45


def postgres_url() -> str:
    url = os.environ.get("DATABASE_URL", "")
    assert url.startswith(("postgres://", "postgresql://")), (
        "these tests need PostgreSQL: set DATABASE_URL (make test does)"
    )
    return url


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def recreate_database(url: str, name: str) -> None:
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')


def drop_database(url: str, name: str) -> None:
    with psycopg.connect(with_database(url, "postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Deployment:
    """The shared settings of both processes, and what the test made for them."""

    env: dict[str, str]
    inbox: Inbox
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def manage(self, *args: str) -> None:
        result = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def start(self, port: int, var_dir: Path) -> str:
        log = var_dir / "serve.log"
        env = {**self.env, "PORT": str(port), "CAREGATE_VAR_DIR": str(var_dir)}
        with log.open("w") as out:
            process = subprocess.Popen(
                ["deploy/serve.sh"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one below
            )
        self.processes.append(process)
        self.logs.append(log)
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_ready(base: str, deployment: Deployment) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert all(p.poll() is None for p in deployment.processes), "\n".join(
            log.read_text() for log in deployment.logs
        )
        try:
            # The first request loads Django: on a busy machine it may take a while.
            if requests.get(f"{base}/readyz", timeout=10).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.3)
    raise AssertionError(
        f"{base} not ready:\n" + "\n".join(p.read_text() for p in deployment.logs)
    )


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> Iterator[tuple[str, str, Deployment]]:
    url = postgres_url()
    name = f"{urlsplit(url).path.lstrip('/') or 'caregate'}_twoproc"
    recreate_database(url, name)
    prefix = f"twoproc-{secrets.token_hex(4)}"
    inbox = Inbox()
    smtp = Controller(inbox, hostname="127.0.0.1", port=free_port())
    smtp.start()
    keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(
        {
            "CAREGATE_ENV": "production",
            "CAREGATE_SECRET_KEY": secrets.token_urlsafe(64),
            "CAREGATE_ALLOWED_HOSTS": "127.0.0.1",
            "CAREGATE_PUBLIC_BASE_URL": "https://portal.example.org",
            "CAREGATE_SSL_REDIRECT": "false",  # plain http on loopback, no proxy
            "CAREGATE_HSTS_SECONDS": "0",
            "DATABASE_URL": with_database(url, name),
            "REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
            "CAREGATE_CACHE_PREFIX": prefix,  # this module's keys only, in the shared Redis
            "CAREGATE_EMAIL_BACKEND": "smtp",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": str(smtp.port),
            "CAREGATE_SIGNIN_LIMIT_PER_ACCOUNT": str(SIGNIN_LIMIT),
            "CAREGATE_WEB_CONCURRENCY": "1",  # one worker each: two processes, not four
        }
    )
    deployment = Deployment(env=env, inbox=inbox)
    try:
        deployment.manage("migrate", "--noinput", "--verbosity", "0")
        deployment.manage("shell", "-c", CREATE_USERS)
        first = deployment.start(free_port(), tmp_path_factory.mktemp("first"))
        second = deployment.start(free_port(), tmp_path_factory.mktemp("second"))
        wait_ready(first, deployment)
        wait_ready(second, deployment)
        yield first, second, deployment
    finally:
        deployment.stop()
        smtp.stop()
        client = redis.Redis.from_url(env["REDIS_URL"])
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        drop_database(url, name)


CREATE_USERS = """
from django.core.management import call_command
call_command("create_organization", name="Two Clinic", npi="1234567893", registration_code="R-1")
for username in ("walker", "guarded"):
    call_command(
        "create_user", username=username, email=f"{username}@example.com",
        password="Correct-Horse-Battery-9", organization="1234567893", mfa="email",
    )
"""


def start_email_login(browser: Browser, base: str) -> None:
    assert browser.get(f"{base}/").status_code == 200  # the login page sets the CSRF cookie
    response = browser.post(f"{base}/login/start/", {"method": "email"})
    assert response.status_code == 302, response.text


def access_lines(log: Path) -> list[dict]:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "gunicorn.access"]


def access_line(log: Path, request_id: str) -> dict:
    """The one access line of a request, once written.

    gunicorn logs a request after it has sent the response, so the client may read the
    log before the line is there: wait a little for it.
    """
    deadline = time.monotonic() + 10
    while True:
        found = [e for e in access_lines(log) if e["request_id"] == request_id]
        if found or time.monotonic() > deadline:
            (line,) = found
            return line
        time.sleep(0.05)


def test_a_sign_in_started_on_one_process_finishes_on_the_other(two_processes):
    first, second, deployment = two_processes
    browser = Browser()
    start_email_login(browser, first)
    response = browser.post(
        f"{second}/email-login/credentials/", {"email": "walker@example.com", "password": PASSWORD}
    )
    assert response.status_code == 302 and response.headers["Location"].endswith("/email-code/")
    seen = len(deployment.inbox.messages)
    assert browser.post(f"{first}/email-login/email-code/", {"action": "send"}).status_code == 200
    code = deployment.inbox.wait_code("walker@example.com", after=seen)
    verified = browser.post(
        f"{second}/email-login/email-code/", {"action": "verify", "code": code}
    )
    assert verified.status_code == 200 and "E-mail address verified" in verified.text
    done = browser.post(f"{first}/email-login/email-code/", {"action": "continue"})
    assert done.status_code == 302 and done.headers["Location"] == "/home/"
    # The session the first process made at sign-in is the second's too.
    home = browser.get(f"{second}/home/")
    assert home.status_code == 200 and "Sign out" in home.text
    # Production logs: one JSON access line per request, named by the response's id.
    line = access_line(deployment.logs[1], home.headers["X-Request-ID"])
    assert line["path"] == "/home/" and line["status"] == 200


def test_a_rate_limit_counted_on_one_process_holds_on_the_other(two_processes):
    first, second, _ = two_processes
    browser = Browser()
    start_email_login(browser, first)
    wrong = {"email": "guarded@example.com", "password": "not-the-password"}
    for base in (first, first, second, second):  # SIGNIN_LIMIT attempts, half on each
        assert browser.post(f"{base}/email-login/credentials/", wrong).status_code == 200
    right = {"email": "guarded@example.com", "password": PASSWORD}
    # Each process alone has seen two attempts, under the limit of four: only a shared
    # count refuses the right password now, on either process.
    for base in (first, second):
        refused = browser.post(f"{base}/email-login/credentials/", right)
        assert refused.status_code == 200 and "could not sign you in" in refused.text
