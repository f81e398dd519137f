"""Staff accounts from verified ID-token claims (caregate/staff/identity.py), role mapping
(caregate/staff/roles.py) and the reserved staff domain (caregate/staff/domain.py)."""

from __future__ import annotations

from typing import Any

import pytest

from caregate.accounts.models import SignedInSession, User
from caregate.staff.domain import is_internal_address
from caregate.staff.identity import StaffRefused, staff_account
from caregate.staff.roles import parse_role_map, roles_for

ISSUER = "https://idp.example.org"


@pytest.fixture(autouse=True)
def _staff_settings(settings) -> None:
    settings.CAREGATE_OIDC_ISSUER = ISSUER
    settings.CAREGATE_OIDC_ROLE_MAP = (
        "cg-support=support,cg-staff=staff,cg-both=staff,cg-both=support"
    )
    settings.CAREGATE_OIDC_ROLES_CLAIM = "groups"
    settings.CAREGATE_INTERNAL_EMAIL_DOMAIN = "staff.example.org"
    settings.CAREGATE_OIDC_REQUIRE_MFA = True
    settings.CAREGATE_OIDC_MFA_AMR = "mfa"
    settings.CAREGATE_OIDC_MFA_ACR = ""


def claims(**changes: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "sub": "sub-1",
        "email": "Jo.Smith@Staff.Example.org",
        "given_name": "Jo",
        "family_name": "Smith",
        "groups": ["cg-support", "unrelated"],
        "amr": ["pwd", "mfa"],
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def refusal(**changes: Any) -> str:
    with pytest.raises(StaffRefused) as refused:
        staff_account(claims(**changes))
    return refused.value.reason


def test_role_map_parsing() -> None:
    assert parse_role_map("a=support, b = staff,a=staff") == {
        "a": frozenset({"support", "staff"}),
        "b": frozenset({"staff"}),
    }
    for bad in ["a", "a=admin", "=support", "a=support,b"]:
        with pytest.raises(ValueError):
            parse_role_map(bad)


def test_roles_for_groups() -> None:
    assert roles_for(["cg-both"]) == ["staff", "support"]
    assert roles_for(["unrelated", "CG-SUPPORT"]) == []  # group names are exact


@pytest.mark.parametrize(
    ("value", "internal"),
    [
        ("a@staff.example.org", True),
        ("A@STAFF.EXAMPLE.ORG", True),
        (" a@eu.staff.example.org ", True),
        ("a@staff.example.org.", True),
        ("a@notstaff.example.org", False),
        ("a@staff.example.org.evil.com", False),
        ("staff.example.org", False),
        ("a@example.org", False),
    ],
)
def test_the_internal_domain_and_its_subdomains(value, internal) -> None:
    assert is_internal_address(value) is internal


@pytest.mark.django_db
def test_first_sign_in_creates_the_account_from_the_claims() -> None:
    user, found = staff_account(claims())
    assert user.username == user.email == "jo.smith@staff.example.org"
    assert (user.first_name, user.last_name) == ("Jo", "Smith")
    assert user.staff_roles == ["support"] and user.has_staff_role("support")
    assert user.organization is None and not user.has_usable_password()
    assert (user.oidc_issuer, user.oidc_subject) == (ISSUER, "sub-1")
    assert found.amr == ("pwd", "mfa")


@pytest.mark.django_db
def test_the_next_sign_in_updates_names_and_roles() -> None:
    first, _ = staff_account(claims())
    again, _ = staff_account(
        claims(email="jo.jones@staff.example.org", family_name="Jones", groups=["cg-staff"])
    )
    assert again.pk == first.pk
    assert (again.email, again.last_name, again.staff_roles) == (
        "jo.jones@staff.example.org",
        "Jones",
        ["staff"],
    )
    assert not again.has_staff_role("support")


@pytest.mark.django_db
def test_no_mapped_role_is_refused_and_ends_the_sessions_of_an_existing_account() -> None:
    assert refusal(groups=["unrelated"]) == "no-role"
    assert not User.objects.exists()  # nobody is created without a role
    user, _ = staff_account(claims())
    SignedInSession.objects.create(user=user, session_key="k" * 32, method="staff-sso")
    assert refusal(groups=[]) == "no-role"
    user.refresh_from_db()
    assert user.staff_roles == [] and not SignedInSession.objects.filter(user=user).exists()


@pytest.mark.django_db
def test_mfa_is_required_from_the_provider(settings) -> None:
    assert refusal(amr=["pwd"]) == "no-mfa"
    assert refusal(amr=None) == "no-mfa"
    assert refusal(amr="pwd mfa-ish") == "no-mfa"
    settings.CAREGATE_OIDC_MFA_ACR = "urn:example:mfa"
    assert staff_account(claims(amr=["pwd"], acr="urn:example:mfa"))[0].pk
    settings.CAREGATE_OIDC_REQUIRE_MFA = False
    assert staff_account(claims(sub="sub-2", email="b@staff.example.org", amr=None))[0].pk


@pytest.mark.django_db
def test_an_address_outside_the_staff_domain_is_refused() -> None:
    # A guest account at the provider is not the operator's staff, whatever its groups.
    assert refusal(email="guest@partner.example.com") == "outside-domain"
    assert refusal(email=None, preferred_username="not-an-address") == "no-email"


@pytest.mark.django_db
def test_the_upn_stands_in_for_a_missing_email() -> None:
    user, _ = staff_account(claims(email=None, preferred_username="Jo@staff.example.org"))
    assert user.email == "jo@staff.example.org"


@pytest.mark.django_db
def test_an_account_is_never_matched_by_email(make_user) -> None:
    # A customer account that somehow holds a staff address is not taken over.
    customer = make_user(email="jo.smith@staff.example.org")
    assert refusal() == "email-in-use"
    customer.refresh_from_db()
    assert customer.oidc_subject == "" and customer.staff_roles == []
    # Another subject with the same address is another person: refused too.
    customer.delete()
    staff_account(claims())
    assert refusal(sub="sub-other") == "email-in-use"


@pytest.mark.django_db
def test_a_disabled_staff_account_stays_disabled() -> None:
    user, _ = staff_account(claims())
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert refusal() == "disabled"


@pytest.mark.django_db
def test_a_missing_subject_is_refused() -> None:
    assert refusal(sub="") == "no-subject"


@pytest.mark.django_db
def test_my_account_of_a_staff_member_points_to_the_provider(client, make_staff) -> None:
    from tests.conftest import sign_in_as

    staff = make_staff(roles=("staff",))
    sign_in_as(client, staff)
    SignedInSession.objects.create(
        user=staff, session_key=client.session.session_key, method="staff-sso"
    )
    page = client.get("/setup/my-account/").content.decode()
    assert "managed by Caregate" in page and "Change email address" not in page
    assert "LOGIN (Caregate staff)" in page
    response = client.post("/setup/my-account/change/email/")
    assert response.status_code == 302 and response.url == "/setup/my-account/"
    assert client.get("/staff-login/identity-provider/").status_code == 302  # no flow
