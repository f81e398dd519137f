"""The factor policy (caregate/factors/policy.py) through the test client: the "aal2"
profile turning email off as a second factor, the administrators' required factor with its
grace period (the prompt at sign-in, then the enrolment page and a closed portal), the
last required passkey kept, the staff amr rule, and the one-line explanation on the
enrolment pages. Settings are overridden per test."""

from __future__ import annotations

import html
from datetime import timedelta
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.template.loader import render_to_string
from django.test import Client, override_settings
from django.utils import timezone

from caregate.audit.models import AuditEvent
from caregate.delivery.models import OutboxMessage
from caregate.factors import policy
from caregate.factors.policy_models import FactorPolicyGrace
from caregate.factors.policy_settings import policy_problems
from caregate.flows.stages.factor_choice import EMAIL_NOT_ACCEPTED
from caregate.passkeys.models import Passkey
from caregate.staff.identity import StaffRefused, staff_account
from tests import passkey_steps
from tests.conftest import PASSWORD
from tests.factor_steps import SETUP, app_code, give_app, open_setup
from tests.phone_steps import EMAIL_CODE, EMAIL_CREDENTIALS, PHONE, email_login, phone_login, start

pytestmark = pytest.mark.django_db

PROMPT = "/account/sign-in-methods/add-now/"
REQUIRED = "/account/sign-in-methods/required/"
WHY = "A passkey is safer than a text message"


def events(name: str, outcome: str | None = None) -> list[AuditEvent]:
    found = AuditEvent.objects.filter(event=name).order_by("id")
    return list(found.filter(outcome=outcome) if outcome else found)


def text(response) -> str:
    return passkey_steps.page_text(response)


def to_code_page(client: Client, user) -> Any:
    start(client, "email")
    return client.post(EMAIL_CREDENTIALS, {"email": user.email, "password": PASSWORD})


def overdue(user, days: int = 15) -> None:
    FactorPolicyGrace.objects.update_or_create(
        user=user, defaults={"started_at": timezone.now() - timedelta(days=days)}
    )


@pytest.fixture
def aal2(settings) -> None:
    settings.CAREGATE_FACTOR_PROFILE = "aal2"


@pytest.fixture
def admin(make_user):
    return make_user(mfa="phone", phone=PHONE, is_org_admin=True)


# --- the rules themselves -----------------------------------------------------------------


def test_the_standard_profile_asks_nothing(settings, make_user) -> None:
    assert policy.profile() == "standard"
    assert policy.allowed("email") and policy.allowed("passkey")
    assert policy.admin_requirement() == frozenset()
    assert policy.staff_required_amr() == frozenset()
    assert policy.requirement_for(make_user(is_org_admin=True)) == frozenset()


def test_aal2_turns_email_off_and_requires_a_phishing_resistant_factor(aal2, settings) -> None:
    assert not policy.allowed("email")
    assert policy.allowed("phone") and policy.allowed("authenticator-app")
    assert policy.admin_requirement() == {"passkey"}
    # A weaker factor in the list does not lower the profile's requirement.
    settings.CAREGATE_FACTORS_REQUIRED_FOR_ADMINS = ["authenticator-app"]
    assert policy.admin_requirement() == {"passkey"}
    assert policy.staff_required_amr() == {"phr", "phrh", "hwk"}


def test_the_admin_list_takes_keys_or_phishing_resistant(settings) -> None:
    settings.CAREGATE_FACTORS_REQUIRED_FOR_ADMINS = ["phishing-resistant"]
    assert policy.admin_requirement() == {"passkey"}
    settings.CAREGATE_FACTORS_REQUIRED_FOR_ADMINS = ["authenticator-app", "passkey", "nonsense"]
    assert policy.admin_requirement() == {"authenticator-app", "passkey"}
    # A factor the deployment does not allow cannot be required.
    settings.CAREGATE_SECOND_FACTORS = ["email", "phone", "authenticator-app"]
    assert policy.admin_requirement() == {"authenticator-app"}


def test_the_requirement_is_for_administrators_only(aal2, make_user, make_staff) -> None:
    assert policy.requirement_for(make_user(is_org_admin=True)) == {"passkey"}
    assert policy.requirement_for(make_user()) == frozenset()
    assert policy.requirement_for(make_staff()) == frozenset()


def test_settings_that_would_weaken_the_policy_stop_the_start() -> None:
    def problems(**changes: Any) -> list[str]:
        base: dict[str, Any] = {
            "profile": "standard",
            "allowed": ["email", "phone", "passkey"],
            "admins": [],
            "grace_days": 14,
        }
        return policy_problems(**{**base, **changes})

    assert problems() == [] and problems(profile="aal2") == []
    assert problems(profile="AAL2")  # a typo is not "standard"
    assert problems(profile="aal2", allowed=["email", "phone"])
    assert problems(admins=["phishing-resistant"], allowed=["phone"])
    assert problems(admins=["passkeys"])
    assert problems(admins=["authenticator-app"], allowed=["phone"])
    assert problems(grace_days=-1)
    with pytest.raises(ImproperlyConfigured), override_settings(CAREGATE_FACTOR_PROFILE="AAL2"):
        policy.profile()


def test_the_policy_costs_no_query_for_whom_it_does_not_apply(
    aal2, rf, make_user, django_assert_num_queries
) -> None:
    user = make_user(mfa="phone")
    admin = make_user(mfa="phone", is_org_admin=True)
    request = rf.get("/home/")
    request.user = user
    with django_assert_num_queries(0):
        assert policy.after_sign_in(request, user) is None
        assert not policy.closed(request)
    with override_settings(CAREGATE_FACTOR_PROFILE="standard"):
        request.user = admin
        with django_assert_num_queries(0):
            assert policy.after_sign_in(request, admin) is None
            assert not policy.closed(request)


# --- aal2: email is no second factor ---------------------------------------------------


def test_aal2_email_only_user_is_told_how_to_get_access(aal2, client, email_user) -> None:
    response = to_code_page(client, email_user)
    assert response.url == EMAIL_CODE
    page = client.get(EMAIL_CODE)
    assert page.status_code == 403
    assert "An emailed code can no longer be used to sign in" in text(page)
    assert "reset your registration" in text(page)
    assert WHY in text(page)
    assert events("factor-policy.refused", "factor-off")
    # Send does nothing either: no code is emailed, nobody is signed in.
    sent = client.post(EMAIL_CODE, {"action": "send"})
    assert sent.status_code == 403
    assert not OutboxMessage.objects.filter(to=email_user.email).exists()
    assert "_auth_user_id" not in client.session


def test_aal2_email_user_with_an_app_chooses_it(aal2, client, email_user) -> None:
    secret = give_app(email_user)
    to_code_page(client, email_user)
    page = client.get(EMAIL_CODE)
    assert page.status_code == 200
    assert "Try another way" in text(page)
    assert "Email a code to my email address" not in text(page)
    assert "Enter a code from my authenticator app" in text(page)
    # Every account has an address: the list says why email is not among the ways.
    assert EMAIL_NOT_ACCEPTED in text(client.get(f"{EMAIL_CODE}?another-way"))
    # Send on the code page shows the list again; no code is emailed.
    client.post(EMAIL_CODE, {"action": "send"})
    assert not OutboxMessage.objects.filter(to=email_user.email).exists()
    assert client.post(EMAIL_CODE, {"factor": "authenticator-app"}).url == EMAIL_CODE
    done = client.post(EMAIL_CODE, {"action": "verify", "code": app_code(secret)})
    assert done.status_code == 302 and done.url == "/home/", text(done)[:2000]
    event = events("signin", "success")[-1]
    assert event.detail["factor"] == "authenticator-app"


def test_the_standard_profile_keeps_email(client, email_user) -> None:
    response = email_login(client, email_user)
    assert response.url == "/home/"


def test_the_standard_profiles_list_says_nothing_of_email(client, email_user) -> None:
    give_app(email_user)
    to_code_page(client, email_user)
    listing = text(client.get(f"{EMAIL_CODE}?another-way"))
    assert "Enter a code from my authenticator app" in listing
    assert EMAIL_NOT_ACCEPTED not in listing


def test_a_factor_taken_out_of_the_allowed_list_is_off_too(settings, client, email_user) -> None:
    settings.CAREGATE_SECOND_FACTORS = ["phone", "authenticator-app"]
    to_code_page(client, email_user)
    assert client.get(EMAIL_CODE).status_code == 403


# --- administrators: the grace period --------------------------------------------------


def test_no_requirement_no_prompt_and_no_grace_row(client, admin) -> None:
    assert phone_login(client, admin).url == "/home/"
    assert not FactorPolicyGrace.objects.exists()


def test_an_admin_without_a_passkey_is_prompted_in_the_grace_period(aal2, client, admin) -> None:
    response = phone_login(client, admin)
    assert response.url == PROMPT
    grace = FactorPolicyGrace.objects.get(user=admin)
    assert timezone.now() - grace.started_at < timedelta(minutes=1)
    page = client.get(PROMPT)
    assert page.status_code == 200
    assert WHY in text(page)
    assert 'href="/account/passkeys/add/"' in text(page)
    assert "Remind me later" in text(page)
    deadline = timezone.localtime(grace.started_at + timedelta(days=14))
    assert deadline.strftime("%m/%d/%Y") in text(page)
    (event,) = events("factor-policy.signin", "grace-prompt")
    assert event.user_id_snapshot == admin.pk and event.detail["required"] == ["passkey"]
    # Remind me later: the portal is open in the grace period.
    assert client.get("/home/").status_code == 200
    assert client.get("/setup/users/").status_code == 200


def test_the_grace_period_counts_from_the_first_sign_in(aal2, settings, admin) -> None:
    phone_login(Client(), admin)
    first = FactorPolicyGrace.objects.get(user=admin).started_at
    phone_login(Client(), admin)
    assert FactorPolicyGrace.objects.get(user=admin).started_at == first
    assert len(events("factor-policy.signin", "grace-prompt")) == 2


def test_a_standard_user_under_aal2_is_not_prompted(aal2, client, make_user) -> None:
    user = make_user(mfa="phone", phone=PHONE)
    assert phone_login(client, user).url == "/home/"
    assert not FactorPolicyGrace.objects.exists()


def test_an_admin_with_a_passkey_goes_home(aal2, client, admin) -> None:
    _passkey(admin, 0)
    assert phone_login(client, admin).url == "/home/"
    assert not FactorPolicyGrace.objects.exists()


def test_the_required_factor_can_be_an_authenticator_app(settings, client, admin) -> None:
    settings.CAREGATE_FACTORS_REQUIRED_FOR_ADMINS = ["authenticator-app"]
    assert phone_login(client, admin).url == PROMPT
    page = text(client.get(PROMPT))
    assert "Set up authenticator app" in page and "Add a passkey now" not in page
    give_app(admin)
    assert phone_login(Client(), admin).url == "/home/"


def test_past_the_grace_period_the_sign_in_ends_at_enrolment(aal2, client, admin) -> None:
    overdue(admin)
    assert phone_login(client, admin).url == REQUIRED
    page = client.get(REQUIRED)
    assert page.status_code == 200
    assert WHY in text(page) and "The time to add one ended on" in text(page)
    assert events("factor-policy.signin", "enrol-required")
    # The portal is closed; enrolling is open.
    assert client.get("/home/").url == REQUIRED
    assert client.get(PROMPT).url == REQUIRED
    assert client.get("/account/passkeys/").status_code == 200
    # The add page (or its "verify your current factor first" step) is not closed.
    add = client.get("/account/passkeys/add/")
    assert add.status_code in (200, 403) and "ADD A PASSKEY" in text(add)
    assert events("factor-policy.page", "refused")


def test_a_grace_period_of_zero_days_closes_the_portal_at_once(aal2, settings, admin) -> None:
    settings.CAREGATE_FACTOR_GRACE_DAYS = 0
    client = Client()
    assert phone_login(client, admin).url == REQUIRED
    assert client.get("/home/").url == REQUIRED


def test_enrolling_a_passkey_opens_the_portal(aal2, client, admin) -> None:
    overdue(admin)
    phone_login(client, admin)
    passkey_steps.enrol(client)
    assert client.get("/home/").status_code == 200
    assert client.get(REQUIRED).url == "/home/"
    assert client.get(PROMPT).url == "/home/"


def test_the_enrolment_pages_explain_why_in_one_line(client, email_user, outbox_code) -> None:
    passkey_steps.signed_in(client, email_user)
    assert "safer than a text message" in text(client.get("/account/passkeys/"))
    request = client.get("/").wsgi_request
    add = render_to_string("passkeys/add.html", {"options": {}}, request=request)
    assert WHY in html.unescape(add)
    open_setup(client, email_user, outbox_code)
    assert "Safer still is a passkey" in text(client.get(SETUP))


# --- the last required passkey ----------------------------------------------------------


def _passkey(user, n: int) -> Passkey:
    return Passkey.objects.create(
        user=user,
        name=f"Key {n}",
        credential_id=f"cred-{user.pk}-{n}",
        public_key=b"p",
        sign_count=0,
    )


def test_an_admin_cannot_remove_the_last_required_passkey(aal2, client, admin) -> None:
    first, second = _passkey(admin, 1), _passkey(admin, 2)
    phone_login(client, admin)
    client.post(f"/account/passkeys/{first.pk}/remove/")
    assert list(Passkey.objects.filter(user=admin)) == [second]
    response = client.post(f"/account/passkeys/{second.pk}/remove/", follow=True)
    assert "add another passkey first" in text(response)
    assert Passkey.objects.filter(user=admin).count() == 1
    assert events("factor-policy.remove", "refused")


def test_anyone_else_removes_their_last_passkey(aal2, client, make_user) -> None:
    user = make_user(mfa="phone", phone=PHONE)
    only = _passkey(user, 1)
    phone_login(client, user)
    client.post(f"/account/passkeys/{only.pk}/remove/")
    assert not Passkey.objects.filter(user=user).exists()


# --- staff: the ID token's amr ----------------------------------------------------------


@pytest.fixture
def staff_settings(settings) -> None:
    settings.CAREGATE_OIDC_ISSUER = "https://idp.example.org"
    settings.CAREGATE_OIDC_ROLE_MAP = "cg-support=support"
    settings.CAREGATE_OIDC_ROLES_CLAIM = "groups"
    settings.CAREGATE_INTERNAL_EMAIL_DOMAIN = "staff.example.org"
    settings.CAREGATE_OIDC_REQUIRE_MFA = True
    settings.CAREGATE_OIDC_MFA_AMR = "mfa"


def _claims(amr: list[str]) -> dict[str, Any]:
    return {
        "iss": "https://idp.example.org",
        "sub": "sub-amr",
        "email": "jo@staff.example.org",
        "groups": ["cg-support"],
        "amr": amr,
    }


@pytest.mark.parametrize("strong", ["phr", "phrh", "hwk"])
def test_aal2_staff_with_a_phishing_resistant_amr_sign_in(aal2, staff_settings, strong) -> None:
    user, _ = staff_account(_claims(["mfa", strong]))
    assert user.is_operator_staff


@pytest.mark.parametrize("amr", [["pwd", "mfa"], ["mfa", "otp", "sms"], ["mfa", "swk"]])
def test_aal2_staff_without_one_are_refused(aal2, staff_settings, amr) -> None:
    with pytest.raises(StaffRefused) as refused:
        staff_account(_claims(amr))
    assert refused.value.reason == "weak-mfa"
    (event,) = events("factor-policy.staff", "refused")
    assert event.detail["amr"] == amr


def test_the_staff_amr_list_is_a_setting(staff_settings, settings) -> None:
    staff_account(_claims(["pwd", "mfa"]))  # standard: nothing more asked
    settings.CAREGATE_STAFF_REQUIRED_AMR = ["swk"]
    with pytest.raises(StaffRefused):
        staff_account(_claims(["pwd", "mfa"]))
    staff_account(_claims(["mfa", "swk"]))
