"""Branding and navigation for every template."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def branding(request: HttpRequest) -> dict[str, Any]:
    external = [
        ("CREATE CASE", settings.CAREGATE_CREATE_CASE_URL),
        ("CONSUMERS", settings.CAREGATE_CONSUMERS_URL),
        ("REPORTS", settings.CAREGATE_REPORTS_URL),
    ]
    return {
        "brand": settings.CAREGATE_BRAND_NAME,
        "portal_name": settings.CAREGATE_PORTAL_NAME,
        "support_phone": settings.CAREGATE_SUPPORT_PHONE,
        "external_modules": {label: url for label, url in external if url},
        "dev_outbox": settings.CAREGATE_DEV_OUTBOX,
    }
