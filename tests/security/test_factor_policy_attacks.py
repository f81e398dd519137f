"""Attacks on the factor policy (caregate/factors/policy.py): an administrator past the
grace period trying every portal URL instead of enrolling, "Remind me later" after the
grace period, removing the last passkey (also two removals at once), a forged factor
choice and an emailed code from before the "aal2" switch."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.factors import policy
from caregate.factors.policy_models import FactorPolicyGrace
from caregate.flows.models import FlowInstance
from caregate.passkeys.models import Passkey
from tests.conftest import PASSWORD
from tests.factor_steps import give_app
from tests.phone_steps import EMAIL_CODE, EMAIL_CREDENTIALS, PHONE, SIX_DIGITS, phone_login, start

pytestmark = pytest.mark.django_db

REQUIRED = "/account/sign-in-methods/required/"
PROMPT = "/account/sign-in-methods/add-now/"


@pytest.fixture(autouse=True)
def aal2(settings) -> None:
    settings.CAREGATE_FACTOR_PROFILE = "aal2"


@pytest.fixture
def admin(make_user):
    return make_user(mfa="phone", phone=PHONE, is_org_admin=True)


@pytest.fixture
def overdue_admin(client, admin) -> Client:
    FactorPolicyGrace.objects.create(user=admin, started_at=timezone.now() - timedelta(days=30))
    assert phone_login(client, admin).url == REQUIRED
    return client


def _passkey(user, n: int) -> Passkey:
    return Passkey.objects.create(
        user=user, name=f"Key {n}", credential_id=f"cred-{user.pk}-{n}", public_key=b"p"
    )


def _portal_urls() -> list[tuple[str, str]]:
    """Every URL of the portal's apps, arguments filled in: (view name, path)."""
    found: list[tuple[str, str]] = []

    def walk(patterns, prefix: str, namespace: str) -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                ns = entry.namespace or namespace
                walk(entry.url_patterns, prefix + str(entry.pattern), ns)
            elif isinstance(entry, URLPattern) and namespace in {"portal", "factors", "passkeys"}:
                route = prefix + str(entry.pattern)
                route = route.replace("<int:user_id>", "1").replace("<int:passkey_id>", "1")
                route = route.replace("<slug:what>", "phone").replace("<slug:action>", "reset")
                route = route.replace("<slug:slug>", "cases").replace("<slug:feature>", "x")
                found.append((f"{namespace}:{entry.name}", "/" + route))

    walk(get_resolver().url_patterns, "", "")
    return found


# Not portal pages (open to anyone, or the way out): the policy has nothing to close.
NOT_PORTAL = {"portal:login", "portal:start-login", "portal:logout", "portal:terms"}
NOT_PORTAL |= {"portal:not-available", "passkeys:login-start"}


def test_every_portal_url_sends_an_overdue_admin_to_enrolment(overdue_admin) -> None:
    urls = _portal_urls()
    assert len(urls) > 15
    open_ones = policy.open_views({"passkey"})
    for name, path in urls:
        if name in NOT_PORTAL or name in open_ones:
            continue
        for method in (overdue_admin.get, overdue_admin.post):
            response = method(path)
            if response.status_code == 405:  # POST-only or GET-only: refused before the view
                continue
            assert response.status_code == 302 and response.url == REQUIRED, (name, path)


def test_manage_users_actions_do_nothing_for_an_overdue_admin(overdue_admin, make_user) -> None:
    other = make_user(mfa="phone", phone=PHONE)
    before = AuditEvent.objects.filter(event__startswith="manage").count()
    response = overdue_admin.post(f"/setup/users/{other.pk}/reset/", {"confirm": "yes"})
    assert response.url == REQUIRED
    other.refresh_from_db()
    assert other.mfa_method == "phone"
    assert AuditEvent.objects.filter(event__startswith="manage").count() == before


def test_my_account_changes_cannot_be_started(overdue_admin) -> None:
    for path in ("/setup/my-account/change/phone/", "/account/authenticator/set-up/"):
        assert overdue_admin.post(path).url == REQUIRED
    assert overdue_admin.post("/account/recovery-codes/new/").url == REQUIRED
    assert not FlowInstance.objects.exclude(flow__in=["phone-login"]).exists()


def test_remind_me_later_after_the_grace_period_opens_nothing(overdue_admin) -> None:
    assert overdue_admin.get(PROMPT).url == REQUIRED
    assert overdue_admin.get("/home/").url == REQUIRED


def test_the_grace_period_ends_inside_a_session(client, admin) -> None:
    assert phone_login(client, admin).url == PROMPT
    assert client.get("/home/").status_code == 200
    FactorPolicyGrace.objects.filter(user=admin).update(
        started_at=timezone.now() - timedelta(days=14, seconds=1)
    )
    assert client.get("/home/").url == REQUIRED


def test_removing_the_last_passkey_is_refused_not_a_new_grace(client, admin) -> None:
    only = _passkey(admin, 1)
    FactorPolicyGrace.objects.create(user=admin, started_at=timezone.now() - timedelta(days=30))
    assert phone_login(client, admin).url == "/home/"
    client.post(f"/account/passkeys/{only.pk}/remove/")
    assert Passkey.objects.filter(user=admin).exists()
    assert client.get("/home/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_two_removals_at_once_leave_one_passkey(admin, monkeypatch) -> None:
    first, second = _passkey(admin, 1), _passkey(admin, 2)
    client = Client()
    phone_login(client, admin)
    original = policy.keeps_requirement
    entered = threading.Event()

    def slow(user, *, removing):
        # The first removal holds the user's row lock while it waits here; the second
        # starts meanwhile and must wait for the lock, then see one passkey left.
        answer = original(user, removing=removing)
        if not entered.is_set():
            entered.set()
            time.sleep(0.5)
        return answer

    monkeypatch.setattr(policy, "keeps_requirement", slow)
    other = Client()
    other.cookies[settings.SESSION_COOKIE_NAME] = client.cookies[
        settings.SESSION_COOKIE_NAME
    ].value
    results: list[int] = []

    def remove_first() -> None:
        try:
            results.append(client.post(f"/account/passkeys/{first.pk}/remove/").status_code)
        finally:
            connection.close()  # the thread's own connection

    one = threading.Thread(target=remove_first)
    one.start()
    assert entered.wait(5)
    results.append(other.post(f"/account/passkeys/{second.pk}/remove/").status_code)
    one.join(10)
    assert Passkey.objects.filter(user=admin).count() == 1
    assert AuditEvent.objects.filter(event="factor-policy.remove", outcome="refused").count() == 1


def test_a_forged_email_choice_is_refused_under_aal2(client, email_user) -> None:
    give_app(email_user)
    start(client, "email")
    client.post(EMAIL_CREDENTIALS, {"email": email_user.email, "password": PASSWORD})
    response = client.post(EMAIL_CODE, {"factor": "email"})
    assert "That way of signing in is not available" in response.content.decode()
    client.post(EMAIL_CODE, {"action": "send"})
    assert not OutboxMessage.objects.filter(to=email_user.email).exists()


def test_an_emailed_code_from_before_aal2_signs_nobody_in(client, email_user, settings) -> None:
    settings.CAREGATE_FACTOR_PROFILE = "standard"
    start(client, "email")
    client.post(EMAIL_CREDENTIALS, {"email": email_user.email, "password": PASSWORD})
    client.post(EMAIL_CODE, {"action": "send"})
    message = OutboxMessage.objects.filter(to=email_user.email).latest("id")
    code = SIX_DIGITS.search(message.body).group(1)
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    for data in ({"action": "verify", "code": code}, {"action": "continue"}):
        assert client.post(EMAIL_CODE, data).status_code == 403
    assert "_auth_user_id" not in client.session
    assert not AuditEvent.objects.filter(event="signin", outcome="success").exists()
