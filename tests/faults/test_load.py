"""A bounded load on a served Caregate (loopback only; it stops by itself): complete email
logins with sign-out, wrong passwords and page views from a few client threads for
CAREGATE_FAULTS_LOAD_SECONDS (15 by default under `make test`; e.g. 300 for a soak).
No response may be a 5xx, and the server's memory stays flat: the RSS of gunicorn's
processes and of the task worker, read from /proc after a warm-up and at the end, is
printed, and may grow only by a modest margin (allocator noise, caches filling), not
by a leak's steady climb."""

from __future__ import annotations

import html
import os
import threading
import time
from collections import Counter

from tests.faults.conftest import USERS
from tests.faults.deployment import PASSWORD, Browser, rss_kib, start_email_login

SECONDS = float(os.environ.get("CAREGATE_FAULTS_LOAD_SECONDS", "15"))
CLIENTS = 4
CREDENTIALS = "/email-login/credentials/"
EMAIL_CODE = "/email-login/email-code/"
# Growth allowed between the two samples: a quarter, and at least 32 MiB in all.
MARGIN_RATIO, MARGIN_KIB = 0.25, 32 * 1024


class Load:
    def __init__(self, served) -> None:
        self.served = served
        self.statuses: Counter[int] = Counter()
        self.failures: list[str] = []
        self.logins = 0
        self.lock = threading.Lock()

    def note(self, response) -> None:
        with self.lock:
            self.statuses[response.status_code] += 1
            if response.status_code >= 500:
                self.failures.append(f"{response.status_code} {response.url}")

    def login(self, n: int) -> None:
        browser = Browser(self.served.base)
        address = f"fault{n}@example.com"
        start_email_login(browser)
        self.note(browser.post(CREDENTIALS, {"email": address, "password": "wrong-Password-1"}))
        self.note(browser.post(CREDENTIALS, {"email": address, "password": PASSWORD}))
        seen = len(self.served.mail.inbox.to(address))
        self.note(browser.post(EMAIL_CODE, {"action": "send"}))
        code = self.served.mail.inbox.wait_code(address, after=seen)
        verified = browser.post(EMAIL_CODE, {"action": "verify", "code": code})
        self.note(verified)
        assert "E-mail address verified" in html.unescape(verified.text)
        self.note(browser.post(EMAIL_CODE, {"action": "continue"}))
        for path in ("/home/", "/home/", "/readyz"):
            self.note(browser.get(path))
        self.note(browser.post("/logout/", {}))
        with self.lock:
            self.logins += 1

    def client(self, n: int, until: float) -> None:
        while time.monotonic() < until:
            self.login(n)

    def run(self, seconds: float, first_user: int) -> None:
        until = time.monotonic() + seconds
        # Each thread its own accounts, so one's wrong passwords never pause another's.
        threads = [
            threading.Thread(target=self.client, args=(first_user + i, until))
            for i in range(CLIENTS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=seconds + 120)


def memory(served) -> dict[str, int]:
    pids = served.server_pids()
    return {name: sum(rss_kib(pid) for pid in found) for name, found in pids.items()}


def test_a_bounded_load_gives_no_5xx_and_flat_memory(served, capsys):
    assert CLIENTS + 7 <= USERS
    load = Load(served)
    load.run(min(5.0, SECONDS), first_user=7)  # warm-up: every worker has served a login
    before = memory(served)
    load.run(SECONDS, first_user=7)
    after = memory(served)
    with capsys.disabled():
        print(
            f"\n[faults] {SECONDS:.0f} s, {CLIENTS} clients: {load.logins} logins, "
            f"{sum(load.statuses.values())} responses {dict(sorted(load.statuses.items()))}; "
            + ", ".join(
                f"{name} RSS {before[name] / 1024:.1f} -> {after[name] / 1024:.1f} MiB"
                for name in before
            )
        )
    assert not load.failures, load.failures[:5]
    assert load.logins > 0
    for name in before:
        allowed = max(before[name] * MARGIN_RATIO, MARGIN_KIB)
        assert after[name] - before[name] <= allowed, (name, before[name], after[name])
