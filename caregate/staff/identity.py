"""A staff member's Caregate account, created or updated from a verified ID token.

The account is found by the token's issuer and subject only, never by email: matching an
email would let whoever controls an address at the provider take over the portal account
that happens to have it. Names, address and roles are refreshed at every sign-in, so a
staff member moved out of the support group loses the console at their next sign-in, and
one whose groups no longer map to any Caregate role is refused (and signed out
everywhere).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.functions import Lower

from caregate.accounts.addresses import validate_address
from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.factors import policy
from caregate.security import sessions
from caregate.staff.domain import internal_domain, is_internal_address
from caregate.staff.roles import roles_for


class StaffRefused(Exception):
    """The token is valid, but Caregate does not sign this person in as staff."""

    def __init__(self, reason: str, user: User | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.user = user


@dataclass(frozen=True)
class StaffClaims:
    """What Caregate reads from a verified ID token."""

    issuer: str
    subject: str
    email: str
    first_name: str
    last_name: str
    groups: tuple[str, ...]
    amr: tuple[str, ...]
    acr: str
    email_unverified: bool = False


def _strings(value: Any) -> tuple[str, ...]:
    """A claim that should be a list of strings; a space-separated string is accepted."""
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, list | tuple):
        return tuple(item for item in value if isinstance(item, str))
    return ()


def _text(value: Any, limit: int) -> str:
    return value.strip()[:limit] if isinstance(value, str) else ""


def _subject(value: Any) -> str:
    """The subject exactly as sent: never trimmed or cut, so two subjects that differ
    only by spaces or past 255 characters cannot share an account; else refused."""
    return value if isinstance(value, str) and 0 < len(value) <= 255 else ""


def _address(value: Any) -> str:
    """A staff address, only if it is a valid address (no trailing dot, no second @)."""
    candidate = value.strip().lower() if isinstance(value, str) else ""
    try:
        validate_address(candidate)
    except ValidationError:
        return ""
    return candidate


def read_claims(claims: dict[str, Any]) -> StaffClaims:
    # An address the provider says it has NOT verified is no address: the staff-domain
    # check must not rest on what a user typed into their profile.
    email = "" if claims.get("email_verified") is False else _address(claims.get("email"))
    if not email and "email" not in claims:
        # Entra ID: the UPN is the staff address when no email claim is sent.
        email = _address(claims.get("preferred_username"))
    return StaffClaims(
        issuer=claims["iss"],
        subject=_subject(claims.get("sub")),
        email=email,
        first_name=_text(claims.get("given_name"), 150),
        last_name=_text(claims.get("family_name"), 150),
        groups=_strings(claims.get(settings.CAREGATE_OIDC_ROLES_CLAIM)),
        amr=_strings(claims.get("amr")),
        acr=_text(claims.get("acr"), 255),
        email_unverified=claims.get("email_verified") is False,
    )


def _listed(setting: str) -> set[str]:
    return {item.strip() for item in setting.split(",") if item.strip()}


def shows_mfa(amr: Iterable[str], acr: str) -> bool:
    """Whether the provider says it used a second factor (RFC 8176 ``amr``, or an
    ``acr`` the operator lists)."""
    return bool(_listed(settings.CAREGATE_OIDC_MFA_AMR) & set(amr)) or (
        bool(acr) and acr in _listed(settings.CAREGATE_OIDC_MFA_ACR)
    )


def _check(found: StaffClaims) -> None:
    if not found.subject:
        raise StaffRefused("no-subject")
    if settings.CAREGATE_OIDC_REQUIRE_MFA and not shows_mfa(found.amr, found.acr):
        raise StaffRefused("no-mfa")
    if not policy.staff_amr_allowed(found.amr):
        # The factor policy ("aal2", or CAREGATE_STAFF_REQUIRED_AMR) asks for a method the
        # provider did not report using (a phishing-resistant one under aal2): its own
        # page says so, not the no-MFA one, since a second factor may well have been used.
        record("factor-policy.staff", "refused", subject=found.subject, amr=list(found.amr))
        raise StaffRefused("weak-mfa")
    if found.email_unverified:
        raise StaffRefused("email-unverified")
    if not found.email:
        raise StaffRefused("no-email")
    if internal_domain() and not is_internal_address(found.email):
        # A guest or external account at the provider: not the operator's staff.
        raise StaffRefused("outside-domain")


def _someone_else_has(found: StaffClaims, own_pk: int | None) -> bool:
    """Whether another account holds this address (or it as a username)."""
    clash = User.objects.alias(e=Lower("email"), u=Lower("username")).filter(
        Q(e=found.email) | Q(u=found.email)
    )
    if own_pk is not None:
        clash = clash.exclude(pk=own_pk)
    return clash.exists()


def _apply(user: User, found: StaffClaims, roles: list[str]) -> None:
    user.email = found.email
    user.username = found.email
    user.first_name = found.first_name
    user.last_name = found.last_name
    user.staff_roles = roles


def staff_account(claims: dict[str, Any]) -> tuple[User, StaffClaims]:
    """The active staff account for these verified claims, created or updated."""
    found = read_claims(claims)
    _check(found)
    roles = roles_for(found.groups)
    try:
        with transaction.atomic():
            user = (
                User.objects.select_for_update()
                .filter(oidc_issuer=found.issuer, oidc_subject=found.subject)
                .first()
            )
            if user is None and not roles:
                raise StaffRefused("no-role")
            if _someone_else_has(found, user.pk if user is not None else None):
                raise StaffRefused("email-in-use", user)
            if user is None:
                user = User(oidc_issuer=found.issuer, oidc_subject=found.subject)
                user.set_unusable_password()
            elif not user.is_active:
                raise StaffRefused("disabled", user)
            _apply(user, found, roles)
            user.save()
    except IntegrityError as error:
        # Two first sign-ins of one person at once: the other created the account.
        raise StaffRefused("try-again") from error
    if not roles:
        # The provider no longer gives this person a Caregate role: end what they have.
        sessions.end_sessions(user)
        raise StaffRefused("no-role", user)
    return user, found
