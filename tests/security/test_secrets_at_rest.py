"""Secrets at rest: a payer ID (for a provider without an NPI, also its registration code)
is never stored or logged in clear.

The attacker reads the database (a backup, a replica, the audit table) without the secret
key, and wants a payer ID to register an account with.
"""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client, override_settings

from caregate.accounts.models import Organization, payer_id_hash
from caregate.audit.models import AuditEvent
from tests.registration_steps import specify_organization

PAYER_ID = "BCBS4471"


def stored_text() -> str:
    """Every column of every organization and audit event, as an attacker dumps them."""
    rows = [*Organization.objects.values(), *AuditEvent.objects.values()]
    return repr(rows).upper()


def registration_events() -> list[dict]:
    return list(
        AuditEvent.objects.filter(event="registration.organization").values_list(
            "detail", flat=True
        )
    )


@pytest.mark.django_db
def test_payer_id_is_in_no_organization_column():
    call_command("create_organization", name="Delta", payer_id=PAYER_ID, stdout=io.StringIO())
    organization = Organization.objects.get(name="Delta")
    assert PAYER_ID not in stored_text()
    assert organization.payer_id_hash == payer_id_hash(PAYER_ID)
    assert not hasattr(organization, "payer_id")


@pytest.mark.django_db
def test_registration_with_a_payer_id_logs_no_payer_id(make_org):
    make_org(without_npi=True, payer_id=PAYER_ID, code=PAYER_ID)
    failed = specify_organization(Client(), PAYER_ID, "BCBS4472")
    wrong_id = specify_organization(Client(), "BCBS4473", "BCBS4473")
    opened = specify_organization(Client(), PAYER_ID, PAYER_ID)
    assert failed.status_code == 200 and wrong_id.status_code == 200
    assert opened.status_code == 302 and opened.url == "/register/user-info/"
    assert registration_events() == [{"identifier": "payer-id"}] * 3
    for secret in [PAYER_ID, "BCBS4472", "BCBS4473"]:
        assert secret not in stored_text()


@pytest.mark.django_db
def test_a_valid_npi_is_still_logged(make_org):
    organization = make_org(code="REG-CODE-1")
    specify_organization(Client(), organization.npi, "REG-CODE-1")
    assert registration_events() == [{"npi": organization.npi}]


@pytest.mark.django_db
def test_lookup_by_hash_finds_the_organization_whatever_the_case(make_org):
    organization = make_org(without_npi=True, payer_id=PAYER_ID, code=PAYER_ID)
    assert Organization.objects.with_payer_id(PAYER_ID).get() == organization
    assert Organization.objects.with_payer_id(" bcbs4471 ").get() == organization
    assert Organization.objects.with_npi_or_payer_id(PAYER_ID).get() == organization


@pytest.mark.django_db
def test_a_wrong_payer_id_finds_nothing(make_org):
    organization = make_org(without_npi=True, payer_id=PAYER_ID, code=PAYER_ID)
    for guess in ["BCBS4470", "BCBS44711", "BCBS-4471", ""]:
        assert not Organization.objects.with_payer_id(guess).exists()
    # The stolen hash typed as the ID opens nothing either.
    assert not Organization.objects.with_payer_id(organization.payer_id_hash).exists()
    response = specify_organization(Client(), organization.payer_id_hash[:40], PAYER_ID)
    assert response.status_code == 200


@pytest.mark.django_db
def test_hash_cannot_be_recomputed_without_the_key(make_org):
    """Guessing short IDs against a stolen table needs the secret key."""
    organization = make_org(without_npi=True, payer_id=PAYER_ID, code=PAYER_ID)
    unkeyed = {hashlib.sha256(v.encode()).hexdigest() for v in [PAYER_ID, PAYER_ID.lower()]}
    assert organization.payer_id_hash not in unkeyed
    with override_settings(SECRET_KEY="attacker-guess-" + "q" * 40):
        assert payer_id_hash(PAYER_ID) != organization.payer_id_hash
        assert not Organization.objects.with_payer_id(PAYER_ID).exists()


@pytest.mark.django_db
def test_rotated_key_still_finds_organizations_created_before(make_org, settings):
    organization = make_org(without_npi=True, payer_id=PAYER_ID, code=PAYER_ID)
    old_key = settings.SECRET_KEY
    settings.SECRET_KEY = "the-new-key-" + "r" * 40
    settings.SECRET_KEY_FALLBACKS = [old_key]
    assert Organization.objects.with_payer_id(PAYER_ID).get() == organization


@pytest.mark.django_db
def test_duplicate_payer_id_is_refused_without_echoing_it():
    call_command("create_organization", name="One", payer_id=PAYER_ID, stdout=io.StringIO())
    with pytest.raises(CommandError, match="this payer ID already exists") as excinfo:
        call_command("create_organization", name="Two", payer_id="bcbs4471")
    assert PAYER_ID.lower() not in str(excinfo.value).lower()


@pytest.mark.django_db
def test_import_naming_an_unknown_payer_id_does_not_echo_it(tmp_path, org):
    path = tmp_path / "u.csv"
    path.write_text(
        "username,email,first_name,last_name,organization_npi,password\n"
        "ima,ima@clinic.example,Ima,Ported,BCBS9999,Plain-Password-1-xyz\n"
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="rejected"):
        call_command("import_users", str(path), stdout=io.StringIO(), stderr=err)
    assert "no organization with this payer ID" in err.getvalue()
    assert "BCBS9999" not in err.getvalue()


@pytest.mark.django_db(transaction=True)
def test_migration_replaces_clear_payer_ids_with_their_keyed_hash():
    before = [("accounts", "0003_username_unique_ci")]
    executor = MigrationExecutor(connection)
    after = executor.loader.graph.leaf_nodes("accounts")
    executor.migrate(before)
    old_apps = executor.loader.project_state(before).apps
    OldOrganization = old_apps.get_model("accounts", "Organization")
    OldOrganization.objects.create(
        name="Legacy", payer_id=" bcbs4471 ", registration_code_hash="x"
    )
    OldOrganization.objects.create(name="With NPI", npi="1234567893", registration_code_hash="x")
    MigrationExecutor(connection).migrate(after)
    legacy = Organization.objects.get(name="Legacy")
    assert legacy.payer_id_hash == payer_id_hash(PAYER_ID)
    assert Organization.objects.get(name="With NPI").payer_id_hash is None
    with connection.cursor() as cursor:
        columns = connection.introspection.get_table_description(cursor, "accounts_organization")
    assert "payer_id" not in {c.name for c in columns}
    assert PAYER_ID not in stored_text()


def test_a_digits_only_payer_id_is_not_repeated_as_an_npi() -> None:
    """A payer ID made only of digits is a secret too: messages name only valid NPIs."""
    from caregate.accounts.models import describe_identifier

    assert describe_identifier("1234567893") == "NPI 1234567893"  # a valid NPI is public
    for payer_id in ["4471", "1234567890", "00012345678"]:
        assert describe_identifier(payer_id) == "this payer ID"
