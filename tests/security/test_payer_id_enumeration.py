"""Enumeration of payer IDs now that digits-only payer IDs are accepted (issue #8)."""

from __future__ import annotations

import pytest

from caregate.flows.stages.organization import NO_MATCH, no_match_message
from tests.registration_steps import specify_organization
from tests.test_registration import field_error, summary_error

pytestmark = pytest.mark.django_db


def test_a_digits_only_payer_id_that_exists_answers_like_one_that_does_not(client, make_org):
    make_org(without_npi=True, payer_id="5550001", code="5550001")
    existing = specify_organization(client, "5550001", "WRONG")
    missing = specify_organization(client, "5550002", "WRONG")
    assert summary_error(existing) == summary_error(missing) == NO_MATCH
    assert field_error(existing, "npi") == field_error(missing, "npi") == ""


def test_the_check_digit_hint_depends_only_on_the_typed_digits(client, make_org):
    """A 10-digit payer ID that fails the NPI check digit: the same words whether or not
    such a payer ID exists, so the hint cannot be used to find payer IDs."""
    make_org(without_npi=True, payer_id="1234567890", code="1234567890")
    existing = specify_organization(client, "1234567890", "WRONG")
    missing = specify_organization(client, "1234567891", "WRONG")
    assert summary_error(existing) == no_match_message("1234567890")
    assert summary_error(missing) == no_match_message("1234567891")
    assert summary_error(existing).replace("1234567890", "#") == summary_error(missing).replace(
        "1234567891", "#"
    )


def test_organization_name_is_shown_only_after_the_npi_and_code_match(client, make_org):
    organization = make_org(name="Hidden Name Clinic", code="RIGHT")
    response = specify_organization(client, organization.npi, "WRONG")
    assert "Hidden Name Clinic" not in response.content.decode()
    response = client.get("/register/user-info/", follow=True)
    assert "Hidden Name Clinic" not in response.content.decode()
