"""The factor policy for staff against the real test identity provider (tests/oidc): under
"aal2" the ID token's amr must show a phishing-resistant method (phr, phrh or hwk), else
the staff LOGIN's refusal page; the provider's accounts are those of
tests/test_staff_login.py, with the amr set per test."""

from __future__ import annotations

import pytest
from django.test import Client

from caregate.audit.models import AuditEvent
from tests.test_staff_login import ACCOUNTS, _configured, idp, signed_in_as, staff_sign_in

__all__ = ["_configured", "idp"]  # the provider and its settings, as test_staff_login runs them

pytestmark = pytest.mark.django_db


def _with_amr(provider, amr: list[str]) -> None:
    provider.set_accounts({**ACCOUNTS, "sam": {**ACCOUNTS["sam"], "amr": amr}})


def test_aal2_refuses_a_staff_token_without_a_phishing_resistant_amr(idp, settings) -> None:
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    response, _ = staff_sign_in(Client(), "sam")  # amr ["pwd", "mfa"]
    page = response.content.decode()
    assert response.status_code == 403 and "did not use a second factor this portal" in page
    assert "did not use multi-factor authentication" not in page  # a second factor was used
    (event,) = AuditEvent.objects.filter(event="factor-policy.staff", outcome="refused")
    assert event.detail["amr"] == ["pwd", "mfa"]
    assert AuditEvent.objects.filter(event="staff-login.account").last().outcome == "weak-mfa"


def test_aal2_lets_a_phishing_resistant_staff_sign_in_in(idp, settings) -> None:
    settings.CAREGATE_FACTOR_PROFILE = "aal2"
    _with_amr(idp, ["hwk", "mfa"])
    client = Client()
    response, _ = staff_sign_in(client, "sam")
    assert response.status_code == 302 and response.url == "/home/"
    assert signed_in_as(client).is_operator_staff


def test_the_standard_profile_asks_no_amr(idp) -> None:
    response, _ = staff_sign_in(Client(), "sam")
    assert response.status_code == 302
