"""The email addresses Caregate accepts: what Django's validator accepts, without quotes.

RFC 5321 lets a quoted local part hold almost anything, commas and angle brackets
included: ``"x,mallory@evil.example,y"@clinic.example`` is one valid address. Every place
that hands addresses on as text (a delivery's destination lists a notice's recipients
separated by commas; the SMTP envelope; the mask shown on pages) could read it as
several. No person's work address needs a quoted local part, so none is accepted: not
typed into a form, not imported, not from a staff identity provider.
"""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import validate_email

# Characters that only a quoted local part (or an escape in it) can carry.
_QUOTED_ONLY = set('"\\,;<>()[] \t')


def validate_address(value: str) -> None:
    """Raise ValidationError unless ``value`` is a valid address with a plain local part."""
    validate_email(value)
    if _QUOTED_ONLY & set(value):
        raise ValidationError("Enter a valid email address.", code="invalid")
