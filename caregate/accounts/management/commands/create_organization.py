"""manage.py create_organization --name --npi --registration-code [--payer-id]."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from caregate.accounts.models import Organization
from caregate.accounts.npi import is_valid_npi


class Command(BaseCommand):
    help = "Create a provider organization identified by its NPI (or a payer-issued ID)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--npi", help="10-digit National Provider Identifier")
        parser.add_argument("--registration-code", help="the provider registration code")
        parser.add_argument(
            "--payer-id",
            help="payer-issued provider ID; without --npi it is also the registration code",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        name = options["name"].strip()
        npi = (options["npi"] or "").strip() or None
        payer_id = (options["payer_id"] or "").strip() or None
        code = options["registration_code"] or (payer_id if npi is None else None)
        if not name:
            raise CommandError("--name must not be empty")
        if npi is None and payer_id is None:
            raise CommandError("give --npi, or --payer-id for a provider without an NPI")
        if npi is not None and not is_valid_npi(npi):
            raise CommandError(f"{npi!r} is not a valid NPI (10 digits with its check digit)")
        if not code:
            raise CommandError("--registration-code is required with --npi")
        if npi and Organization.objects.filter(npi=npi).exists():
            raise CommandError(f"an organization with NPI {npi} already exists")
        if payer_id and Organization.objects.with_payer_id(payer_id).exists():
            raise CommandError("an organization with this payer ID already exists")
        organization = Organization(name=name, npi=npi)
        # Kept only as a keyed hash: without an NPI the payer ID is the registration code.
        organization.set_payer_id(payer_id)
        organization.set_registration_code(code)
        organization.save()
        self.stdout.write(f"Created organization {organization.pk}: {name} (NPI {npi or '—'})")
