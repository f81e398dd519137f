"""Branding and navigation for every template."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, partial
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils.functional import SimpleLazyObject

from caregate.accounts.models import User
from caregate.portal.forms import CaseSearchForm
from caregate.staff.roles import SUPPORT


@dataclass(frozen=True)
class Module:
    """A menu item served by another application, at an address the operator configures."""

    label: str
    slug: str
    setting: str

    @property
    def address(self) -> str:
        return getattr(settings, self.setting) or ""


# The guide's menu: HOME, CASES, CREATE CASE, CONSUMERS, SETUP, MESSAGE CENTER, REPORTS, Help.
EXTERNAL_MODULES = {
    module.slug: module
    for module in (
        Module("CREATE CASE", "create-case", "CAREGATE_CREATE_CASE_URL"),
        Module("CONSUMERS", "consumers", "CAREGATE_CONSUMERS_URL"),
        Module("REPORTS", "reports", "CAREGATE_REPORTS_URL"),
    )
}


@dataclass(frozen=True)
class NavItem:
    label: str
    url: str


def _module_url(slug: str) -> str:
    # An unconfigured module keeps its place in the menu and opens a page that says so,
    # inside the portal, rather than vanishing (users follow the guide's menu).
    return EXTERNAL_MODULES[slug].address or reverse("portal:module", args=[slug])


@cache
def _menu(key: tuple[object, ...]) -> tuple[NavItem, ...]:
    """The menu's addresses, reversed once per process for each ``key`` (eight reverse()
    calls were ~0.5 ms of every portal page)."""
    return (
        NavItem("HOME", reverse("portal:home")),
        NavItem("CASES", reverse("portal:cases")),
        NavItem("CREATE CASE", _module_url("create-case")),
        NavItem("CONSUMERS", _module_url("consumers")),
        NavItem("SETUP", reverse("portal:setup")),
        NavItem("MESSAGE CENTER", reverse("portal:messages")),
        NavItem("REPORTS", _module_url("reports")),
        NavItem("Help", reverse("portal:help")),
        NavItem("SUPPORT", reverse("staff:support")),
    )


def portal_nav(user: User | AnonymousUser | None = None) -> list[NavItem]:
    """The guide's menu; support staff also get SUPPORT, the support console."""
    # Everything the addresses depend on is in the key: the URL configuration, the script
    # prefix and the configured module addresses (tests override them).
    key = (
        settings.ROOT_URLCONF,
        get_urlconf(),
        get_script_prefix(),
        *(module.address for module in EXTERNAL_MODULES.values()),
    )
    *items, support = _menu(key)
    if user is not None and user.is_authenticated and user.has_staff_role(SUPPORT):
        items.insert(-1, support)
    return items


def branding(request: HttpRequest) -> dict[str, Any]:
    return {
        "brand": settings.CAREGATE_BRAND_NAME,
        "portal_name": settings.CAREGATE_PORTAL_NAME,
        "support_phone": settings.CAREGATE_SUPPORT_PHONE,
        # A callable: the template calls it where it shows the menu (portal pages), so
        # the sign-in screens, which have none, do not build it.
        "portal_nav": partial(portal_nav, getattr(request, "user", None)),
        # The header's case search on every portal page; a view's own (bound) form wins.
        # Built only where a page shows it: the sign-in screens have no header search.
        "search_form": SimpleLazyObject(CaseSearchForm),
        "dev_outbox": settings.CAREGATE_DEV_OUTBOX,
    }
