"""The operator's email domain is reserved for staff (``CAREGATE_INTERNAL_EMAIL_DOMAIN``).

The guides' login page sends anyone with an operator domain account to the staff LOGIN;
customer and provider users are those without such an account or company address. So the
customer buttons, registration and every address a customer types refuse the domain (and
its subdomains) with a message pointing to the staff LOGIN. The answer depends only on what
was typed, never on whether an account exists.
"""

from __future__ import annotations

import unicodedata

from django.conf import settings

# Dots that IDNA (UTS #46) maps to "." in a domain: a mail server reading the address
# delivers to the same domain as with a plain dot.
_DOTS = str.maketrans({"\u3002": ".", "\uff0e": ".", "\uff61": "."})


def internal_domain() -> str:
    return settings.CAREGATE_INTERNAL_EMAIL_DOMAIN.strip().lower().lstrip("@")


def mail_domain(host: str) -> str:
    """The domain a mail server delivers ``host`` to: invisible characters removed,
    compatibility forms folded (full-width letters, ligatures: NFKC, as IDNA does), IDNA
    dots mapped, case folded, a trailing dot dropped. Django's SMTP backend IDNA-encodes
    the domain the same way, so a look-alike spelling reaches the same mailbox."""
    visible = "".join(ch for ch in host if unicodedata.category(ch) != "Cf")
    folded = unicodedata.normalize("NFKC", visible).translate(_DOTS).casefold()
    return folded.strip().rstrip(".")


def is_internal_address(value: str) -> bool:
    """Whether ``value`` is an address at the operator's domain or one of its subdomains,
    in any spelling that mail delivery treats as that domain."""
    domain = internal_domain()
    _, at, host = value.rpartition("@")
    if not (domain and at):
        return False
    host = mail_domain(host)
    return host == domain or host.endswith(f".{domain}")


def staff_address_message() -> str:
    brand = settings.CAREGATE_BRAND_NAME
    return (
        f"This is a {brand} staff email address. {brand} staff sign in with the LOGIN "
        f'button under "{brand}" on the login page.'
    )
