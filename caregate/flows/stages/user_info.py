"""The user information stage: "Create a New Account - Enter User Information"."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.http import HttpRequest

from caregate.accounts.models import username_taken
from caregate.flows.engine import Advance, FlowState, Render, Result
from caregate.flows.forms import EmailAddressField
from caregate.security.client import client_ip
from caregate.staff.domain import is_internal_address, staff_address_message
from caregate.verification import ratelimit
from caregate.verification.phones import validate_phone

US_STATES = [
    ("AL", "Alabama"), ("AK", "Alaska"), ("AZ", "Arizona"), ("AR", "Arkansas"),
    ("CA", "California"), ("CO", "Colorado"), ("CT", "Connecticut"), ("DE", "Delaware"),
    ("DC", "District of Columbia"), ("FL", "Florida"), ("GA", "Georgia"), ("HI", "Hawaii"),
    ("ID", "Idaho"), ("IL", "Illinois"), ("IN", "Indiana"), ("IA", "Iowa"),
    ("KS", "Kansas"), ("KY", "Kentucky"), ("LA", "Louisiana"), ("ME", "Maine"),
    ("MD", "Maryland"), ("MA", "Massachusetts"), ("MI", "Michigan"), ("MN", "Minnesota"),
    ("MS", "Mississippi"), ("MO", "Missouri"), ("MT", "Montana"), ("NE", "Nebraska"),
    ("NV", "Nevada"), ("NH", "New Hampshire"), ("NJ", "New Jersey"), ("NM", "New Mexico"),
    ("NY", "New York"), ("NC", "North Carolina"), ("ND", "North Dakota"), ("OH", "Ohio"),
    ("OK", "Oklahoma"), ("OR", "Oregon"), ("PA", "Pennsylvania"), ("RI", "Rhode Island"),
    ("SC", "South Carolina"), ("SD", "South Dakota"), ("TN", "Tennessee"), ("TX", "Texas"),
    ("UT", "Utah"), ("VT", "Vermont"), ("VA", "Virginia"), ("WA", "Washington"),
    ("WV", "West Virginia"), ("WI", "Wisconsin"), ("WY", "Wyoming"),
    ("AS", "American Samoa"), ("GU", "Guam"), ("MP", "Northern Mariana Islands"),
    ("PR", "Puerto Rico"), ("VI", "U.S. Virgin Islands"),
]  # fmt: skip
ZIP = re.compile(r"^\d{5}(-?\d{4})?$")
USERNAME_CHARS = "A username may contain only letters, digits and @ . + - _"
USERNAME_TAKEN = "This username is not available. Please choose another."
TOO_MANY_USERNAMES = (
    "Too many usernames have been checked from this computer. Please wait a while and try again."
)
EMAIL_TAKEN = (
    "This email address cannot be used for a new account. If you already have an account, "
    "use \u201cForgot your password?\u201d or ask your provider administrator."
)
FAX_NOTICE = (
    "Providers in receipt of Faxed Determination Letters: Official communication of "
    "service authorization will be sent to the fax number entered below."
)


def _text(label: str, required: bool, max_length: int, **attrs: object) -> forms.CharField:
    name = label.rstrip(" *").title()
    return forms.CharField(
        label=label,
        required=required,
        max_length=max_length,
        error_messages={
            "required": f"Please enter your {name}.",
            "max_length": f"{name} is at most {max_length} characters.",
        },
        widget=forms.TextInput(attrs=attrs),
    )


# Asked before the database is: may this flow learn whether ``username`` is taken?
UsernameBudget = Callable[[str], bool]


class UserInfoForm(forms.Form):
    username = _text("USERNAME *", True, 150, autocomplete="username")
    first_name = _text("FIRST NAME *", True, 150, autocomplete="given-name")
    last_name = _text("LAST NAME *", True, 150, autocomplete="family-name")
    address1 = _text("ADDRESS 1", False, 100, autocomplete="address-line1")
    address2 = _text("ADDRESS 2", False, 100, autocomplete="address-line2")
    city = _text("CITY", False, 60, autocomplete="address-level2")
    state = forms.ChoiceField(
        label="STATE",
        required=False,
        choices=[("", "Select State"), *US_STATES],
        error_messages={"invalid_choice": "Please select a state from the list."},
    )
    zip_code = _text("ZIP CODE", False, 10, autocomplete="postal-code", inputmode="numeric")
    email = EmailAddressField(
        label="EMAIL *",
        error_messages={"required": "Please enter your Email."},
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    confirm_email = EmailAddressField(
        label="CONFIRM EMAIL *",
        error_messages={"required": "Please confirm your Email."},
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
    phone = _text("PHONE", False, 40, autocomplete="tel-national", inputmode="tel")
    fax = _text("FAX *", True, 40, inputmode="tel")

    def __init__(
        self, *args: object, may_ask: UsernameBudget | None = None, **kwargs: object
    ) -> None:
        super().__init__(*args, **kwargs)
        self.may_ask = may_ask

    def clean_username(self) -> str:
        value = self.cleaned_data["username"].strip()
        try:
            UnicodeUsernameValidator()(value)
        except forms.ValidationError as exc:
            raise forms.ValidationError(USERNAME_CHARS) from exc
        if not value.isascii():
            raise forms.ValidationError(USERNAME_CHARS)
        if is_internal_address(value):
            # Staff usernames are their staff addresses: a registrant must not squat one.
            raise forms.ValidationError(staff_address_message())
        # The user must learn a name is taken to pick another, so the answer is given, but
        # rationed: over the budget nothing is looked up and the form cannot go on.
        if self.may_ask is not None and not self.may_ask(value):
            raise forms.ValidationError(TOO_MANY_USERNAMES)
        if username_taken(value):
            raise forms.ValidationError(USERNAME_TAKEN)
        return value

    def clean_first_name(self) -> str:
        return _name(self.cleaned_data["first_name"])

    def clean_last_name(self) -> str:
        return _name(self.cleaned_data["last_name"])

    def clean_address1(self) -> str:
        return _printable(self.cleaned_data["address1"])

    def clean_address2(self) -> str:
        return _printable(self.cleaned_data["address2"])

    def clean_city(self) -> str:
        return _printable(self.cleaned_data["city"])

    def clean_zip_code(self) -> str:
        value = self.cleaned_data["zip_code"].strip()
        if value and not (value.isascii() and ZIP.match(value)):
            raise forms.ValidationError("Enter a 5-digit ZIP code, or ZIP+4 (12345-6789).")
        return value

    def clean_phone(self) -> str:
        return _us_number(self.cleaned_data["phone"])

    def clean_fax(self) -> str:
        return _us_number(self.cleaned_data["fax"])

    def clean(self) -> dict:
        data = super().clean()
        email, confirm = data.get("email"), data.get("confirm_email")
        if email and confirm and email != confirm:
            self.add_error("confirm_email", "The two email addresses do not match.")
        return data


def _name(value: str) -> str:
    value = value.strip()
    if any(ch in value for ch in '<>{}[]\\/"=;') or not value.isprintable():
        raise forms.ValidationError("Please use letters, spaces, apostrophes and hyphens.")
    return value


def _printable(value: str) -> str:
    # Control characters (escape, tab, line breaks) would follow the address onto faxed
    # letters and exports.
    if not value.isprintable():
        raise forms.ValidationError("Please use letters, digits, spaces and punctuation only.")
    return value


def _us_number(value: str) -> str:
    if not value.strip():
        return ""
    check = validate_phone(value, 1)
    if check.error:
        raise forms.ValidationError(check.error)
    return check.e164


def username_budget(request: HttpRequest, state: FlowState, own: dict) -> UsernameBudget:
    """Count each new username this flow instance asks about, per client address and per
    instance. The same name again (the form resubmitted after another field's error) is
    not a new question: its answer is already known."""

    def may_ask(username: str) -> bool:
        asked: list[str] = own.setdefault("asked", [])
        name = username.lower()
        if name in asked:
            return True
        allowed = ratelimit.hit_all(
            [("availability:client", client_ip(request)), ("availability:flow", state.id)]
        )
        if allowed:
            asked.append(name)
        return allowed

    return may_ask


@dataclass(frozen=True)
class UserInfo:
    key: str = "user-info"
    template: str = "flows/user_info.html"

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        form = UserInfoForm(
            request.POST if request.method == "POST" else None,
            may_ask=username_budget(request, state, state.stage(self.key)),
        )
        if request.method != "POST" or not form.is_valid():
            return Render({"form": form, "fax_notice": FAX_NOTICE})
        info = {k: v for k, v in form.cleaned_data.items() if k != "confirm_email"}
        return Advance({"user_info": info})
