"""manage.py import_users FILE.csv: existing portal users who still do "MFA registration only".

Columns: username, email, first_name, last_name, organization_npi, is_admin, and either
password (plain, hashed here) or password_hash: Argon2 (kept as it is) or a legacy format
that has a wrapping hasher (pbkdf2_sha256), stored as Argon2id over the legacy hash and
upgraded to plain Argon2id at the user's first sign-in; other formats are rejected. Every
row is checked first; a file with any bad row changes nothing, and the command lists each
rejected row and why.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.contrib.auth.hashers import Argon2PasswordHasher, identify_hasher, make_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from caregate.accounts.addresses import validate_address
from caregate.accounts.hashers import wrapper_for, wrappers
from caregate.accounts.models import (
    CaregateUserManager,
    Organization,
    User,
    describe_identifier,
)

REQUIRED = ["username", "email", "first_name", "last_name", "organization_npi"]
# The model's column sizes: a longer value is rejected, never silently cut.
MAX_LENGTH = {"username": 150, "first_name": 150, "last_name": 150, "email": 254}
TRUE = {"1", "true", "yes", "y"}
FALSE = {"", "0", "false", "no", "n"}


def supported_formats() -> list[str]:
    """The password_hash formats accepted: Argon2 as it is, legacy ones that get wrapped."""
    return ["argon2", *(w.legacy_hasher.algorithm for w in wrappers())]


@dataclass
class Row:
    line: int
    values: dict[str, str]


class Command(BaseCommand):
    help = "Import existing portal users (they then complete MFA registration only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", type=Path)

    def handle(self, *args: Any, **options: Any) -> None:
        rows = self._read(options["file"])
        users, errors = self._validate(rows)
        if errors:
            for line, reason in errors:
                self.stderr.write(f"line {line}: {reason}")
            raise CommandError(f"{len(errors)} row(s) rejected; nothing was imported.")
        with transaction.atomic():
            User.objects.bulk_create(users)
        for wrapper in wrappers():
            # After the commit: failed sign-ins pay the new legacy work at once, and a
            # figure a request was reading meanwhile cannot overwrite this one.
            wrapper.refresh_legacy_work()
        self.stdout.write(self.style.SUCCESS(f"Imported {len(users)} user(s)."))

    def _read(self, path: Path) -> list[Row]:
        try:
            with path.open(newline="", encoding="utf-8-sig") as handle:
                reader = csv.DictReader(handle)
                missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
                if missing:
                    raise CommandError(f"missing column(s): {', '.join(missing)}")
                return [
                    Row(index, {k: (v or "").strip() for k, v in record.items() if k})
                    for index, record in enumerate(reader, start=2)
                ]
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise CommandError(f"cannot read {path}: {exc}") from exc

    def _validate(self, rows: list[Row]) -> tuple[list[User], list[tuple[int, str]]]:
        organizations = {org.npi: org for org in Organization.objects.exclude(npi=None)}
        seen_usernames: set[str] = set()
        seen_emails: set[str] = set()
        users: list[User] = []
        errors: list[tuple[int, str]] = []
        for row in rows:
            try:
                user = self._user(row.values, organizations)
                self._unique(user, seen_usernames, seen_emails)
            except ValueError as exc:
                errors.append((row.line, str(exc)))
                continue
            users.append(user)
        return users, errors

    def _user(self, values: dict[str, str], organizations: dict[str, Organization]) -> User:
        for column in REQUIRED:
            if not values.get(column):
                raise ValueError(f"{column} is empty")
        for column, value in values.items():
            if "\x00" in value:
                raise ValueError(f"{column} contains a NUL character")
        for column, limit in MAX_LENGTH.items():
            if len(values[column]) > limit:
                raise ValueError(f"{column} is longer than {limit} characters")
        email = CaregateUserManager.normalize_email(values["email"])
        try:
            validate_address(email)
        except ValidationError as exc:
            raise ValueError(f"email {values['email']!r} is not valid") from exc
        organization = self._organization(values["organization_npi"], organizations)
        admin = values.get("is_admin", "").lower()
        if admin not in TRUE | FALSE:
            raise ValueError(f"is_admin must be true or false, not {values['is_admin']!r}")
        return User(
            username=values["username"],
            email=email,
            first_name=values["first_name"],
            last_name=values["last_name"],
            organization=organization,
            is_org_admin=admin in TRUE,
            mfa_method=User.MfaMethod.NONE,
            password=self._password(values),
        )

    def _organization(self, key: str, by_npi: dict[str, Organization]) -> Organization:
        """The organization by NPI (from the preloaded map), else by payer ID (its hash)."""
        organization = by_npi.get(key) or Organization.objects.with_payer_id(key).first()
        if organization is None:
            raise ValueError(f"no organization with {describe_identifier(key)}")
        return organization

    def _password(self, values: dict[str, str]) -> str:
        plain, hashed = values.get("password", ""), values.get("password_hash", "")
        if bool(plain) == bool(hashed):
            raise ValueError("give exactly one of password and password_hash")
        if plain:
            return make_password(plain)
        try:
            # decode() too: a known prefix on a malformed hash would break the sign-in.
            hasher = identify_hasher(hashed)
            hasher.decode(hashed)
        except (ValueError, TypeError, AssertionError, IndexError) as exc:
            raise ValueError("password_hash is not in a format Caregate can verify") from exc
        if isinstance(hasher, Argon2PasswordHasher):
            _check_argon2_parameters(hasher, hashed)
            return hashed  # already Argon2 at this deployment's costs
        wrapper = wrapper_for(hashed)
        if wrapper is None:
            raise ValueError(
                f"password_hash format {hasher.algorithm} is not supported "
                f"(supported: {', '.join(supported_formats())})"
            )
        try:
            wrapper.check_importable(hashed)
        except ValueError as exc:
            raise ValueError(f"password_hash is not supported: {exc}") from exc
        # Argon2id over the legacy digest: no account is cheaper to check than another.
        wrapped = wrapper.wrap(hashed)
        if len(wrapped) > User._meta.get_field("password").max_length:
            raise ValueError("password_hash is not supported: its salt is too long")
        return wrapped

    def _unique(self, user: User, usernames: set[str], emails: set[str]) -> None:
        name = user.username.lower()
        if name in usernames or User.objects.with_username(name).exists():
            raise ValueError(f"username {user.username!r} already exists")
        if user.email in emails or User.objects.with_email(user.email).exists():
            raise ValueError(f"email {user.email!r} already exists")
        usernames.add(name)
        emails.add(user.email)


def _check_argon2_parameters(hasher: Argon2PasswordHasher, hashed: str) -> None:
    """An Argon2 hash is kept as it is only at this deployment's own parameters: one with
    others would cost a different work at every check (telling an imported account, one
    without MFA yet, from the rest), and a large memory cost would be spent on every guess."""
    decoded = hasher.decode(hashed)
    own = (hasher.memory_cost, hasher.time_cost, hasher.parallelism)
    theirs = (decoded["memory_cost"], decoded["time_cost"], decoded["parallelism"])
    if decoded["variety"] != "argon2id" or theirs != own:
        raise ValueError(
            "password_hash is not supported: Argon2 hashes are kept only at this "
            f"deployment's parameters (argon2id, m={own[0]}, t={own[1]}, p={own[2]}; "
            f"this one: {decoded['variety']}, m={theirs[0]}, t={theirs[1]}, p={theirs[2]})"
        )
