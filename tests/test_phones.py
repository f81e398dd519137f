"""Phone numbers (Section 3 and the phone enrollment): what is a 10-digit direct line.

The guide: "A phone registration will require a direct line with 10-digits; extensions
are not supported." Numbers are parsed with phonenumbers; countries other than the
allowed ones (CAREGATE_ALLOWED_COUNTRY_CODES) are refused.
"""

from __future__ import annotations

import pytest
from django.test import override_settings

from caregate.flows.stages.phone_challenge import PhoneNumberForm
from caregate.verification.phones import (
    COUNTRY_NOT_ALLOWED,
    EXTENSIONS,
    NOT_A_NUMBER,
    PREMIUM,
    TOLL_FREE,
    country_choices,
    mask_phone,
    validate_phone,
)

E164 = "+12025550143"

# --- accepted -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "2025550143",
        "202-555-0143",
        "(202) 555-0143",
        "202.555.0143",
        "202 555 0143",
        "  202-555-0143  ",
        "+1 202 555 0143",
        "+12025550143",
        # The national trunk prefix "1" in front of the ten digits is the same number.
        "1-202-555-0143",
        "1 (202) 555-0143",
    ],
)
def test_ten_digit_us_numbers_in_any_usual_format(raw):
    check = validate_phone(raw)
    assert check.error == ""
    assert check.e164 == E164


@pytest.mark.parametrize(
    ("raw", "e164"),
    [("601-555-0188", "+16015550188"), ("(415) 555-2671", "+14155552671")],
)
def test_other_area_codes(raw, e164):
    assert validate_phone(raw).e164 == e164


# --- refused --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        # length
        ("202555014", NOT_A_NUMBER),  # 9 digits
        ("555-0143", NOT_A_NUMBER),  # 7 digits (no area code)
        ("20255501433", NOT_A_NUMBER),  # 11 digits that are not 1 + ten digits
        ("120255501433", NOT_A_NUMBER),  # 12 digits
        ("2", NOT_A_NUMBER),
        # extensions, in the forms people type them
        ("202-555-0143 ext. 12", EXTENSIONS),
        ("202-555-0143 ext 12", EXTENSIONS),
        ("202-555-0143 EXT.12", EXTENSIONS),
        ("202-555-0143 x12", EXTENSIONS),
        ("2025550143x12", EXTENSIONS),
        ("202-555-0143;ext=12", EXTENSIONS),
        ("tel:+1-202-555-0143;ext=12", EXTENSIONS),
        ("+1 202 555 0143 ext. 12", EXTENSIONS),
        ("(202) 555-0143 #12", EXTENSIONS),
        ("202.555.0143,12", EXTENSIONS),
        # letters
        ("abcdefghij", NOT_A_NUMBER),
        ("202-CALL-NOW", NOT_A_NUMBER),  # a vanity number is not typed as digits
        ("202-555-O143", NOT_A_NUMBER),  # letter O for zero
        ("phone", NOT_A_NUMBER),
        # not a direct line: toll-free and premium-rate numbers
        ("800-555-0143", TOLL_FREE),
        ("+1 888 555 0143", TOLL_FREE),
        ("(877) 246-1234", TOLL_FREE),
        ("1-866-555-0143", TOLL_FREE),
        ("900-555-0143", PREMIUM),
        # invalid NANP numbers (area code or exchange starting with 0 or 1)
        ("023-555-0143", NOT_A_NUMBER),
        ("202-055-0143", NOT_A_NUMBER),
        # empty and huge
        ("", NOT_A_NUMBER),
        ("   ", NOT_A_NUMBER),
        ("2" * 41, NOT_A_NUMBER),
        ("1" * 100_000, NOT_A_NUMBER),
        # non-ASCII
        ("２０２５５５０１４３", NOT_A_NUMBER),  # fullwidth digits
        ("٢٠٢٥٥٥٠١٤٣", NOT_A_NUMBER),  # Arabic-Indic digits
        ("202-555-0143é", NOT_A_NUMBER),
        ("202\u200b555\u20000143", NOT_A_NUMBER),  # zero-width and other spaces
        ("📞 202-555-0143", NOT_A_NUMBER),
        # control characters and markup
        ("\x00", NOT_A_NUMBER),
        ("202-555-0143\x00", NOT_A_NUMBER),
        ("<script>2025550143</script>", NOT_A_NUMBER),
        ("' OR 1=1 --", NOT_A_NUMBER),
        ("+", NOT_A_NUMBER),
        ("--", NOT_A_NUMBER),
    ],
)
def test_refused_numbers(settings, raw, message):
    settings.CAREGATE_ALLOWED_COUNTRY_CODES = ["1"]
    check = validate_phone(raw)
    assert check.e164 == ""
    assert check.error == message


def test_surrounding_blanks_do_not_count_towards_the_length_bound():
    assert validate_phone("202-555-0143" + " " * 40).e164 == E164


def test_extension_message_uses_the_guides_words():
    assert "extensions are not supported" in validate_phone("202-555-0143 ext. 12").error
    assert "10-digit" in validate_phone("202-555-0143 x12").error


def test_toll_free_and_premium_numbers_are_refused_saying_so():
    """Not "Please enter a 10-digit phone number": the user typed ten digits, and must be
    told why this number cannot be used."""
    toll_free = validate_phone("800-555-0143").error
    premium = validate_phone("900-555-0143").error
    assert "Toll-free numbers" in toll_free and "cannot be used" in toll_free
    assert "Premium-rate numbers" in premium and "cannot be used" in premium
    for message in (toll_free, premium):
        assert message != NOT_A_NUMBER and "direct line" in message


def test_the_enrollment_form_shows_the_toll_free_message_beside_the_field():
    form = PhoneNumberForm({"country_code": "1", "phone_number": "888-555-0143"})
    assert not form.is_valid()
    assert form.errors["phone_number"] == [TOLL_FREE]


# --- countries ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw", ["+44 20 7946 0958", "+442079460958", "011 44 20 7946 0958", "+33 1 23 45 67 89"]
)
def test_other_countries_refused_by_default(settings, raw):
    settings.CAREGATE_ALLOWED_COUNTRY_CODES = ["1"]
    check = validate_phone(raw)
    assert check.e164 == ""
    assert check.error == COUNTRY_NOT_ALLOWED


def test_a_country_code_that_is_not_allowed_is_refused(settings):
    settings.CAREGATE_ALLOWED_COUNTRY_CODES = ["1"]
    assert validate_phone("20 7946 0958", 44).error == COUNTRY_NOT_ALLOWED


@override_settings(CAREGATE_ALLOWED_COUNTRY_CODES=["1", "44"])
@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("20 7946 0958", "+442079460958"),
        ("020 7946 0958", "+442079460958"),
        ("+44 20 7946 0958", "+442079460958"),
        ("07911 123456", "+447911123456"),
    ],
)
def test_an_allowed_country_is_accepted(raw, e164):
    check = validate_phone(raw, 44)
    assert check.error == ""
    assert check.e164 == e164


@override_settings(CAREGATE_ALLOWED_COUNTRY_CODES=["1", "44"])
def test_the_number_must_belong_to_the_chosen_country():
    # +44 typed while "United States (+1)" is selected, and a US number under +44.
    assert validate_phone("+44 20 7946 0958", 1).e164 == ""
    assert validate_phone("202-555-0143", 44).e164 == ""
    # Still no extensions, whatever the country.
    assert validate_phone("020 7946 0958 ext. 3", 44).error == EXTENSIONS


@override_settings(CAREGATE_ALLOWED_COUNTRY_CODES=["1", "44"])
def test_country_choices_follow_the_setting():
    assert country_choices() == [("1", "United States (+1)"), ("44", "+44")]


# --- the enrollment form ----------------------------------------------------------------


def test_form_gives_e164(settings):
    settings.CAREGATE_ALLOWED_COUNTRY_CODES = ["1"]
    form = PhoneNumberForm({"country_code": "1", "phone_number": "(202) 555-0143"})
    assert form.is_valid(), form.errors
    assert form.cleaned_data["e164"] == E164


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"country_code": "1", "phone_number": ""}, "phone_number", "Please enter your Phone"),
        (
            {"country_code": "1", "phone_number": "202-555-0143 ext. 12"},
            "phone_number",
            EXTENSIONS,
        ),
        ({"country_code": "1", "phone_number": "202555014"}, "phone_number", NOT_A_NUMBER),
        ({"country_code": "1", "phone_number": "9" * 41}, "phone_number", "at most 40"),
        ({"country_code": "44", "phone_number": "20 7946 0958"}, "country_code", "valid choice"),
        ({"country_code": "x", "phone_number": "2025550143"}, "country_code", "valid choice"),
        ({"phone_number": "2025550143"}, "country_code", "required"),
    ],
)
def test_form_errors(settings, data, field, message):
    settings.CAREGATE_ALLOWED_COUNTRY_CODES = ["1"]
    form = PhoneNumberForm(data)
    assert not form.is_valid()
    assert any(message in error for error in form.errors[field]), form.errors


# --- masking --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("e164", "masked"),
    [
        ("+12025559885", "XXX-XXX-9885"),
        ("+12025550143", "XXX-XXX-0143"),
        ("+442079460958", "XXX-XXX-0958"),
        ("", "XXX-XXX-XXXX"),
        ("+1", "XXX-XXX-XXXX"),
    ],
)
def test_mask_shows_only_the_last_four_digits(e164, masked):
    assert mask_phone(e164) == masked


def test_mask_never_contains_the_rest_of_the_number():
    masked = mask_phone("+12025559885")
    assert "202" not in masked and "555" not in masked
