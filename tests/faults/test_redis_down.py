"""Redis stopped during sign-ins, on a served Caregate (gunicorn + task worker): every
rate-limited action fails closed with the "try again in a minute" page (a 503, never a
500, never an unthrottled password check or code send), and everything works again once
Redis is back (empty: its sessions' copies and counters are gone)."""

from __future__ import annotations

import html

import psycopg
import requests

from tests.faults.deployment import PASSWORD, Browser, start_email_login

TROUBLE = "The portal is having trouble right now; please try again in a minute."
CREDENTIALS = "/email-login/credentials/"
EMAIL_CODE = "/email-login/email-code/"


def words(response) -> str:
    return html.unescape(response.text)


def assert_outage_page(response) -> None:
    assert response.status_code == 503, (response.status_code, response.text[:300])
    assert TROUBLE in words(response)
    assert response.headers["Retry-After"] == "60"
    assert "Traceback" not in response.text


def deliveries(served) -> int:
    with psycopg.connect(served.env["DATABASE_URL"]) as conn:
        return conn.execute("SELECT count(*) FROM delivery_delivery").fetchone()[0]


def test_sign_ins_fail_closed_while_redis_is_down_and_recover(served):
    inbox = served.mail.inbox
    # Three browsers, each at a different step when Redis stops.
    at_password, at_code, signed_in = (Browser(served.base) for _ in range(3))
    for browser in (at_password, at_code, signed_in):
        start_email_login(browser)
    right = {"email": "fault1@example.com", "password": PASSWORD}
    assert at_code.post(CREDENTIALS, right).headers["Location"] == EMAIL_CODE
    signed_in.post(CREDENTIALS, {"email": "fault2@example.com", "password": PASSWORD})
    seen = len(inbox.to("fault2@example.com"))
    signed_in.post(EMAIL_CODE, {"action": "send"})
    code = inbox.wait_code("fault2@example.com", after=seen)
    signed_in.post(EMAIL_CODE, {"action": "verify", "code": code})
    assert signed_in.post(EMAIL_CODE, {"action": "continue"}).headers["Location"] == "/home/"
    assert signed_in.get("/home/").status_code == 200

    served.redis.stop()
    before = deliveries(served)
    # The right password, many times: never let through while its budget cannot be counted.
    for _ in range(3):
        assert_outage_page(at_password.post(CREDENTIALS, right))
    # No code is sent while its budget cannot be counted.
    assert_outage_page(at_code.post(EMAIL_CODE, {"action": "send"}))
    assert deliveries(served) == before
    # Pages that read the session say the same, rather than failing with a 500.
    assert_outage_page(signed_in.get("/home/"))
    newcomer = Browser(served.base)
    assert newcomer.get("/").status_code == 200  # the login page needs neither
    # A new session is written to the database (its Redis copy is skipped, Django logs
    # it), so starting a sign-in still works; its password step is refused like the rest.
    started = newcomer.post("/login/start/", {"method": "email"})
    assert started.status_code == 302, started.status_code
    assert_outage_page(newcomer.post(CREDENTIALS, right))
    ready = served_get(served, "/readyz")
    assert ready.status_code == 503 and ready.json()["checks"]["cache"] == "failed"
    assert served_get(served, "/healthz").status_code == 200  # the process itself is fine

    served.redis.start()
    served.wait_ready()
    # Everything recovers: the refused password now signs in, the code goes out, and the
    # session made before the outage is still valid (the database holds it).
    assert at_password.post(CREDENTIALS, right).headers["Location"] == EMAIL_CODE
    seen = len(inbox.to("fault1@example.com"))
    assert at_code.post(EMAIL_CODE, {"action": "send"}).status_code == 200
    code = inbox.wait_code("fault1@example.com", after=seen)
    verified = at_code.post(EMAIL_CODE, {"action": "verify", "code": code})
    assert "E-mail address verified" in words(verified)
    assert at_code.post(EMAIL_CODE, {"action": "continue"}).headers["Location"] == "/home/"
    assert signed_in.get("/home/").status_code == 200


def served_get(served, path: str) -> requests.Response:
    return requests.get(served.base + path, timeout=10)
