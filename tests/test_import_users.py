"""manage.py import_users (existing portal users, who then do "MFA registration only") and
manage.py create_organization for a provider without an NPI (the payer variant)."""

from __future__ import annotations

import csv
import importlib
import io
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from caregate.accounts.models import Organization, User
from tests.registration_steps import section1_login, specify_organization

pytestmark = pytest.mark.django_db
COLUMNS = [
    "username",
    "email",
    "first_name",
    "last_name",
    "organization_npi",
    "is_admin",
    "password",
    "password_hash",
]
LEGACY_PASSWORD = "Legacy-Pass-2019!"
LONG_EMAIL = "a" * 60 + "@" + ".".join(["b" * 60] * 4) + ".example"


def write_csv(path: Path, rows: list[dict[str, str]], columns: list[str] = COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow(row)
    return path


def row(org: Organization, n: int, **overrides: str) -> dict[str, str]:
    values = {
        "username": f"imported{n}",
        "email": f"imported{n}@clinic.example",
        "first_name": "Ima",
        "last_name": f"Ported{n}",
        "organization_npi": org.npi or "",
        "is_admin": "false",
        "password": f"Plain-Password-{n}-xyz",
        "password_hash": "",
    }
    values.update(overrides)
    return values


def run(path: Path) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("import_users", str(path), stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_rejected(path: Path) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as excinfo:
        call_command("import_users", str(path), stdout=out, stderr=err)
    return str(excinfo.value), err.getvalue()


# --- a valid file ---------------------------------------------------------------------


def test_valid_file_imports_plain_and_hashed_passwords(tmp_path: Path, org, make_org) -> None:
    payer_org = make_org(without_npi=True, payer_id="BCBS777", code="BCBS777")
    legacy_hash = make_password(LEGACY_PASSWORD, hasher="pbkdf2_sha256")
    path = write_csv(
        tmp_path / "users.csv",
        [
            row(org, 1, is_admin="yes", email="Imported1@Clinic.Example"),
            row(org, 2, password="", password_hash=legacy_hash),
            row(payer_org, 3, is_admin="", organization_npi="BCBS777"),
            row(org, 4, password="", password_hash=make_password("Argon-Already-1")),
        ],
    )
    out, err = run(path)
    assert "Imported 4 user(s)." in out
    assert err == ""
    first = User.objects.get(username="imported1")
    assert first.email == "imported1@clinic.example"
    assert first.is_org_admin is True
    assert first.organization == org
    assert first.mfa_method == User.MfaMethod.NONE
    assert first.password.startswith("argon2")
    assert authenticate(username="imported1", password="Plain-Password-1-xyz") == first
    assert authenticate(username="imported4", password="Argon-Already-1") is not None
    third = User.objects.get(username="imported3")
    assert third.organization == payer_org and third.is_org_admin is False


def test_django_pbkdf2_hash_signs_in_and_is_upgraded_to_argon2(tmp_path: Path, org) -> None:
    legacy_hash = make_password(LEGACY_PASSWORD, hasher="pbkdf2_sha256")
    write_csv(tmp_path / "u.csv", [row(org, 5, password="", password_hash=legacy_hash)])
    run(tmp_path / "u.csv")
    user = User.objects.get(username="imported5")
    # Stored as Argon2id over the legacy hash (Django's "upgrading without a login").
    wrapped = user.password
    assert wrapped.startswith("argon2_pbkdf2_sha256$argon2id$")
    assert legacy_hash.rsplit("$", 1)[1] not in wrapped
    assert authenticate(username="imported5", password="wrong-password") is None
    user.refresh_from_db()
    assert user.password == wrapped, "a wrong password must not re-hash"
    assert user.check_password(LEGACY_PASSWORD)
    user.refresh_from_db()
    assert user.password.startswith("argon2$argon2id$")
    assert authenticate(username="imported5", password=LEGACY_PASSWORD) == user


def test_argon2_hash_is_imported_as_it_is(tmp_path: Path, org) -> None:
    native = make_password("Argon-Already-2")
    write_csv(tmp_path / "u.csv", [row(org, 7, password="", password_hash=native)])
    run(tmp_path / "u.csv")
    assert User.objects.get(username="imported7").password == native


def test_migration_wraps_the_legacy_hashes_of_users_imported_before(make_user) -> None:
    from django.apps import apps

    legacy_hash = make_password(LEGACY_PASSWORD, hasher="pbkdf2_sha256")
    imported_before = make_user(username="before1")
    User.objects.filter(pk=imported_before.pk).update(password=legacy_hash)
    broken = make_user(username="broken1")
    User.objects.filter(pk=broken.pk).update(password="pbkdf2_sha256$nope")
    native = make_user(username="native1")
    migration = importlib.import_module(
        "caregate.accounts.migrations.0006_wrap_legacy_password_hashes"
    )
    migration.wrap_legacy_hashes(apps, None)
    imported_before.refresh_from_db()
    assert imported_before.password.startswith("argon2_pbkdf2_sha256$argon2id$")
    assert imported_before.check_password(LEGACY_PASSWORD)
    assert User.objects.get(pk=broken.pk).password == "pbkdf2_sha256$nope"
    assert User.objects.get(pk=native.pk).password == native.password


def test_imported_user_does_mfa_registration_only(tmp_path: Path, org) -> None:
    legacy_hash = make_password(LEGACY_PASSWORD, hasher="pbkdf2_sha256")
    write_csv(tmp_path / "u.csv", [row(org, 6, password="", password_hash=legacy_hash)])
    run(tmp_path / "u.csv")
    client = Client()
    response = section1_login(client, "imported6", LEGACY_PASSWORD)
    assert response.status_code == 302 and response.url == "/mfa-registration/method/"
    assert User.objects.get(username="imported6").password.startswith("argon2")


# --- rejected rows: nothing imported --------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"email": "not-an-email"}, "email 'not-an-email' is not valid"),
        ({"email": ""}, "email is empty"),
        ({"organization_npi": "1999999992"}, "no organization with NPI 1999999992"),
        # Not a valid NPI, so possibly a payer ID (a secret): not repeated.
        ({"organization_npi": "1999999999"}, "no organization with this payer ID"),
        ({"username": ""}, "username is empty"),
        ({"first_name": ""}, "first_name is empty"),
        ({"password": "x", "password_hash": "pbkdf2_sha256$1$s$h"}, "exactly one of password"),
        ({"password": "", "password_hash": ""}, "exactly one of password"),
        (
            {"password": "", "password_hash": "md5$salt$0123456789abcdef"},
            "not in a format Caregate can verify",
        ),
        (
            {"password": "", "password_hash": "not a hash at all"},
            "not in a format Caregate can verify",
        ),
        ({"password": "", "password_hash": "!unusable"}, "not in a format Caregate can verify"),
        (
            {"password": "", "password_hash": "pbkdf2_sha256$abc"},
            "not in a format Caregate can verify",
        ),
        (
            {"password": "", "password_hash": "argon2$argon2id$garbage"},
            "not in a format Caregate can verify",
        ),
        (
            {"password": "", "password_hash": make_password("x", hasher="pbkdf2_sha1")},
            "format pbkdf2_sha1 is not supported (supported: argon2, pbkdf2_sha256)",
        ),
        (
            {"password": "", "password_hash": "scrypt$16384$salt$8$1$aGFzaA=="},
            "format scrypt is not supported",
        ),
        (
            {"password": "", "password_hash": "pbkdf2_sha256$2000000$salt$aGFzaA=="},
            "not supported: more than 1,000,000 PBKDF2 iterations",
        ),
        (
            {"password": "", "password_hash": "pbkdf2_sha256$1000$" + "s" * 200 + "$aGFzaA=="},
            "its salt is too long",
        ),
        ({"is_admin": "maybe"}, "is_admin must be true or false"),
        ({"username": "u" * 151}, "username is longer than 150 characters"),
        ({"last_name": "L" * 151}, "last_name is longer than 150 characters"),
        ({"email": LONG_EMAIL}, "email is longer than 254 characters"),
        ({"first_name": "Ima\x00"}, "first_name contains a NUL character"),
    ],
)
def test_a_bad_row_is_listed_and_nothing_is_imported(
    tmp_path: Path, org, overrides: dict[str, str], reason: str
) -> None:
    path = write_csv(tmp_path / "u.csv", [row(org, 1), row(org, 2, **overrides), row(org, 3)])
    before = User.objects.count()
    message, err = run_rejected(path)
    assert "1 row(s) rejected; nothing was imported." in message
    assert err.startswith("line 3: "), err
    assert reason in err, err
    assert "line 2" not in err and "line 4" not in err
    assert User.objects.count() == before


def test_duplicate_username_in_the_file_is_rejected(tmp_path: Path, org) -> None:
    path = write_csv(
        tmp_path / "u.csv",
        [row(org, 1, username="Same.Name"), row(org, 2, username="same.name")],
    )
    _, err = run_rejected(path)
    assert "line 3: username 'same.name' already exists" in err
    assert not User.objects.exists()


def test_duplicate_username_or_email_in_the_database_is_rejected(
    tmp_path: Path, org, make_user
) -> None:
    make_user(username="Existing", email="existing@clinic.example")
    path = write_csv(
        tmp_path / "u.csv",
        [
            row(org, 1, username="existing"),
            row(org, 2, email="EXISTING@clinic.example"),
            row(org, 3, email="imported4@clinic.example"),
            row(org, 4),
        ],
    )
    message, err = run_rejected(path)
    assert "3 row(s) rejected" in message
    assert "line 2: username 'existing' already exists" in err
    assert "line 3: email 'existing@clinic.example' already exists" in err
    assert "line 5: email 'imported4@clinic.example' already exists" in err
    assert User.objects.count() == 1


def test_every_bad_row_is_listed(tmp_path: Path, org) -> None:
    path = write_csv(
        tmp_path / "u.csv",
        [
            row(org, 1, email="bad"),
            row(org, 2),
            row(org, 3, is_admin="2"),
            row(org, 4, organization_npi="nope"),
        ],
    )
    message, err = run_rejected(path)
    assert "3 row(s) rejected" in message
    lines = err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["line 2", "line 4", "line 5"]
    assert not User.objects.exists()


def test_missing_columns_are_named(tmp_path: Path, org) -> None:
    columns = ["username", "first_name", "last_name", "password"]
    path = write_csv(
        tmp_path / "u.csv",
        [{k: v for k, v in row(org, 1).items() if k in columns}],
        columns=columns,
    )
    message, _ = run_rejected(path)
    assert "missing column(s): email, organization_npi" in message
    assert not User.objects.exists()


def test_unreadable_files_are_refused(tmp_path: Path, db) -> None:
    message, _ = run_rejected(tmp_path / "absent.csv")
    assert "cannot read" in message
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(",".join(COLUMNS).encode() + b"\nj\xf6rg,a@b.example,J,K,1,,p,\n")
    message, _ = run_rejected(latin1)
    assert "cannot read" in message
    assert not User.objects.exists()


def test_nul_byte_in_a_row_is_refused_without_a_traceback(tmp_path: Path, org) -> None:
    path = write_csv(tmp_path / "u.csv", [row(org, 1, username="bad\x00name"), row(org, 2)])
    with pytest.raises(CommandError):
        run(path)
    assert not User.objects.exists()


# --- create_organization (payer variant) ----------------------------------------------


def test_create_organization_without_npi_uses_the_payer_id_as_code(db) -> None:
    out = io.StringIO()
    call_command(
        "create_organization", name="Delta Family Practice", payer_id="BCBS12345", stdout=out
    )
    organization = Organization.objects.get(name="Delta Family Practice")
    assert organization.npi is None
    assert organization.has_payer_id("BCBS12345")
    assert "BCBS12345" not in str(Organization.objects.values().get(pk=organization.pk))
    assert organization.check_registration_code("BCBS12345")
    assert not organization.check_registration_code("BCBS12346")
    assert "BCBS12345" not in organization.registration_code_hash
    # The provider types the ID in both fields.
    response = specify_organization(Client(), "BCBS12345", "BCBS12345")
    assert response.status_code == 302 and response.url == "/register/user-info/"


def test_create_organization_refuses_bad_input(db) -> None:
    with pytest.raises(CommandError, match="give --npi, or --payer-id"):
        call_command("create_organization", name="Nothing")
    with pytest.raises(CommandError, match="not a valid NPI"):
        call_command("create_organization", name="Bad", npi="1234567890", registration_code="c")
    with pytest.raises(CommandError, match="--registration-code is required"):
        call_command("create_organization", name="NoCode", npi="1234567893")
    call_command("create_organization", name="One", payer_id="BCBS1", stdout=io.StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_organization", name="Two", payer_id="BCBS1")
    assert Organization.objects.count() == 1


def test_create_organization_with_npi_and_code(db) -> None:
    call_command(
        "create_organization",
        name="With NPI",
        npi="1234567893",
        registration_code="CODE-9",
        stdout=io.StringIO(),
    )
    organization = Organization.objects.get(npi="1234567893")
    assert organization.check_registration_code("CODE-9")
    response = specify_organization(Client(), "1234567893", "CODE-9")
    assert response.url == "/register/user-info/"
