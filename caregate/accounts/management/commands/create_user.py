"""manage.py create_user --username --email --password --organization NPI [--admin] [--mfa]."""

from __future__ import annotations

from typing import Any

import phonenumbers
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from caregate.accounts.addresses import validate_address
from caregate.accounts.models import Organization, User, describe_identifier


def parse_mfa(value: str) -> tuple[str, str]:
    """Return (method, E.164 phone) for 'phone:+1NNNNNNNNNN', 'email' or 'none'."""
    if value in {"email", "none"}:
        return value, ""
    if value.startswith("phone:"):
        raw = value.removeprefix("phone:")
        try:
            number = phonenumbers.parse(raw, "US")
        except phonenumbers.NumberParseException as exc:
            raise CommandError(f"--mfa phone number {raw!r} cannot be read") from exc
        if not phonenumbers.is_valid_number(number) or number.extension:
            raise CommandError(f"--mfa phone number {raw!r} is not a valid direct line")
        return "phone", phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    raise CommandError("--mfa must be phone:+1NNNNNNNNNN, email or none")


class Command(BaseCommand):
    help = "Create a portal user in an organization (for scripts and tests)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", required=True)
        parser.add_argument("--email", required=True)
        parser.add_argument("--password", required=True)
        parser.add_argument("--organization", required=True, help="the organization's NPI")
        parser.add_argument("--first-name", default="")
        parser.add_argument("--last-name", default="")
        parser.add_argument("--admin", action="store_true", help="a provider administrator")
        parser.add_argument("--mfa", default="email", help="phone:+1NNNNNNNNNN | email | none")

    def handle(self, *args: Any, **options: Any) -> None:
        method, phone = parse_mfa(options["mfa"])
        key = options["organization"].strip()
        organization = Organization.objects.with_npi_or_payer_id(key).first()
        if organization is None:
            raise CommandError(f"no organization with {describe_identifier(key)}")
        email = options["email"].strip().lower()
        try:
            validate_address(email)
        except ValidationError as exc:
            raise CommandError(f"{email!r} is not a valid email address") from exc
        if User.objects.with_username(options["username"]).exists():
            raise CommandError(f"username {options['username']!r} is taken")
        if User.objects.with_email(email).exists():
            raise CommandError(f"email {email!r} is already used")
        user = User(
            username=options["username"],
            email=email,
            first_name=options["first_name"],
            last_name=options["last_name"],
            organization=organization,
            is_org_admin=options["admin"],
            mfa_method=method,
            phone_number=phone,
            mfa_registered_at=None if method == "none" else timezone.now(),
        )
        try:
            validate_password(options["password"], user)
        except ValidationError as exc:
            raise CommandError("password rejected: " + " ".join(exc.messages)) from exc
        user.set_password(options["password"])
        user.save()
        self.stdout.write(f"Created user {user.username} ({email}, MFA: {method})")
