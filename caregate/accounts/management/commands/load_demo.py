"""manage.py load_demo: the demo organization, users and cases that `make run` shows.

Idempotent: running it again changes nothing. The accounts are listed in the README.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.utils import timezone

from caregate.accounts.models import Organization, TermsVersion, User
from caregate.portal.models import Case, Message
from caregate.security.checks import refuse_in_production

DEMO_NPI = "1234567893"
DEMO_CODE = "DEMO-REG-2026"
DEMO_PASSWORD = "Caregate-demo-2026!"  # noqa: S105 - public demo account, listed in the README
DEMO_TERMS = """These demo Terms of Use stand in for the operator's own text.

1. You will use the portal only for the work of your organization.
2. You will keep your password and verification codes to yourself.
3. Protected health information you see here is confidential (HIPAA).
4. Activity in the portal is logged and may be reviewed.
"""
DEMO_USERS = [
    ("emailuser", "email.user@example.com", "Erin", "Email", "email", False),
    ("phoneuser", "phone.user@example.com", "Paul", "Phone", "phone:+12025550143", False),
    ("newuser", "new.user@example.com", "Nora", "Pending", "none", False),
    ("provideradmin", "admin@example.com", "Ada", "Admin", "email", True),
]


class Command(BaseCommand):
    help = "Load the demo organization, users and cases (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        # Demo accounts share one published password and registration code.
        refuse_in_production("load_demo")
        if not Organization.objects.filter(npi=DEMO_NPI).exists():
            call_command(
                "create_organization",
                name="Riverside Family Clinic",
                npi=DEMO_NPI,
                registration_code=DEMO_CODE,
                stdout=self.stdout,
            )
        organization = Organization.objects.get(npi=DEMO_NPI)
        for username, email, first, last, mfa, admin in DEMO_USERS:
            if User.objects.filter(username=username).exists():
                continue
            extra = ["--admin"] if admin else []
            call_command(
                "create_user",
                "--username", username, "--email", email, "--password", DEMO_PASSWORD,
                "--organization", DEMO_NPI, "--first-name", first, "--last-name", last,
                "--mfa", mfa, *extra,
                stdout=self.stdout,
            )  # fmt: skip
        self._cases(organization)
        self._terms()
        self.stdout.write(self.style.SUCCESS("Demo data ready."))

    def _terms(self) -> None:
        TermsVersion.objects.get_or_create(
            version="2026-01",
            defaults={
                "text": DEMO_TERMS,
                "published_at": timezone.now(),
            },
        )

    def _cases(self, organization: Organization) -> None:
        if organization.cases.exists():
            return
        rows = [
            ("C-100201", "P-5501", "wip", "Outpatient Therapy", "MC-88231", "Jordan Lee"),
            ("C-100202", "P-5502", "not_submitted", "Home Health", "MC-88232", "Sam Rivera"),
            ("C-100203", "P-5503", "submitted", "Inpatient Review", "MC-88233", "Alex Kim"),
        ]
        for number, program, status, case_type, consumer_id, consumer in rows:
            Case.objects.create(
                organization=organization,
                case_number=number,
                program_number=program,
                contract=organization.name,
                case_type=case_type,
                consumer_id=consumer_id,
                consumer_name=consumer,
                consumer_dob=date(1980, 5, 17),
                status=status,
            )
        Message.objects.create(
            organization=organization,
            subject="Welcome to the provider portal",
            body="Multi-factor authentication now protects every sign-in.",
        )
