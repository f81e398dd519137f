"""Attacker review (session 11) of the factor policy (caregate/factors/policy.py) under the
"aal2" profile: ways around "email is no second factor", a staff amr list that weakens
aal2, a My Account change begun in the grace period and finished after it, and a grace
period no date can reach. The four under "findings" fail on the code as reviewed; the
rest are attacks that held."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from caregate.accounts.models import User
from caregate.factors import policy
from caregate.factors.policy_models import FactorPolicyGrace
from tests.conftest import PASSWORD
from tests.passkey_steps import ADD, verify_for_passkey
from tests.phone_steps import PHONE, is_signed_in, phone_login
from tests.registration_steps import choose, create_password, section1_login, verify_email

pytestmark = pytest.mark.django_db

REQUIRED = "/account/sign-in-methods/required/"
PROMPT = "/account/sign-in-methods/add-now/"


@pytest.fixture(autouse=True)
def aal2(settings) -> None:
    settings.CAREGATE_FACTOR_PROFILE = "aal2"


# --- findings (fail now) ----------------------------------------------------------------


def test_mfa_registration_does_not_sign_in_with_email_under_aal2(client, make_user) -> None:
    """Section 1 (and the emailed link, Registration Error's Reset, Having trouble): a
    user without MFA (a new user, or anyone after Reset Registration) picks EMAIL and is
    signed in with the password and an emailed code, the very sign-in aal2 turns off."""
    user = make_user(mfa="none")
    response = section1_login(client, user.username, PASSWORD)
    assert response.status_code == 302 and response.url == "/mfa-registration/method/"
    page = client.get("/mfa-registration/method/").content.decode()
    assert 'value="email"' not in page and 'value="phone"' in page
    chosen = client.post("/mfa-registration/method/", {"method": "email"})  # forged
    assert chosen.status_code == 200 and "Please select PHONE." in chosen.content.decode()
    # The email code stage is not reached: the flow stays at LOGIN METHOD.
    assert client.get("/mfa-registration/email-code/").url == "/mfa-registration/method/"
    assert not is_signed_in(client), "signed in with an emailed code as the second factor"
    user.refresh_from_db()
    assert user.mfa_method != User.MfaMethod.EMAIL


def test_staff_required_amr_setting_cannot_weaken_aal2(settings) -> None:
    """Under aal2 the administrators' list keeps only phishing-resistant keys; the staff
    amr list replaces aal2's phr/phrh/hwk outright, and no start-up check refuses it."""
    settings.CAREGATE_STAFF_REQUIRED_AMR = ["mfa", "otp"]
    assert not policy.staff_amr_allowed(("pwd", "otp")), "aal2 staff sign-in with an OTP"
    assert not policy.staff_amr_allowed(("pwd", "mfa"))


def test_a_change_begun_in_the_grace_period_cannot_be_finished_after(client, make_user) -> None:
    """An administrator opens Change email address in the grace period; the grace ends
    (inside the session, as test_the_grace_period_ends_inside_a_session shows) and the
    flow's stage URLs still serve them: the "portal closed" promise has a side door."""
    admin = make_user(mfa="phone", phone=PHONE, is_org_admin=True)
    assert phone_login(client, admin).url == PROMPT
    started = client.post("/setup/my-account/change/email/")
    assert started.status_code == 302
    stage_url = started.url
    FactorPolicyGrace.objects.filter(user=admin).update(
        started_at=timezone.now() - timedelta(days=30)
    )
    assert client.get("/home/").url == REQUIRED  # the portal is closed now...
    response = client.get(stage_url)
    assert response.status_code == 302 and response.url == REQUIRED, (
        stage_url,
        response.status_code,
    )


def test_a_grace_period_past_the_calendar_stops_the_start() -> None:
    """CAREGATE_FACTOR_GRACE_DAYS=1000000000 passes the start-up check (only negatives are
    refused), never closes the portal, and makes every administrator's sign-in and portal
    page raise OverflowError (timedelta) once it is reached: refuse it at the start."""
    from caregate.factors.policy_settings import policy_problems

    problems = policy_problems(
        profile="aal2", allowed=["phone", "passkey"], admins=[], grace_days=10**9
    )
    assert problems, "an unreachable grace period starts"


# --- attacks that held (regression) -----------------------------------------------------


def test_staff_amr_is_exact_no_case_or_whitespace_tricks() -> None:
    assert not policy.staff_amr_allowed(("HWK",))
    assert not policy.staff_amr_allowed((" hwk",))
    assert not policy.staff_amr_allowed(("swk", "pwd", "mfa"))
    assert policy.staff_amr_allowed(("pwd", "hwk"))


def test_a_passkey_ticket_does_not_follow_a_sign_out_and_in(make_user) -> None:
    admin = make_user(mfa="phone", phone=PHONE, is_org_admin=True)
    client = Client()
    phone_login(client, admin)
    verify_for_passkey(client)
    old_key = client.session.session_key
    assert cache.get(f"caregate:passkeys:add-ticket:{old_key}")["user"] == admin.pk
    # Another session of the same user does not hold it.
    other = Client()
    phone_login(other, admin)
    assert other.get(ADD).status_code == 403
    # Sign out and in again in the same browser: a new session key, no ticket.
    client.post("/logout/")
    phone_login(client, admin)
    assert client.session.session_key != old_key
    assert client.get(ADD).status_code == 403


def test_remind_me_later_replayed_after_grace_is_refused(client, make_user) -> None:
    admin = make_user(mfa="phone", phone=PHONE, is_org_admin=True)
    FactorPolicyGrace.objects.create(user=admin, started_at=timezone.now() - timedelta(days=30))
    assert phone_login(client, admin).url == REQUIRED
    for path in (PROMPT, PROMPT + "?later=1", "/home/?remind=later"):
        assert client.get(path).url == REQUIRED
        assert client.post(path).url == REQUIRED


def test_email_chosen_before_the_switch_to_aal2_does_not_finish_after(
    client, make_user, settings
) -> None:
    """EMAIL chosen while it was allowed; the deployment switches to aal2 before Create:
    the registration restarts instead of signing in with the emailed code."""
    settings.CAREGATE_FACTOR_PROFILE = "standard"
    user = make_user(mfa="none")
    section1_login(client, user.username, PASSWORD)
    assert choose(client, "mfa-registration", "email").url == "/mfa-registration/email-code/"
    verify_email(client, "mfa-registration", user.email)
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    response = create_password(client, "mfa-registration")
    assert response.status_code == 302 and response.url != "/home/"
    assert not is_signed_in(client)
    user.refresh_from_db()
    assert user.mfa_method == User.MfaMethod.NONE
