"""Operator staff come in through the staff LOGIN only (the identity provider's sign-in
and MFA); every other door of the portal stays shut to a staff account, and the staff
domain cannot be taken by a customer in any spelling that mail delivery treats as it.

Each test here is a finding of the attacker review of issue #9, and fails without its fix.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client, RequestFactory

from caregate.accounts.models import User
from caregate.delivery.models import OutboxMessage
from caregate.flows.registration_links import PURPOSE, send_registration_link
from caregate.flows.signin import sign_in
from caregate.staff.domain import is_internal_address
from caregate.staff.identity import StaffRefused, staff_account
from caregate.verification.links import issue_link
from tests import registration_steps as steps

DOMAIN = "staff.example.org"
ISSUER = "https://idp.example.org"


@pytest.fixture(autouse=True)
def _domain(settings) -> None:
    settings.CAREGATE_INTERNAL_EMAIL_DOMAIN = DOMAIN
    settings.CAREGATE_OIDC_ISSUER = ISSUER
    settings.CAREGATE_OIDC_ROLE_MAP = "cg-support=support"
    settings.CAREGATE_OIDC_REQUIRE_MFA = True


def test_registration_error_reset_sends_no_link_to_a_staff_account(client: Client, make_staff):
    staff = make_staff()
    client.post("/registration-error/reset/", {"username": staff.username})
    assert not OutboxMessage.objects.filter(to__icontains=staff.email).exists()
    assert send_registration_link(staff) is False


def test_a_registration_link_of_a_staff_account_does_not_open(client: Client, make_staff):
    staff = make_staff()
    token = issue_link(staff, PURPOSE, 600)  # however it came to exist
    response = steps.open_link(client, f"/registration-link/{token}/")
    assert response.status_code == 200 and "Registration Error" in response.content.decode()
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["email", "phone", "registration-email", "remembered-email"])
def test_no_flow_but_the_staff_login_signs_a_staff_account_in(make_staff, method):
    staff = make_staff()
    request = RequestFactory().get("/")
    from django.contrib.sessions.backends.db import SessionStore

    request.session = SessionStore()
    with pytest.raises(PermissionDenied):
        sign_in(request, staff, method=method, flow="any")
    assert "_auth_user_id" not in request.session


@pytest.mark.django_db
def test_the_staff_login_never_signs_a_customer_in(make_user):
    customer = make_user()
    request = RequestFactory().get("/")
    from django.contrib.sessions.backends.db import SessionStore

    request.session = SessionStore()
    with pytest.raises(PermissionDenied):
        sign_in(request, customer, method="staff-sso", flow="staff-login")


def test_registration_refuses_a_staff_address_as_username(client: Client, org):
    response = steps.register(client, org, username="new.hire@staff.example.org")
    assert response.status_code == 200
    assert "staff email address" in response.content.decode()
    assert not User.objects.filter(username__iexact="new.hire@staff.example.org").exists()


LOOKALIKES = [
    "a@ｓｔａｆｆ.example.org",  # full-width letters
    "a@staﬀ.example.org",  # the ff ligature
    "a@ｓｔａｆｆ.example.org.",  # full-width, and a trailing dot
    "a@staff.example.org\u200b",  # a trailing zero-width space
    "a@st\u00adaff.example.org",  # a soft hyphen
    "a@STAFF.EXAMPLE.ORG.",
    "a@staff。example。org",  # ideographic full stops (Django refuses it as invalid anyway)
]


@pytest.mark.parametrize("address", LOOKALIKES)
def test_spellings_that_mail_delivers_to_the_staff_domain_are_the_staff_domain(address):
    assert is_internal_address(address)


@pytest.mark.parametrize("address", LOOKALIKES[:2])
def test_registration_refuses_lookalike_staff_addresses(client: Client, org, address):
    response = steps.register(client, org, email=address, confirm_email=address)
    assert "staff email address" in response.content.decode().replace("&#x27;", "'")
    assert not OutboxMessage.objects.exists()


def claims(**changes):
    base = {
        "iss": ISSUER,
        "sub": "stella",
        "email": "stella@staff.example.org",
        "groups": ["cg-support"],
        "amr": ["pwd", "mfa"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def reason(**changes) -> str:
    with pytest.raises(StaffRefused) as refused:
        staff_account(claims(**changes))
    return refused.value.reason


@pytest.mark.django_db
def test_a_subject_differing_by_spaces_or_cut_short_is_not_the_same_person():
    stella, _ = staff_account(claims())
    # Another subject is another person: its own account, never stella's row.
    other, _ = staff_account(claims(sub=" stella", email="mallory@staff.example.org"))
    assert other.pk != stella.pk and other.oidc_subject == " stella"
    assert reason(sub="s" * 256) == "no-subject"
    assert reason(sub=12345) == "no-subject"
    stella.refresh_from_db()
    assert stella.email == "stella@staff.example.org"


@pytest.mark.django_db
def test_an_address_the_provider_has_not_verified_is_refused():
    assert reason(email_verified=False) == "email-unverified"
    assert staff_account(claims(email_verified=True))[0].pk


@pytest.mark.django_db
@pytest.mark.parametrize(
    "email",
    ["trail.dot@staff.example.org.", "x@example.com@staff.example.org", "a b@staff.example.org"],
)
def test_malformed_staff_addresses_are_refused(email):
    assert reason(email=email) == "no-email"
