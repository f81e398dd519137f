"""Caregate's staff roles, and the mapping from the identity provider's groups to them.

``CAREGATE_OIDC_ROLE_MAP`` names, for each group (or app role) the identity provider puts
in the roles claim, the Caregate role it grants: ``"caregate-support=support,
caregate-staff=staff"``. A staff member none of whose groups maps to a role is refused.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings

STAFF = "staff"  # signs in to the portal shell
SUPPORT = "support"  # also the support console: find any user, reset, deactivate
ROLES = {STAFF: "Staff", SUPPORT: "Support"}


def parse_role_map(text: str) -> dict[str, frozenset[str]]:
    """``"group=role,group2=role2"`` → {group: {roles}}; unknown roles are an error."""
    mapping: dict[str, set[str]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        group, sep, role = (piece.strip() for piece in item.partition("="))
        if not sep or not group or role not in ROLES:
            raise ValueError(
                f"CAREGATE_OIDC_ROLE_MAP entry {item!r}: expected group=role with role one "
                f"of {', '.join(sorted(ROLES))}"
            )
        mapping.setdefault(group, set()).add(role)
    return {group: frozenset(roles) for group, roles in mapping.items()}


def roles_for(groups: Iterable[str]) -> list[str]:
    """The Caregate roles the identity provider's groups grant, sorted; [] for none."""
    mapping = parse_role_map(settings.CAREGATE_OIDC_ROLE_MAP)
    granted: set[str] = set()
    for group in groups:
        granted |= mapping.get(group, frozenset())
    return sorted(granted)
