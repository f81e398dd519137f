"""The mail server stopped, or refusing with 451, under a served Caregate: the code email
is queued and retried by the real task worker (``manage.py db_worker`` started by
deploy/serve.sh), the page says "Still trying…", nothing is lost or sent twice, and the
code goes out once the server takes mail again and signs the user in."""

from __future__ import annotations

import html
import time

import psycopg

from tests.faults.deployment import PASSWORD, Browser, start_email_login

CREDENTIALS = "/email-login/credentials/"
EMAIL_CODE = "/email-login/email-code/"
STATUS = "/delivery/email-login/status.json"
TRYING = "Still trying to send the verification code…"
WAIT_SECONDS = 30


def to_email_code(served, address: str) -> Browser:
    browser = Browser(served.base)
    start_email_login(browser)
    response = browser.post(CREDENTIALS, {"email": address, "password": PASSWORD})
    assert response.headers["Location"] == EMAIL_CODE
    return browser


def wait_until_trying(browser: Browser) -> None:
    """The worker's first attempt failed and it will try again: the page says so."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        status = browser.get(STATUS)
        assert status.status_code == 200
        if status.json()["state"] == "trying":
            page = browser.get(EMAIL_CODE)
            assert page.status_code == 200 and TRYING in html.unescape(page.text)
            return
        assert status.json()["state"] == "sending", status.json()
        time.sleep(0.2)
    raise AssertionError("the page never said it was still trying")


def the_delivery(served, address: str) -> tuple[str, int, str]:
    with psycopg.connect(served.env["DATABASE_URL"]) as conn:
        rows = conn.execute(
            "SELECT status, attempts, body FROM delivery_delivery WHERE destination = %s",
            [address],
        ).fetchall()
    assert len(rows) == 1, rows  # one send, one delivery: nothing duplicated
    return rows[0]


def finish(served, browser: Browser, address: str, seen: int) -> None:
    code = served.mail.inbox.wait_code(address, after=seen, seconds=WAIT_SECONDS)
    verified = browser.post(EMAIL_CODE, {"action": "verify", "code": code})
    assert "E-mail address verified" in html.unescape(verified.text)
    assert browser.post(EMAIL_CODE, {"action": "continue"}).headers["Location"] == "/home/"
    assert browser.get("/home/").status_code == 200
    status, attempts, body = the_delivery(served, address)
    assert status == "sent" and attempts >= 2 and body == ""
    assert len(served.mail.inbox.to(address)) == seen + 1  # one email: sent once


def test_mail_server_down_the_code_waits_and_goes_out_when_it_is_back(served):
    address = "fault5@example.com"
    browser = to_email_code(served, address)
    seen = len(served.mail.inbox.to(address))
    served.mail.stop()
    page = browser.post(EMAIL_CODE, {"action": "send"})
    assert page.status_code == 200  # answered at once: the worker has the email
    wait_until_trying(browser)
    served.mail.start()
    finish(served, browser, address, seen)


def test_mail_server_refusing_for_now_the_code_waits_and_goes_out(served):
    address = "fault6@example.com"
    browser = to_email_code(served, address)
    seen = len(served.mail.inbox.to(address))
    served.mail.inbox.refusing = True  # 451 4.3.0 Try again later
    assert browser.post(EMAIL_CODE, {"action": "send"}).status_code == 200
    wait_until_trying(browser)
    assert served.mail.inbox.refused >= 1
    served.mail.inbox.refusing = False
    finish(served, browser, address, seen)
