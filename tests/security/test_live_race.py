"""Attack: the review's MFA bypass, over real HTTP against a live server on PostgreSQL.

A phone-MFA user's password is known, the phone is not. In one session: LOGIN WITH PHONE
→ password → also LOGIN WITH EMAIL → Send Code (SMS) → Call Me and, a few milliseconds
later, three slow POSTs to the email flow's credentials page (each runs an Argon2 hash).
Then the number shown for the call is posted as the SMS code. On the engine that kept
every flow's state in the session, the slower requests wrote back "mode=sms" and the call's
code passed as an SMS code: signed in, the call never answered. Tried 50 times; it must
never reach the home page.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
import requests

from tests.conftest import PASSWORD

ATTEMPTS = 50
CALL_CODE = re.compile(r'<p class="call-code"[^>]*>\s*(\d{6})\s*</p>')
GENEROUS = (10**6, 3600)


def _post(session: requests.Session, url: str, data: dict) -> requests.Response:
    headers = {"X-CSRFToken": session.cookies.get("csrftoken", ""), "Referer": url}
    return session.post(url, data=data, headers=headers, allow_redirects=False, timeout=30)


def _attempt(base: str, email: str) -> tuple[bool, str]:
    """One try of the race; return (reached the home page, what happened)."""
    browser = requests.Session()
    browser.get(f"{base}/", timeout=30)  # the login page sets the CSRF cookie
    _post(browser, f"{base}/login/start/", {"method": "phone"})
    r = _post(browser, f"{base}/phone-login/credentials/", {"email": email, "password": PASSWORD})
    assert r.status_code == 302 and r.headers["Location"] == "/phone-login/phone/", r.text[:500]
    _post(browser, f"{base}/login/start/", {"method": "email"})
    sent = _post(browser, f"{base}/phone-login/phone/", {"action": "sms"})
    assert sent.status_code == 200, sent.status_code

    call_response: list[requests.Response] = []

    def call_me() -> None:
        call_response.append(_post(browser, f"{base}/phone-login/phone/", {"action": "call"}))

    def slow_email_request(n: int) -> None:
        _post(
            browser,
            f"{base}/email-login/credentials/",
            {"email": f"nobody{n}@unknown.example", "password": "wrong-password-123"},
        )

    caller = threading.Thread(target=call_me)
    slow = [threading.Thread(target=slow_email_request, args=(n,)) for n in range(3)]
    caller.start()
    time.sleep(0.003)  # "a few milliseconds later"
    for thread in slow:
        thread.start()
    for thread in [caller, *slow]:
        thread.join(60)
    match = CALL_CODE.search(call_response[0].text) if call_response else None
    if match is None:
        return False, "no call code shown"
    verify = _post(
        browser, f"{base}/phone-login/phone/", {"action": "verify-sms", "code": match.group(1)}
    )
    home = browser.get(f"{base}/home/", allow_redirects=False, timeout=30)
    reached = (verify.status_code == 302 and verify.headers.get("Location") == "/home/") or (
        home.status_code == 200
    )
    return reached, f"verify {verify.status_code} {verify.headers.get('Location', '')}"


@pytest.mark.django_db(transaction=True)
def test_call_code_never_passes_as_sms_code_under_the_race(live_server, settings, make_user):
    settings.CAREGATE_CODE_RESEND_COOLDOWN_SECONDS = 0
    settings.CAREGATE_CALL_MODE = "code"
    settings.CAREGATE_RATE_LIMITS = {scope: GENEROUS for scope in settings.CAREGATE_RATE_LIMITS}
    user = make_user(mfa="phone")
    outcomes = [_attempt(live_server.url, user.email) for _ in range(ATTEMPTS)]
    bypasses = [detail for reached, detail in outcomes if reached]
    assert not bypasses, f"{len(bypasses)} of {ATTEMPTS} attempts signed in: {bypasses[:3]}"
    # Every attempt did run the race: the call was placed and its number shown each time.
    assert all(detail.startswith("verify") for _, detail in outcomes), outcomes[:3]
