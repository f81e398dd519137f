"""The operator's email domain is reserved for staff (``CAREGATE_INTERNAL_EMAIL_DOMAIN``).

The guides' login page sends anyone with an operator domain account to the staff LOGIN;
customer and provider users are those without such an account or company address. So the
customer buttons, registration and every address a customer types refuse the domain (and
its subdomains) with a message pointing to the staff LOGIN. The answer depends only on what
was typed, never on whether an account exists.
"""

from __future__ import annotations

from django.conf import settings


def internal_domain() -> str:
    return settings.CAREGATE_INTERNAL_EMAIL_DOMAIN.strip().lower().lstrip("@")


def is_internal_address(value: str) -> bool:
    """Whether ``value`` is an address at the operator's domain or one of its subdomains."""
    domain = internal_domain()
    _, at, host = value.strip().lower().rpartition("@")
    if not (domain and at):
        return False
    host = host.rstrip(".")
    return host == domain or host.endswith(f".{domain}")


def staff_address_message() -> str:
    brand = settings.CAREGATE_BRAND_NAME
    return (
        f"This is a {brand} staff email address. {brand} staff sign in with the LOGIN "
        f'button under "{brand}" on the login page.'
    )
