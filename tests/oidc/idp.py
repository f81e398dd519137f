"""Start, control and stop the test OpenID Connect provider (tests/oidc/idp.mjs) from Python.

with TestIdentityProvider.running(clients=[...], accounts={...}) as idp:
    idp.issuer            # "http://127.0.0.1:PORT"
    idp.set_mode("expired")
"""

from __future__ import annotations

import atexit
import json
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import pytest
import requests

OIDC_DIR = Path(__file__).resolve().parent
SCRIPT = OIDC_DIR / "idp.mjs"
NODE_MODULES = OIDC_DIR / "node_modules"
INSTALL_TARGET = "tests/oidc/node_modules/.installed"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 5.0
CONTROL_TIMEOUT_SECONDS = 5.0

# What the provider does to the ID token of every token response until reset().
ID_TOKEN_MODES = (
    "normal",
    "wrong-audience",
    "bad-signature",
    "foreign-key",
    "expired",
    "wrong-issuer",
    "wrong-nonce",
    "alg-none",
)


def ensure_node_modules() -> None:
    """Fail the test with the command to run when oidc-provider is not installed."""
    if not (NODE_MODULES / "oidc-provider" / "package.json").is_file():
        pytest.fail(
            f"{NODE_MODULES} is missing: the test identity provider needs oidc-provider. "
            f"Run `make {INSTALL_TARGET}` (npm ci --prefix tests/oidc).",
            pytrace=False,
        )


def node_binary() -> str:
    """Return the Node.js to run the provider with (the machine's, normally /usr/bin/node)."""
    return shutil.which("node") or "/usr/bin/node"


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class IdentityProviderError(RuntimeError):
    """The provider did not start, or a control request failed."""


class TestIdentityProvider:
    """A real oidc-provider in a Node.js child process, with test controls."""

    __test__ = False  # Not a pytest test class, whatever its name.

    def __init__(self) -> None:
        self._dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._clients: list[dict[str, Any]] = []
        self._accounts: dict[str, dict[str, Any]] = {}

    # --- life cycle ---------------------------------------------------------------------

    @classmethod
    @contextmanager
    def running(
        cls,
        clients: Sequence[Mapping[str, Any]],
        accounts: Mapping[str, Mapping[str, Any]],
        port: int | None = None,
    ) -> Iterator[TestIdentityProvider]:
        """Run a provider for the duration of the with block."""
        with cls() as idp:
            idp.start(clients, accounts, port=port)
            yield idp

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(
        self,
        clients: Sequence[Mapping[str, Any]],
        accounts: Mapping[str, Mapping[str, Any]],
        port: int | None = None,
    ) -> Self:
        """Write the configuration and start the provider; return once it serves requests."""
        if self.is_running:
            raise IdentityProviderError("the test identity provider is already running")
        ensure_node_modules()
        self._clients = [dict(client) for client in clients]
        self._accounts = {login: dict(claims) for login, claims in accounts.items()}
        self._port = port or free_port()
        # The signing key is written here too, so a restart keeps it.
        self._dir = Path(tempfile.mkdtemp(prefix="caregate-idp-"))
        atexit.register(self.close)
        self._launch()
        return self

    def stop(self) -> None:
        """Stop the provider (SIGTERM, then SIGKILL); its port then refuses connections."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        """Start the provider again on the same port, issuer and signing key.

        Its sessions, codes and ID token mode are lost, as with a real provider's restart;
        the accounts are those last given to set_accounts().
        """
        if self._dir is None:
            raise IdentityProviderError("restart() needs start() first")
        self.stop()
        self._launch()

    def close(self) -> None:
        """Stop the provider and delete its temporary files."""
        self.stop()
        atexit.unregister(self.close)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # --- what a relying party needs -----------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise IdentityProviderError("the test identity provider was never started")
        return self._port

    @property
    def issuer(self) -> str:
        """The issuer, exactly as in its discovery document (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    # --- test controls ------------------------------------------------------------------

    def set_mode(self, mode: str) -> None:
        """Tamper with the ID token of every later token response (see ID_TOKEN_MODES)."""
        if mode not in ID_TOKEN_MODES:
            raise ValueError(f"unknown ID token mode {mode!r}; known: {ID_TOKEN_MODES}")
        self._control("mode", {"id_token": mode})

    def set_accounts(self, accounts: Mapping[str, Mapping[str, Any]]) -> None:
        """Add or replace accounts by login (e.g. change a user's groups between sign-ins)."""
        changed = {login: dict(claims) for login, claims in accounts.items()}
        self._control("accounts", changed)
        self._accounts.update(changed)
        self._write_config()

    def reset(self) -> None:
        """Go back to honest ID tokens."""
        self._control("reset", {})

    # --- internals ----------------------------------------------------------------------

    @property
    def _workdir(self) -> Path:
        if self._dir is None:
            raise IdentityProviderError("the test identity provider was never started")
        return self._dir

    def _write_config(self) -> Path:
        path = self._workdir / "config.json"
        path.write_text(json.dumps({"clients": self._clients, "accounts": self._accounts}))
        return path

    def _launch(self) -> None:
        config = self._write_config()
        stdout_path = self._workdir / "stdout.log"
        stderr_path = self._workdir / "stderr.log"
        # Output goes to files, not pipes: nobody reads a pipe after READY, and a full pipe
        # would block the provider mid-test.
        with stdout_path.open("wb") as stdout, stderr_path.open("wb") as stderr:
            self._process = subprocess.Popen(
                [node_binary(), str(SCRIPT), "--port", str(self.port), "--config", str(config)],
                cwd=OIDC_DIR,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                # Its own process group: a Ctrl-C to pytest does not kill it before stop().
                start_new_session=True,
            )
        self._wait_until_ready(stdout_path, stderr_path)

    def _wait_until_ready(self, stdout_path: Path, stderr_path: Path) -> None:
        expected = f"READY {self.issuer}"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if expected in stdout_path.read_text(errors="replace").splitlines():
                return
            if not self.is_running:
                break
            time.sleep(0.05)
        self.stop()
        raise IdentityProviderError(
            f"the test identity provider did not print {expected!r} within "
            f"{READY_TIMEOUT_SECONDS:.0f} s.\nstdout:\n{stdout_path.read_text(errors='replace')}"
            f"\nstderr:\n{stderr_path.read_text(errors='replace')}"
        )

    def _control(self, name: str, body: Mapping[str, Any]) -> None:
        response = requests.post(
            f"{self.issuer}/__test/{name}", json=body, timeout=CONTROL_TIMEOUT_SECONDS
        )
        if response.status_code != 200:
            raise IdentityProviderError(
                f"POST /__test/{name} answered {response.status_code}: {response.text}"
            )
