"""PostgreSQL restarted under a served Caregate: requests in flight or arriving while it
is down get the 503 "try again in a minute" page (never a 500 or a traceback), and the
ones after it is back succeed at once: CONN_MAX_AGE keeps connections, and
conn_health_checks replaces the ones the restart closed before a request uses them. The
task worker survives it and still delivers codes."""

from __future__ import annotations

import html
import threading
from collections import Counter

from tests.faults.deployment import PASSWORD, Browser, start_email_login

TROUBLE = "The portal is having trouble right now; please try again in a minute."
CREDENTIALS = "/email-login/credentials/"
EMAIL_CODE = "/email-login/email-code/"
CLEAN = {200, 302, 503}


def sign_in(served, n: int) -> Browser:
    browser = Browser(served.base)
    start_email_login(browser)
    address = f"fault{n}@example.com"
    assert browser.post(CREDENTIALS, {"email": address, "password": PASSWORD}).status_code == 302
    seen = len(served.mail.inbox.to(address))
    browser.post(EMAIL_CODE, {"action": "send"})
    code = served.mail.inbox.wait_code(address, after=seen)
    browser.post(EMAIL_CODE, {"action": "verify", "code": code})
    assert browser.post(EMAIL_CODE, {"action": "continue"}).headers["Location"] == "/home/"
    return browser


class Traffic:
    """Threads asking for pages that need the database until told to stop."""

    def __init__(self, served, browsers: list[Browser]) -> None:
        self.served = served
        self.browsers = browsers
        self.statuses: Counter[int] = Counter()
        self.bodies: list[str] = []
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(b,)) for b in browsers]

    def run(self, browser: Browser) -> None:
        while not self.stopping.is_set():
            for response in (
                browser.get("/home/"),
                browser.post(CREDENTIALS, {"email": "nobody@example.com", "password": "x"}),
            ):
                self.statuses[response.status_code] += 1
                if response.status_code not in CLEAN:
                    self.bodies.append(response.text[:500])

    def __enter__(self) -> Traffic:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=60)


def test_requests_during_a_restart_fail_cleanly_and_the_next_ones_succeed(served):
    home = sign_in(served, 3)
    assert home.get("/home/").status_code == 200
    pages = [Browser(served.base) for _ in range(2)]
    for browser in pages:
        start_email_login(browser)  # each at a password step (its POST hits the database)

    with Traffic(served, pages) as traffic:
        served.postgres.restart("fast")  # ends every session, in flight or idle
    assert not traffic.bodies, traffic.bodies[0]
    assert set(traffic.statuses) <= CLEAN, traffic.statuses

    # Down: the page, not a 500.
    served.postgres.stop("fast")
    down = home.get("/home/")
    assert down.status_code == 503 and TROUBLE in html.unescape(down.text)
    assert "Traceback" not in down.text
    served.postgres.start()
    # Back: the very next requests succeed, on every gunicorn worker (each had a
    # connection the restart closed).
    answers = [home.get("/home/").status_code for _ in range(8)]
    assert answers == [200] * 8
    # A sign-in from start to finish: the task worker reconnected too, and delivers.
    assert sign_in(served, 4).get("/home/").status_code == 200
