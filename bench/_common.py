"""What the benchmarks share: the servers they start, the login they drive, CPU from /proc.

Every server runs on 127.0.0.1 on a free port, against a database of its own, and emails
its codes over SMTP to a sink inside the driver (aiosmtpd), so the driver learns a code
without asking the server anything: no outbox read to subtract from the server's CPU.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEER = BENCH / "peer"
PASSWORD = "Bench-Password-2026!"  # noqa: S105 - the benchmark's own throwaway users
CLOCK_TICK = os.sysconf("SC_CLK_TCK")
PSQL_BASE = "postgres://postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- CPU from /proc ---------------------------------------------------------------------
def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: split after its last ")".
    return text.rsplit(")", 1)[1].split()


def process_cpu(pid: int, *, reaped: bool = False) -> float:
    """utime + stime of a process in seconds (plus its reaped children's when asked)."""
    fields = _stat_fields(pid)
    if fields is None:
        return 0.0
    # After the ")": state is fields[0], so utime (stat field 14) is fields[11].
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLOCK_TICK


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def children_of(root: int) -> list[int]:
    """The root and every live descendant of it (parents read from /proc/<pid>/stat)."""
    parent: dict[int, int] = {}
    for pid in all_pids():
        fields = _stat_fields(pid)
        if fields is not None:
            parent[pid] = int(fields[1])
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return sorted(tree)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def pids_named(comm: str) -> list[int]:
    found = []
    for pid in all_pids():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == comm:
                found.append(pid)
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


class CpuMeter:
    """CPU seconds of one group of processes, read from /proc/<pid>/stat.

    ``pids`` is re-read by ``refresh`` (a worker or backend that appears is counted from
    zero; one that exits keeps the last value read, and reaped children count through
    their parent's cutime/cstime when ``reaped``).
    """

    def __init__(self, find: Callable[[], list[int]], *, reaped_root: int | None = None):
        self._find = find
        self._reaped_root = reaped_root
        self._last: dict[int, float] = {}
        self.pids: list[int] = []
        self.refresh()

    def refresh(self) -> None:
        self.pids = self._find()
        if self._reaped_root is not None:
            # A child that ended is counted by its parent's cutime/cstime once reaped: drop
            # its last reading so it is not counted twice.
            live = set(self.pids)
            self._last = {pid: v for pid, v in self._last.items() if pid in live}

    def read(self) -> float:
        for pid in self.pids:
            value = process_cpu(pid, reaped=pid == self._reaped_root)
            if value or pid not in self._last:
                self._last[pid] = value
        return sum(self._last.values())


def server_meter(root: int, *others: int) -> CpuMeter:
    """gunicorn's master and its workers (and any process they start), plus ``others``."""
    return CpuMeter(
        lambda: sorted({pid for top in (root, *others) for pid in children_of(top)}),
        reaped_root=root,
    )


def postgres_meters(database: str) -> tuple[CpuMeter, CpuMeter]:
    """(this database's backends, every postgres process): the machine is shared."""
    postmasters = [
        pid for pid in pids_named("postgres") if (_stat_fields(pid) or ["", ""])[1] == "1"
    ]
    root = postmasters[0] if postmasters else None
    ours = CpuMeter(
        lambda: [pid for pid in pids_named("postgres") if f" {database} " in _cmdline(pid)]
    )
    return ours, CpuMeter(lambda: pids_named("postgres"), reaped_root=root)


def redis_meter() -> CpuMeter:
    return CpuMeter(lambda: pids_named("redis-server"))


def self_cpu() -> float:
    return process_cpu(os.getpid())


# --- the SMTP sink ----------------------------------------------------------------------
class SmtpSink:
    """An SMTP server in the driver's process that keeps each recipient's latest code."""

    def __init__(self) -> None:
        from aiosmtpd.controller import Controller

        self.port = free_port()
        self._codes: dict[str, str] = {}
        self._cond = threading.Condition()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        body = envelope.content.decode("utf-8", "replace")
        match = re.search(r"(?<![\d#])(\d{6})(?!\d)", body.split("\n\n", 1)[-1])
        with self._cond:
            for rcpt in envelope.rcpt_tos:
                if match:
                    self._codes[rcpt.lower()] = match.group(1)
            self._cond.notify_all()
        return "250 OK"

    def take_code(self, address: str, timeout: float = 30.0) -> str:
        """The code last mailed to ``address`` (waits for it; each code is taken once)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while address.lower() not in self._codes:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no code mailed to {address}")
                self._cond.wait(left)
            return self._codes.pop(address.lower())


# --- Caregate's environments ------------------------------------------------------------
def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CAREGATE_", "EMAIL_"))}
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    return env


def caregate_env(
    *,
    smtp_port: int,
    var_dir: Path,
    database_url: str = "",
    redis_url: str = "",
    production: bool = False,
) -> dict[str, str]:
    """Caregate's settings for a benchmark server: the SQLite default, or production mode."""
    env = _clean_env()
    env.update(
        DJANGO_SETTINGS_MODULE="caregate.settings",
        CAREGATE_VAR_DIR=str(var_dir),
        CAREGATE_DEBUG="false",
        CAREGATE_LOG_LEVEL="WARNING",
        CAREGATE_EMAIL_BACKEND="smtp",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp_port),
        # The benchmark signs in many times from one address: lift the per-client limits.
        CAREGATE_SIGNIN_LIMIT_PER_CLIENT="100000000",
        CAREGATE_SEND_LIMIT_PER_CLIENT="100000000",
        CAREGATE_VERIFY_LIMIT_PER_CLIENT="100000000",
        CAREGATE_CODE_RESEND_COOLDOWN_SECONDS="0",
    )
    if database_url:
        env["DATABASE_URL"] = database_url
    if redis_url:
        env["REDIS_URL"] = redis_url
    if production:
        env.update(
            CAREGATE_ENV="production",
            CAREGATE_SECRET_KEY=secrets.token_urlsafe(48),
            CAREGATE_ALLOWED_HOSTS="127.0.0.1",
            CAREGATE_PUBLIC_BASE_URL="https://portal.bench.invalid",
            # TLS ends at the (absent) proxy: the driver says https in X-Forwarded-Proto.
            CAREGATE_BEHIND_TLS_PROXY="true",
            CAREGATE_PHONE_BACKEND="twilio",
        )
    return env


def manage(env: dict[str, str], *args: str, capture: bool = False) -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        check=True,
        env=env,
        cwd=ROOT,
        capture_output=capture,
        text=True,
    )
    return out.stdout if capture else ""


def recreate_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PSQL_BASE}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{PSQL_BASE}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def flush_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url).flushdb()


CAREGATE_USERS = """
from caregate.accounts.models import Organization, User
from django.contrib.auth.hashers import make_password
org = Organization(name="Bench Clinic", npi="1234567893")
org.set_registration_code("BENCH")
org.save()
hashed = make_password({password!r})
User.objects.bulk_create([
    User(username=f"bench{{i}}", email=f"bench{{i}}@example.com", password=hashed,
         organization=org, mfa_method="email")
    for i in range({count})
], batch_size=2000)
"""


def prepare_caregate(env: dict[str, str], users: int) -> None:
    """Migrate, collect static files (production's manifest needs them), create users."""
    Path(env["CAREGATE_VAR_DIR"], "static").mkdir(parents=True, exist_ok=True)
    manage(env, "migrate", "-v0")
    if env.get("CAREGATE_ENV") == "production":
        manage(env, "collectstatic", "--noinput", "-v0")
    manage(env, "shell", "-v0", "-c", CAREGATE_USERS.format(password=PASSWORD, count=users))


TASKS_BACKEND_SCRIPT = (
    "from django.conf import settings; "
    "print(getattr(settings, 'TASKS', {}).get('default', {}).get('BACKEND', 'none'))"
)


def start_task_worker(env: dict[str, str], interval: float | None) -> subprocess.Popen | None:
    """The background-delivery worker, where the settings queue sends in the database.

    Production sends email from ``manage.py db_worker`` (django-tasks-db) when main has
    it: its CPU is the server's too. None where sends happen inside the request.
    """
    backend = manage(env, "shell", "-v0", "-c", TASKS_BACKEND_SCRIPT, capture=True)
    if "DatabaseBackend" not in backend:
        return None
    command = [sys.executable, str(ROOT / "manage.py"), "db_worker", "--no-reload", "-v0"]
    if interval is not None:
        command += ["--interval", str(interval)]
    return subprocess.Popen(command, env=env, cwd=ROOT)


def peer_python() -> Path:
    return PEER / ".venv" / "bin" / "python"


def ensure_peer_venv() -> None:
    """bench/peer/.venv with the reference site's pinned PyPI packages (once)."""
    marker = PEER / ".venv" / ".installed"
    requirements = PEER / "requirements.txt"
    if marker.exists() and marker.stat().st_mtime >= requirements.stat().st_mtime:
        return
    print("installing the reference site's packages into bench/peer/.venv ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(PEER / ".venv")], check=True)
    subprocess.run(
        [str(peer_python()), "-m", "pip", "install", "--quiet", "-r", str(requirements)],
        check=True,
    )
    marker.touch()


def peer_env(*, smtp_port: int, var_dir: Path) -> dict[str, str]:
    env = _clean_env()
    env.update(
        DJANGO_SETTINGS_MODULE="peer_site.settings",
        PYTHONPATH=str(PEER),
        PEER_VAR_DIR=str(var_dir),
        PEER_EMAIL_PORT=str(smtp_port),
    )
    return env


def prepare_peer(env: dict[str, str], users: int) -> None:
    py = str(peer_python())
    subprocess.run([py, "manage.py", "migrate", "-v0"], check=True, env=env, cwd=PEER)
    subprocess.run(
        [py, "-m", "peer_site.make_users", str(users), PASSWORD], check=True, env=env, cwd=PEER
    )


# --- gunicorn ---------------------------------------------------------------------------
@dataclass
class Server:
    name: str
    base: str
    process: subprocess.Popen
    production: bool = False
    var_dir: Path | None = None
    worker: subprocess.Popen | None = None  # background delivery, when there is one
    access_log: Path | None = None  # gunicorn's, when the benchmark asked for one

    def stop(self) -> None:
        if self.worker is not None and self.worker.poll() is None:
            self.worker.terminate()
            self.worker.wait(timeout=15)
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


_STARTED: list[Server] = []


@atexit.register
def _stop_leftovers() -> None:
    """Whatever way the benchmark ends, no server of its own outlives it."""
    for server in _STARTED:
        if server.process.poll() is None or (server.worker and server.worker.poll() is None):
            server.stop()


def start_gunicorn(
    name: str,
    gunicorn: Path,
    app: str,
    env: dict[str, str],
    cwd: Path,
    workers: int,
    *,
    production: bool = False,
    ready_path: str = "/",
    extra: tuple[str, ...] = (),
) -> Server:
    port = free_port()
    process = subprocess.Popen(
        [
            str(gunicorn),
            app,
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(workers),
            "--log-level",
            "warning",
            "--timeout",
            "60",
            *extra,
        ],
        env=env,
        cwd=cwd,
    )
    server = Server(name, f"http://127.0.0.1:{port}", process, production)
    _STARTED.append(server)
    headers = {"X-Forwarded-Proto": "https"} if production else {}
    deadline = time.monotonic() + 120  # the first request loads Django: slow on a busy machine
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name}: gunicorn exited with {process.returncode}")
        try:
            if requests.get(server.base + ready_path, timeout=30, headers=headers).ok:
                return server
        except requests.RequestException:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"{name}: gunicorn did not answer")


def venv_gunicorn() -> Path:
    return Path(sys.executable).parent / "gunicorn"


# --- the browser ------------------------------------------------------------------------
def browser(server: Server) -> requests.Session:
    session = requests.Session()
    if server.production:
        origin = "https://" + server.base.removeprefix("http://")
        session.headers.update({"X-Forwarded-Proto": "https", "Origin": origin})
    return session


def csrf(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


class StepFailed(Exception):
    pass


# (step name, what it costs): the password step is the one that runs Argon2id.
CAREGATE_STEPS = [
    "login page",
    "start",
    "credentials page",
    "password",
    "code page",
    "send code",
    "verify",
    "continue",
    "home",
]
PEER_STEPS = ["login page", "password", "token", "home"]
HASHING_STEPS = {"password"}
STEP_HEADER = "X-Bench-Step"

Hook = Callable[[str], Callable[[], None]]


@dataclass
class LoginTimer:
    """Per-step wall times of one login; ``around`` may wrap each request (CPU probes)."""

    wall: dict[str, float] = field(default_factory=dict)
    around: Hook | None = None
    first_start: float | None = None  # planned start (open loop): the first step counts from it


def _request(
    session: requests.Session,
    timer: LoginTimer,
    name: str,
    method: str,
    url: str,
    expect: int,
    **kwargs: object,
) -> requests.Response:
    done = timer.around(name) if timer.around else None
    start = time.perf_counter()
    if timer.first_start is not None and not timer.wall:
        start = timer.first_start
    try:
        # The step's name, for a server that logs it (signin_throughput's server-side times).
        response = session.request(
            method, url, timeout=60, allow_redirects=False, headers={STEP_HEADER: name}, **kwargs
        )
    except requests.RequestException as error:
        raise StepFailed(f"{name}: {type(error).__name__}") from error
    timer.wall[name] = time.perf_counter() - start
    if session.headers.get("X-Forwarded-Proto"):
        # Production sets Secure cookies; the TLS proxy would carry them: keep sending them
        # over the loopback's http (requests copies the jar per request, so no policy holds).
        for cookie in session.cookies:
            cookie.secure = False
    if done:
        done()
    if response.status_code != expect:
        raise StepFailed(f"{name}: HTTP {response.status_code}")
    return response


def caregate_login(server: Server, sink: SmtpSink, email: str, timer: LoginTimer) -> None:
    """The guide's email login, every request a browser makes (9), redirects followed."""
    s = browser(server)
    b = server.base
    page = _request(s, timer, "login page", "GET", b + "/", 200)
    start = _request(
        s,
        timer,
        "start",
        "POST",
        b + "/login/start/",
        302,
        data={"method": "email", "csrfmiddlewaretoken": csrf(page.text)},
    )
    url = b + start.headers["Location"]
    page = _request(s, timer, "credentials page", "GET", url, 200)
    moved = _request(
        s,
        timer,
        "password",
        "POST",
        url,
        302,
        data={"email": email, "password": PASSWORD, "csrfmiddlewaretoken": csrf(page.text)},
    )
    url = b + moved.headers["Location"]
    page = _request(s, timer, "code page", "GET", url, 200)
    token = csrf(page.text)
    _request(
        s,
        timer,
        "send code",
        "POST",
        url,
        200,
        data={"action": "send", "csrfmiddlewaretoken": token},
    )
    code = sink.take_code(email)
    _request(
        s,
        timer,
        "verify",
        "POST",
        url,
        200,
        data={"action": "verify", "code": code, "csrfmiddlewaretoken": token},
    )
    home = _request(
        s,
        timer,
        "continue",
        "POST",
        url,
        302,
        data={"action": "continue", "csrfmiddlewaretoken": token},
    )
    _request(s, timer, "home", "GET", b + home.headers["Location"], 200)


def peer_login(server: Server, sink: SmtpSink, number: int, timer: LoginTimer) -> None:
    """django-two-factor-auth's login wizard: auth step, token step, then the home page."""
    s = browser(server)
    url = server.base + "/account/login/"
    page = _request(s, timer, "login page", "GET", url, 200)
    page = _request(
        s,
        timer,
        "password",
        "POST",
        url,
        200,
        data={
            "csrfmiddlewaretoken": csrf(page.text),
            "login_view-current_step": "auth",
            "auth-username": f"peer{number}",
            "auth-password": PASSWORD,
        },
    )
    code = sink.take_code(f"peer{number}@example.com")
    home = _request(
        s,
        timer,
        "token",
        "POST",
        url,
        302,
        data={
            "csrfmiddlewaretoken": csrf(page.text),
            "login_view-current_step": "token",
            "token-otp_token": code,
        },
    )
    _request(s, timer, "home", "GET", server.base + home.headers["Location"], 200)


# --- Argon2id ---------------------------------------------------------------------------
ARGON2_SCRIPT = """
import statistics, time
from django.contrib.auth.hashers import get_hasher
hasher = get_hasher("default")
encoded = hasher.encode({password!r}, hasher.salt())
cpu, wall = [], []
for _ in range({rounds}):
    c, w = time.process_time(), time.perf_counter()
    assert hasher.verify({password!r}, encoded)
    cpu.append(time.process_time() - c); wall.append(time.perf_counter() - w)
print(statistics.median(cpu), statistics.median(wall), encoded.split("$")[3])
"""


@dataclass
class Argon2Figure:
    cpu: float  # seconds of CPU, median of one verify
    wall: float
    params: str


def argon2_verify(env: dict[str, str], rounds: int = 21) -> Argon2Figure:
    """One Argon2id verify with the app's own hasher and settings (median of ``rounds``)."""
    out = manage(
        env,
        "shell",
        "-v0",
        "-c",
        ARGON2_SCRIPT.format(password=PASSWORD, rounds=rounds),
        capture=True,
    )
    cpu, wall, params = out.strip().splitlines()[-1].split()
    return Argon2Figure(float(cpu), float(wall), params)


# --- figures ----------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def stamp() -> str:
    """When, and how busy the shared machine was (1-minute load average) as it began."""
    return f"{time.strftime('%Y-%m-%d %H:%M')} (load {os.getloadavg()[0]:.1f})"


def temp_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))
