"""Private Redis and PostgreSQL servers for the fault tests, which stop and restart them.

Each runs from Debian's binaries (``redis-server``; PostgreSQL's ``initdb``, ``pg_ctl``,
``postgres`` under /usr/lib/postgresql/<version>/bin: ``make faults-deps`` installs them
if missing) on a free loopback port, with its files in a temporary directory, and is
stopped and removed at the end (and at interpreter exit, should a test forget). The
machine's shared services are never touched.

PostgreSQL refuses to run as root: as root the cluster's directory belongs to the
``postgres`` OS user and ``initdb``/``pg_ctl`` run as that user (``runuser -u postgres``).
The cluster trusts connections from loopback only (``--auth=trust``, listening on
127.0.0.1, no Unix socket): it holds nothing but test data and lives for one test run.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
import redis

from tests.served import free_port

START_SECONDS = 30


class MissingBinaries(RuntimeError):
    pass


def redis_binary() -> str:
    found = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not os.access(found, os.X_OK):
        raise MissingBinaries("redis-server is not installed: run `make faults-deps`")
    return found


def postgres_bindir() -> Path:
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda path: int(path.parent.parent.name) if path.parent.parent.name.isdigit() else 0,
    )
    if not candidates:
        raise MissingBinaries("PostgreSQL's initdb is not installed: run `make faults-deps`")
    return candidates[-1].parent


def _wait(check, what: str, log: Path) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what} did not start:\n{log.read_text() if log.exists() else ''}")


class RedisServer:
    """``redis-server`` on a free port, without persistence (a restart starts empty, as a
    Redis that lost its memory does)."""

    def __init__(self) -> None:
        self.binary = redis_binary()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="caregate-faults-redis-"))
        self.log = self.dir / "redis.log"
        self.process: subprocess.Popen | None = None
        atexit.register(self.cleanup)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(port=self.port, socket_timeout=1).ping())
        except redis.RedisError:
            return False

    def start(self) -> None:
        assert self.process is None, "already running"
        with self.log.open("a") as out:
            self.process = subprocess.Popen(
                [
                    self.binary,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--dir", str(self.dir),
                    "--save", "",
                    "--appendonly", "no",
                    "--daemonize", "no",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
        _wait(self._answers, "redis-server", self.log)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresCluster:
    """A PostgreSQL cluster of its own (initdb) on a free port, started with ``pg_ctl``."""

    def __init__(self) -> None:
        self.bindir = postgres_bindir()
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="caregate-faults-pg-"))
        self.data = self.dir / "data"
        self.log = self.dir / "postgres.log"
        self.as_root = os.geteuid() == 0
        if self.as_root:
            owner = pwd.getpwnam("postgres")
            os.chown(self.dir, owner.pw_uid, owner.pw_gid)
        atexit.register(self.cleanup)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--locale=C.UTF-8", "--no-sync",
        )  # fmt: skip
        self.started = False

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bindir / tool), *args]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        if result.returncode != 0:
            raise AssertionError(f"{tool} failed:\n{result.stdout}{result.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            # Test data only: no fsync, so a fast restart costs nothing.
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        data, log = str(self.data), str(self.log)
        self._run("pg_ctl", "-D", data, "-l", log, "-o", options, "-w", "start")
        self.started = True

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (what a restart does); ``immediate`` is a crash."""
        if self.started:
            self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")
            self.started = False

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def server_pids(self) -> list[int]:
        """The postmaster and its backends (for the memory figures)."""
        first = (self.data / "postmaster.pid").read_text().split()[0]
        children = Path(f"/proc/{first}/task/{first}/children").read_text().split()
        return [int(first), *map(int, children)]

    def cleanup(self) -> None:
        with contextlib.suppress(AssertionError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
