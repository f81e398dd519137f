"""The National Provider Identifier check digit (CMS: Luhn over the 80840 prefix)."""

from __future__ import annotations


def _luhn_sum(digits: str) -> int:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total


def is_valid_npi(value: str) -> bool:
    """Return True for a 10-digit NPI whose last digit is its check digit.

    CMS defines the check digit as the Luhn digit of the NPI prefixed with 80840 (the
    health-industry issuer prefix), so the 15-digit string must pass the Luhn test.
    """
    if len(value) != 10 or not value.isascii() or not value.isdigit():
        return False
    return _luhn_sum("80840" + value) % 10 == 0


def npi_check_digit(first_nine: str) -> str:
    """Return the check digit that completes a 9-digit NPI base (for tests and demo data)."""
    for digit in "0123456789":
        if is_valid_npi(first_nine + digit):
            return digit
    raise ValueError("not a 9-digit NPI base")
