"""A served Caregate for the fault tests: `make serve`'s deploy/serve.sh (gunicorn and the
task worker ``manage.py db_worker``) in production mode over plain http on loopback, on a
private PostgreSQL cluster and a private Redis (tests/faults/servers.py) and a real SMTP
server (aiosmtpd) that a test can stop, restart or make refuse."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import requests
from aiosmtpd.controller import Controller

from tests.faults.servers import PostgresCluster, RedisServer
from tests.served import Browser, Inbox, free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "Correct-Horse-Battery-9"
START_SECONDS = 60


class MailServer:
    """aiosmtpd on a fixed port, so it can be stopped and started again where the
    deployment expects it."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox = Inbox()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


CREATE_USERS = """
from django.core.management import call_command
call_command("create_organization", name="Fault Clinic", npi="1234567893", registration_code="R-1")
for n in range({count}):
    call_command(
        "create_user", username=f"fault{{n}}", email=f"fault{{n}}@example.com",
        password="{password}", organization="1234567893", mfa="email", verbosity=0,
    )
"""


class Deployment:
    """Caregate served from deploy/serve.sh on the private servers."""

    def __init__(self, work: Path, users: int) -> None:
        self.work = work
        self.redis = RedisServer()
        self.postgres = PostgresCluster()
        self.mail = MailServer()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = work / "serve.log"
        self.process: subprocess.Popen | None = None
        self.users = users
        self.env: dict[str, str] = {}

    def setup(self) -> None:
        self.redis.start()
        self.postgres.start()
        self.mail.start()
        database = self.postgres.create_database("caregate")
        keep = {"PATH", "HOME", "LANG", "LC_ALL", "TMPDIR"}
        self.env = {k: v for k, v in os.environ.items() if k in keep}
        self.env.update(
            {
                "CAREGATE_ENV": "production",
                "CAREGATE_SECRET_KEY": secrets.token_urlsafe(64),
                "CAREGATE_ALLOWED_HOSTS": "127.0.0.1",
                "CAREGATE_PUBLIC_BASE_URL": "https://portal.example.org",
                "CAREGATE_SSL_REDIRECT": "false",  # plain http on loopback, no proxy
                "CAREGATE_HSTS_SECONDS": "0",
                "CAREGATE_VAR_DIR": str(self.work / "var"),
                "DATABASE_URL": database,
                "REDIS_URL": self.redis.url(0),
                "CAREGATE_EMAIL_BACKEND": "smtp",
                "EMAIL_HOST": "127.0.0.1",
                "EMAIL_PORT": str(self.mail.port),
                "EMAIL_TIMEOUT": "5",
                # Short waits between delivery attempts, and a login code that outlives
                # them, so a mail server back within a few seconds still gets the code.
                "CAREGATE_DELIVERY_BACKOFF_SECONDS": "1,2,2,3,3,3",
                "CAREGATE_EMAIL_LOGIN_CODE_SECONDS": "120",
                "CAREGATE_CODE_RESEND_COOLDOWN_SECONDS": "0",
                # The load test signs in many times from one address and account set.
                "CAREGATE_SIGNIN_LIMIT_PER_CLIENT": "100000",
                "CAREGATE_SEND_LIMIT_PER_CLIENT": "100000",
                "CAREGATE_VERIFY_LIMIT_PER_CLIENT": "100000",
                "CAREGATE_SEND_LIMIT_PER_ACCOUNT": "100000",
                "CAREGATE_SEND_LIMIT_PER_DESTINATION": "100000",
                "CAREGATE_SIGNIN_LIMIT_PER_ACCOUNT": "100000",
                "CAREGATE_WEB_CONCURRENCY": "2",
                # No recycled workers: the memory figures are of the same processes.
                "CAREGATE_MAX_REQUESTS": "0",
                "CAREGATE_LOG_LEVEL": "WARNING",
            }
        )
        self.manage("migrate", "--noinput", "--verbosity", "0")
        self.manage("shell", "-c", CREATE_USERS.format(count=self.users, password=PASSWORD))
        self.start()

    def manage(self, *args: str) -> None:
        result = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr

    def start(self) -> None:
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                ["deploy/serve.sh"],
                cwd=ROOT,
                env={**self.env, "PORT": str(self.port)},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as one below
            )
        self.wait_ready()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.log_text()
            try:
                if requests.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or still booting
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.base} not ready:\n{self.log_text()}")

    def log_text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    def server_pids(self) -> dict[str, list[int]]:
        """gunicorn's master and workers, and the task worker (serve.sh's children)."""
        assert self.process is not None
        found: dict[str, list[int]] = {"gunicorn": [], "db_worker": []}
        for pid in _descendants(self.process.pid):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"gunicorn" in cmdline:
                found["gunicorn"].append(pid)
            elif b"db_worker" in cmdline:
                found["db_worker"].append(pid)
        return found

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        self.mail.stop()
        self.redis.cleanup()
        self.postgres.cleanup()


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        for task in Path(f"/proc/{current}/task").iterdir():
            children = (task / "children").read_text().split()
            found.extend(map(int, children))
            pending.extend(map(int, children))
    return found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def start_email_login(browser: Browser) -> None:
    assert browser.get("/").status_code == 200  # the login page sets the CSRF cookie
    response = browser.post("/login/start/", {"method": "email"})
    assert response.status_code == 302, response.text
