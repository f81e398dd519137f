"""NPI check digits and the management commands create_organization, create_user, load_demo."""

from __future__ import annotations

import random
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from caregate.accounts.management.commands.load_demo import DEMO_NPI, DEMO_PASSWORD
from caregate.accounts.models import Organization, TermsVersion, User
from caregate.accounts.npi import is_valid_npi, npi_check_digit
from caregate.portal.models import Case, Message
from tests.conftest import PASSWORD

# --- NPI --------------------------------------------------------------------------------


def cms_check_digit(first_nine: str) -> str:
    """The check digit as CMS describes it: double alternate digits from the right, add the
    digits, add 24 (for the 80840 prefix), subtract from the next multiple of ten."""
    total = 24
    for position, char in enumerate(reversed(first_nine)):
        value = int(char) * (2 if position % 2 == 0 else 1)
        total += value // 10 + value % 10
    return str((10 - total % 10) % 10)


@pytest.mark.parametrize("npi", ["1234567893", "1245319599", "1003000126"])
def test_known_valid_npis(npi):
    assert cms_check_digit(npi[:9]) == npi[9]
    assert is_valid_npi(npi)


def test_only_the_right_check_digit_passes():
    for digit in "0123456789":
        assert is_valid_npi("123456789" + digit) == (digit == "3")


def test_check_digit_matches_the_cms_method_for_many_bases():
    rng = random.Random(20260101)
    for _ in range(500):
        base = str(rng.choice("12")) + "".join(rng.choice("0123456789") for _ in range(8))
        digit = cms_check_digit(base)
        assert npi_check_digit(base) == digit
        assert is_valid_npi(base + digit)
        assert not is_valid_npi(base + str((int(digit) + 1) % 10))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "123456789",  # 9 digits
        "12345678930",  # 11 digits
        "123456789 ",
        " 1234567893",
        "12345678a3",
        "ABCDEFGHIJ",
        "1234-56789",
        "１２３４５６７８９３",  # fullwidth digits
        "١٢٣٤٥٦٧٨٩٣",  # Arabic-Indic digits
        "123456789³",  # a superscript digit
        "-123456789",
    ],
)
def test_malformed_npis_are_invalid(value):
    assert not is_valid_npi(value)


def test_check_digit_needs_nine_digits():
    with pytest.raises(ValueError):
        npi_check_digit("12345678")
    with pytest.raises(ValueError):
        npi_check_digit("12345678x")


# --- create_organization ----------------------------------------------------------------


def create_org(**options) -> str:
    out = StringIO()
    call_command("create_organization", stdout=out, **options)
    return out.getvalue()


@pytest.mark.django_db
def test_create_organization():
    out = create_org(name="Lakeside Clinic", npi="1234567893", registration_code="REG-42")
    org = Organization.objects.get(npi="1234567893")
    assert org.name == "Lakeside Clinic"
    assert "Lakeside Clinic" in out
    # The registration code is kept only as a password hash.
    assert "REG-42" not in org.registration_code_hash
    assert org.registration_code_hash.startswith("argon2$argon2id$")
    assert org.check_registration_code("REG-42")
    assert not org.check_registration_code("REG-43")


@pytest.mark.django_db
@pytest.mark.parametrize("npi", ["1234567890", "123456789", "12345678931", "12345678a3"])
def test_create_organization_refuses_an_invalid_npi(npi):
    with pytest.raises(CommandError, match="not a valid NPI"):
        create_org(name="Bad", npi=npi, registration_code="X")
    assert not Organization.objects.exists()


@pytest.mark.django_db
def test_create_organization_refuses_a_duplicate_npi():
    create_org(name="First", npi="1234567893", registration_code="X")
    with pytest.raises(CommandError, match="already exists"):
        create_org(name="Second", npi="1234567893", registration_code="Y")
    assert Organization.objects.count() == 1


@pytest.mark.django_db
def test_create_organization_with_payer_id_only():
    create_org(name="No NPI Home Care", payer_id="BCBS-77120")
    org = Organization.objects.with_payer_id("BCBS-77120").get()
    assert org.npi is None
    assert org.has_payer_id("BCBS-77120") and not org.has_payer_id("BCBS-77121")
    # Without an NPI the payer ID is also the registration code.
    assert org.check_registration_code("BCBS-77120")
    with pytest.raises(CommandError, match="already exists"):
        create_org(name="Again", payer_id="BCBS-77120")


@pytest.mark.django_db
def test_create_organization_needs_an_identifier_and_a_code():
    with pytest.raises(CommandError):
        create_org(name="Nothing")
    with pytest.raises(CommandError, match="registration-code"):
        create_org(name="No code", npi="1234567893")
    with pytest.raises(CommandError, match="name"):
        create_org(name="   ", npi="1234567893", registration_code="X")
    assert not Organization.objects.exists()


# --- create_user ------------------------------------------------------------------------


def create_user(*args: str, org_npi: str, **extra: str) -> str:
    argv = [
        "--username",
        extra.get("username", "pat"),
        "--email",
        extra.get("email", "pat@example.com"),
        "--password",
        extra.get("password", PASSWORD),
        "--organization",
        org_npi,
        *args,
    ]
    out = StringIO()
    call_command("create_user", *argv, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_create_user_with_phone_mfa(org):
    create_user("--mfa", "phone:+12025550143", org_npi=org.npi)
    user = User.objects.get(username="pat")
    assert user.mfa_method == "phone"
    assert user.phone_number == "+12025550143"
    assert user.mfa_registered_at is not None
    assert user.organization == org
    assert not user.is_org_admin
    assert user.check_password(PASSWORD)


@pytest.mark.django_db
def test_create_user_phone_is_normalized_to_e164(org):
    create_user("--mfa", "phone:(202) 555-0143", org_npi=org.npi)
    assert User.objects.get().phone_number == "+12025550143"


@pytest.mark.django_db
def test_create_user_with_email_mfa_is_the_default(org):
    create_user(org_npi=org.npi)
    user = User.objects.get()
    assert user.mfa_method == "email" and user.phone_number == ""
    assert user.mfa_registered_at is not None


@pytest.mark.django_db
def test_create_user_with_no_mfa(org):
    create_user("--mfa", "none", org_npi=org.npi)
    user = User.objects.get()
    assert user.mfa_method == "none" and user.mfa_registered_at is None


@pytest.mark.django_db
def test_create_user_admin(org):
    create_user("--admin", org_npi=org.npi)
    assert User.objects.get().is_org_admin


@pytest.mark.django_db
def test_create_user_by_payer_id(make_org):
    org = make_org(payer_id="PAYER-1", without_npi=True)
    create_user(org_npi="PAYER-1")
    assert User.objects.get().organization == org


@pytest.mark.django_db
@pytest.mark.parametrize(
    "mfa",
    [
        "phone:+1555",
        "phone:abc",
        "phone:",
        "phone:+1 202 555 0143 ext. 12",
        "phone:+12025550143x12",
        "sms",
        "EMAIL",
        "",
    ],
)
def test_create_user_refuses_a_bad_mfa(org, mfa):
    with pytest.raises(CommandError, match="--mfa"):
        create_user("--mfa", mfa, org_npi=org.npi)
    assert not User.objects.exists()


@pytest.mark.django_db
def test_create_user_refuses_an_unknown_organization(org):
    with pytest.raises(CommandError, match="no organization"):
        create_user(org_npi="1234567893")
    assert not User.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("password", ["password", "short-1", "123456789012", "patpatpatpat"])
def test_create_user_refuses_a_weak_password(org, password):
    with pytest.raises(CommandError, match="password rejected"):
        create_user(org_npi=org.npi, password=password, username="patpatpatpat")
    assert not User.objects.exists()


@pytest.mark.django_db
def test_create_user_refuses_a_bad_email(org):
    with pytest.raises(CommandError, match="not a valid email"):
        create_user(org_npi=org.npi, email="not-an-email")


@pytest.mark.django_db
def test_create_user_refuses_a_duplicate_email_in_any_case(org):
    create_user(org_npi=org.npi, username="first", email="Pat.Doe@Example.com")
    assert User.objects.get().email == "pat.doe@example.com"
    with pytest.raises(CommandError, match="already used"):
        create_user(org_npi=org.npi, username="second", email="PAT.DOE@example.COM")
    assert User.objects.count() == 1


@pytest.mark.django_db
def test_create_user_refuses_a_duplicate_username(org):
    create_user(org_npi=org.npi, username="pat", email="one@example.com")
    with pytest.raises(CommandError, match="taken"):
        create_user(org_npi=org.npi, username="pat", email="two@example.com")


@pytest.mark.django_db
def test_create_user_refuses_a_username_differing_only_in_case(org):
    """Registration and import_users treat usernames case-insensitively; so must this.

    Otherwise "Pat" and "pat" coexist, and the registration reset (which looks usernames
    up case-insensitively) picks one of the two accounts at random.
    """
    create_user(org_npi=org.npi, username="pat", email="one@example.com")
    with pytest.raises(CommandError, match="taken"):
        create_user(org_npi=org.npi, username="Pat", email="two@example.com")
    assert User.objects.count() == 1


# --- load_demo --------------------------------------------------------------------------


def snapshot() -> dict:
    return {
        "orgs": list(Organization.objects.values_list("pk", "npi", "registration_code_hash")),
        "users": list(User.objects.order_by("pk").values_list("pk", "username", "password")),
        "cases": list(Case.objects.order_by("pk").values_list("pk", "case_number", "status")),
        "messages": list(Message.objects.values_list("pk", "subject")),
        "terms": list(TermsVersion.objects.values_list("pk", "version")),
    }


@pytest.mark.django_db
def test_load_demo_is_idempotent():
    call_command("load_demo", stdout=StringIO())
    first = snapshot()
    assert len(first["orgs"]) == 1 and first["orgs"][0][1] == DEMO_NPI
    assert {u[1] for u in first["users"]} == {
        "emailuser",
        "phoneuser",
        "newuser",
        "provideradmin",
    }
    assert len(first["cases"]) == 3 and len(first["messages"]) == 1
    assert len(first["terms"]) == 1
    call_command("load_demo", stdout=StringIO())
    assert snapshot() == first


@pytest.mark.django_db
def test_load_demo_users_work():
    call_command("load_demo", stdout=StringIO())
    users = {u.username: u for u in User.objects.all()}
    assert users["emailuser"].mfa_method == "email"
    assert users["phoneuser"].mfa_method == "phone"
    assert users["phoneuser"].phone_number == "+12025550143"
    assert users["newuser"].mfa_method == "none"
    assert users["provideradmin"].is_org_admin
    assert users["emailuser"].check_password(DEMO_PASSWORD)
    assert Organization.objects.get().check_registration_code("DEMO-REG-2026")


@pytest.mark.django_db
def test_load_demo_fills_in_what_is_missing():
    call_command("load_demo", stdout=StringIO())
    User.objects.filter(username="newuser").delete()
    call_command("load_demo", stdout=StringIO())
    assert User.objects.filter(username="newuser").count() == 1
    assert User.objects.count() == 4
