"""Phone numbers: parse and validate 10-digit direct lines, format, mask (phonenumbers)."""

from __future__ import annotations

from dataclasses import dataclass

import phonenumbers
from django.conf import settings
from phonenumbers import NumberParseException, PhoneNumberFormat, PhoneNumberType

EXTENSIONS = "Please enter a 10-digit direct line; extensions are not supported."
NOT_A_NUMBER = "Please enter a 10-digit phone number, for example 202-555-0143."
COUNTRY_NOT_ALLOWED = "Phone numbers in that country are not supported."
TOLL_FREE = (
    "Toll-free numbers (such as 800, 888 or 877) cannot be used. "
    "Please enter a direct line with 10 digits."
)
PREMIUM = (
    "Premium-rate numbers (such as 900) cannot be used. Please enter a direct line with 10 digits."
)
# Numbers that cannot be a person's direct line. Toll-free lines cannot receive text
# messages reliably, and premium and shared-cost lines are what SMS-pumping fraud dials.
REFUSED_TYPES = {
    PhoneNumberType.TOLL_FREE: TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE: PREMIUM,
    PhoneNumberType.SHARED_COST: PREMIUM,
}
_MAX_INPUT = 40


@dataclass(frozen=True)
class PhoneCheck:
    e164: str = ""
    error: str = ""


def _has_extension_marker(raw: str) -> bool:
    lowered = raw.lower()
    return any(marker in lowered for marker in ("ext", "x", "#", ",", ";"))


def validate_phone(raw: str, country_code: int = 1) -> PhoneCheck:
    """Return the number in E.164, or the message to show beside the field."""
    raw = (raw or "").strip()
    if not raw or len(raw) > _MAX_INPUT:
        return PhoneCheck(error=NOT_A_NUMBER)
    if str(country_code) not in settings.CAREGATE_ALLOWED_COUNTRY_CODES:
        return PhoneCheck(error=COUNTRY_NOT_ALLOWED)
    region = phonenumbers.region_code_for_country_code(country_code)
    try:
        number = phonenumbers.parse(raw, region)
    except NumberParseException:
        return PhoneCheck(error=EXTENSIONS if _has_extension_marker(raw) else NOT_A_NUMBER)
    if number.extension or (_has_extension_marker(raw) and not raw.startswith("+")):
        return PhoneCheck(error=EXTENSIONS)
    # Plain ASCII digits only: no vanity letters (202-CALL-NOW) that phonenumbers would
    # silently turn into digits, no look-alike digits from other scripts, no control bytes.
    if not (raw.isascii() and raw.isprintable()) or any(ch.isalpha() for ch in raw):
        return PhoneCheck(error=NOT_A_NUMBER)
    if str(number.country_code) not in settings.CAREGATE_ALLOWED_COUNTRY_CODES:
        return PhoneCheck(error=COUNTRY_NOT_ALLOWED)
    if number.country_code != country_code:
        return PhoneCheck(error=NOT_A_NUMBER)
    if not phonenumbers.is_valid_number(number):
        return PhoneCheck(error=NOT_A_NUMBER)
    refused = REFUSED_TYPES.get(phonenumbers.number_type(number))
    if refused:
        return PhoneCheck(error=refused)
    # NANP: exactly ten national digits (the guide's "10-digit direct line").
    if country_code == 1 and len(str(number.national_number)) != 10:
        return PhoneCheck(error=NOT_A_NUMBER)
    return PhoneCheck(e164=phonenumbers.format_number(number, PhoneNumberFormat.E164))


def mask_phone(e164: str) -> str:
    """Show only the last four digits, as the guide does: XXX-XXX-9885."""
    digits = "".join(ch for ch in e164 if ch.isdigit())
    return f"XXX-XXX-{digits[-4:]}" if len(digits) >= 4 else "XXX-XXX-XXXX"


def national(e164: str) -> str:
    """A stored number as people write it: (202) 555-0144 in the United States."""
    try:
        number = phonenumbers.parse(e164, None)
    except NumberParseException:
        return e164
    return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL)


def country_choices() -> list[tuple[str, str]]:
    """The allowed country codes for the registration form, United States (+1) first."""
    names = {"1": "United States (+1)"}
    return [
        (code, names.get(code, f"+{code}")) for code in settings.CAREGATE_ALLOWED_COUNTRY_CODES
    ]
