"""Attacks on the authenticator app, recovery codes and the factor choice (issue #11).

The attacker knows the password (the second factor is what is left to beat): replays a
TOTP code, races two requests with one code, tries codes from the wrong steps, races one
recovery code, names another user's factor in My Account's forms, posts without the CSRF
token, guesses codes by brute force, and compares answers for enrolled and unenrolled
accounts."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth import SESSION_KEY
from django.db import connection
from django.test import Client

from caregate.audit.models import AuditEvent
from caregate.factors import recovery, totp
from caregate.factors.models import AuthenticatorApp, RecoveryCode
from tests.conftest import sign_in_as
from tests.factor_steps import (
    NEW_CODES,
    REMOVE_APP,
    app_code,
    choose,
    give_app,
    give_codes,
    page_text,
    to_code_page,
    verify,
)

EMAIL_CODE = "/email-login/email-code/"


def _race(clients: list[Client], data: dict) -> list:
    barrier = threading.Barrier(len(clients))
    responses: list = []

    def post(client: Client) -> None:
        barrier.wait()
        responses.append(client.post(EMAIL_CODE, data))
        connection.close()  # this thread's own connection

    threads = [threading.Thread(target=post, args=(c,)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return responses


def _homes(responses: list) -> int:
    return sum(1 for r in responses if r.status_code == 302 and r.url == "/home/")


@pytest.mark.django_db
def test_a_replayed_code_is_refused_in_a_new_sign_in(client, email_user):
    secret = give_app(email_user)
    code = app_code(secret)
    to_code_page(client, email_user)
    choose(client, "authenticator-app")
    assert verify(client, code).url == "/home/"
    thief = Client()
    to_code_page(thief, email_user)
    choose(thief, "authenticator-app")
    response = verify(thief, code)
    assert "That code was already used." in page_text(response)
    assert SESSION_KEY not in thief.session
    assert AuditEvent.objects.filter(event="factor.verify", outcome="replayed").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_codes_of_the_wrong_step_are_refused(client, email_user, offset):
    secret = give_app(email_user)
    to_code_page(client, email_user)
    choose(client, "authenticator-app")
    assert "That code is not correct." in page_text(verify(client, app_code(secret, offset)))
    assert SESSION_KEY not in client.session


@pytest.mark.django_db(transaction=True)
def test_two_sign_ins_at_once_with_one_code_sign_in_once(email_user):
    """Two different sign-in attempts (two flow instances), one code, the same moment:
    the compare-and-set on the last used step lets exactly one through."""
    secret = give_app(email_user)
    clients = [Client(), Client()]
    for c in clients:
        to_code_page(c, email_user)
        choose(c, "authenticator-app")
    code = app_code(secret)
    responses = _race(clients, {"action": "verify", "code": code})
    assert _homes(responses) == 1
    assert AuditEvent.objects.filter(event="signin", outcome="success").count() == 1
    assert AuthenticatorApp.objects.get(user=email_user).last_used_step == totp.current_step()


@pytest.mark.django_db(transaction=True)
def test_the_same_code_checked_in_many_threads_is_accepted_once(email_user):
    secret = give_app(email_user)
    code = app_code(secret)
    barrier = threading.Barrier(6)
    outcomes: list = []

    def check() -> None:
        barrier.wait()
        outcomes.append(totp.verify(email_user.pk, code))
        connection.close()

    threads = [threading.Thread(target=check) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert outcomes.count(totp.TotpOutcome.OK) == 1
    assert outcomes.count(totp.TotpOutcome.REPLAYED) == 5


@pytest.mark.django_db(transaction=True)
def test_one_recovery_code_used_twice_at_once_signs_in_once(email_user):
    codes = give_codes(email_user)
    clients = [Client(), Client()]
    for c in clients:
        to_code_page(c, email_user)
        choose(c, "recovery-code")
    responses = _race(clients, {"action": "verify", "code": codes[0]})
    assert _homes(responses) == 1
    assert recovery.remaining(email_user) == 9


@pytest.mark.django_db
def test_another_users_app_id_in_the_remove_form_finds_nothing(client, email_user, make_user):
    victim = make_user()
    give_app(victim)
    give_app(email_user)
    victims = AuthenticatorApp.objects.get(user=victim)
    sign_in_as(client, email_user, method="email")
    for posted in [victims.pk, "", "abc", "-1", "1" * 30, f"{victims.pk} "]:
        assert client.post(REMOVE_APP, {"id": posted}).status_code == 404
    assert AuthenticatorApp.objects.filter(user=victim).exists()
    assert AuthenticatorApp.objects.filter(user=email_user).exists()


@pytest.mark.django_db
def test_my_account_forms_need_the_csrf_token(email_user):
    give_app(email_user)
    browser = Client(enforce_csrf_checks=True)
    sign_in_as(browser, email_user, method="email")
    app = AuthenticatorApp.objects.get(user=email_user)
    assert browser.post(REMOVE_APP, {"id": app.pk}).status_code == 403
    assert browser.post(NEW_CODES).status_code == 403
    assert browser.post("/account/authenticator/set-up/").status_code == 403
    assert browser.post("/account/recovery-codes/").status_code == 403
    assert AuthenticatorApp.objects.filter(user=email_user).exists()


@pytest.mark.django_db
def test_the_choice_needs_the_csrf_token(email_user):
    give_app(email_user)
    browser = Client(enforce_csrf_checks=True)
    page = browser.get("/")
    token = page.cookies["csrftoken"].value if "csrftoken" in page.cookies else ""
    browser.post("/login/start/", {"method": "email", "csrfmiddlewaretoken": token})
    assert browser.post(EMAIL_CODE, {"factor": "authenticator-app"}).status_code == 403


@pytest.mark.django_db
def test_signed_out_visitors_cannot_use_the_account_pages(client, email_user):
    give_app(email_user)
    app = AuthenticatorApp.objects.get(user=email_user)
    for url, data in [
        (REMOVE_APP, {"id": app.pk}),
        (NEW_CODES, {}),
        ("/account/recovery-codes/", {}),
    ]:
        response = client.post(url, data)
        assert response.status_code == 302 and response.url.startswith("/?next=")
    assert AuthenticatorApp.objects.filter(user=email_user).exists()


@pytest.mark.django_db
def test_guessing_is_limited_per_account_across_addresses(email_user, settings):
    settings.CAREGATE_RATE_LIMITS = {
        **settings.CAREGATE_RATE_LIMITS,
        "factor-verify:account": (5, 900),
    }
    give_app(email_user)
    give_codes(email_user)
    refused = 0
    for n in range(8):  # a new address (and a new sign-in attempt) for every guess
        c = Client(REMOTE_ADDR=f"198.51.100.{n + 1}")
        to_code_page(c, email_user)
        choose(c, "authenticator-app" if n % 2 else "recovery-code")
        response = verify(c, "000000" if n % 2 else "aaaaa-aaaaa")
        refused += "Too many attempts." in page_text(response)
    assert refused == 3
    assert RecoveryCode.objects.filter(used_at__isnull=False).count() == 0


@pytest.mark.django_db
def test_the_code_page_does_not_tell_an_enrolled_account_before_the_password(
    client, email_user, make_user
):
    """Before the password nothing differs; after it, Try another way shows (the password
    holder may see their own factors: the attacker must already have the password)."""
    bare = make_user()
    give_app(email_user)
    pages = []
    for user in (email_user, bare):
        c = Client()
        c.post("/login/start/", {"method": "email"})
        response = c.post(
            "/email-login/credentials/", {"email": user.email, "password": "wrong-Password-1"}
        )
        pages.append(page_text(response).replace(user.email, "EMAIL"))
    assert pages[0] == pages[1]


@pytest.mark.django_db
def test_a_factor_the_user_has_not_enrolled_cannot_be_chosen(client, email_user):
    to_code_page(client, email_user)
    for key in ["authenticator-app", "recovery-code", "passkey"]:
        response = choose(client, key)
        assert "not available" in page_text(response)
    response = client.post(EMAIL_CODE, {"action": "verify", "code": "123456"})
    assert SESSION_KEY not in client.session
