"""Pieces the tests that serve Caregate in processes of its own share (the fault tests'
deployment, the two-process test): a free port, an SMTP inbox, a cookie-keeping client."""

from __future__ import annotations

import email
import re
import socket
import time
from email import policy

import requests

SIX = re.compile(r"\b(\d{6})\b")


def free_port() -> int:
    """Return a loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """An SMTP handler that keeps every message, or refuses them (451) while told to."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.refusing = False
        self.refused = 0

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refusing:
            self.refused += 1
            return "451 4.3.0 Try again later"
        self.messages.append(email.message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[email.message.EmailMessage]:
        return [m for m in self.messages if address in m["To"]]

    def wait_code(self, address: str, after: int = 0, seconds: float = 30) -> str:
        """The code of the first message to ``address`` after its first ``after``."""
        deadline = time.monotonic() + seconds  # the task worker polls the queue
        while time.monotonic() < deadline:
            mine = self.to(address)[after:]
            if mine:
                body = mine[0].get_body(preferencelist=("plain",)).get_content()
                return SIX.search(body).group(1)
            time.sleep(0.1)
        raise AssertionError(f"no code email to {address}")


class Browser:
    """Just enough of a browser over plain http: it keeps every cookie, Secure ones too
    (production cookies are Secure; a real browser would reach this over TLS)."""

    def __init__(self, base: str = "") -> None:
        self.base = base  # "" when each request names its whole URL
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, data: dict | None = None) -> requests.Response:
        if data is not None:
            data = {"csrfmiddlewaretoken": self.cookies.get("csrftoken", ""), **data}
        header = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = requests.request(
            method,
            self.base + path,
            data=data,
            headers={"Cookie": header} if header else {},
            allow_redirects=False,
            timeout=30,
        )
        for cookie in response.cookies:
            self.cookies[cookie.name] = cookie.value
        return response

    def get(self, path: str) -> requests.Response:
        return self.request("GET", path)

    def post(self, path: str, data: dict) -> requests.Response:
        return self.request("POST", path, data)
