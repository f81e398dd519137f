"""Forms of the flow stages. Validation only: no side effects in clean()."""

from __future__ import annotations

from typing import Any

from django import forms

from caregate.accounts.addresses import validate_address
from caregate.staff.domain import is_internal_address, staff_address_message
from caregate.verification.codes import CODE_LENGTH, is_well_formed

# Longer than any real value; a bound that keeps huge posts from reaching the hasher.
MAX_PASSWORD = 256


class EmailAddressField(forms.CharField):
    """An address a customer or provider user types: never one at the operator's staff
    domain (staff sign in with the staff LOGIN; see caregate/staff/domain.py)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 254)
        kwargs.setdefault("label", "Email Address")
        super().__init__(**kwargs)

    def clean(self, value: str | None) -> str:
        cleaned = super().clean(value).strip()
        if cleaned:
            try:
                validate_address(cleaned)
            except forms.ValidationError as exc:
                raise forms.ValidationError("Enter a valid email address.") from exc
            if is_internal_address(cleaned):
                raise forms.ValidationError(staff_address_message())
        return cleaned.lower()


class EmailSignInForm(forms.Form):
    email = EmailAddressField(
        error_messages={"required": "Please enter your Email Address."},
        widget=forms.EmailInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = forms.CharField(
        label="Password",
        max_length=MAX_PASSWORD,
        strip=False,
        error_messages={
            "required": "Please enter your Password.",
            "max_length": "That password is too long.",
        },
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class UsernameSignInForm(forms.Form):
    username = forms.CharField(
        label="Username",
        max_length=150,
        error_messages={"required": "Please enter your Username."},
        widget=forms.TextInput(attrs={"autocomplete": "username", "autofocus": True}),
    )
    password = EmailSignInForm.base_fields["password"]

    def clean_username(self) -> str:
        username = self.cleaned_data["username"]
        if is_internal_address(username):  # staff usernames are their staff addresses
            raise forms.ValidationError(staff_address_message())
        return username


class CodeForm(forms.Form):
    code = forms.CharField(
        label="Verification code",
        max_length=64,
        error_messages={"required": "Please enter the verification code."},
        widget=forms.TextInput(
            attrs={
                "autocomplete": "one-time-code",
                "inputmode": "numeric",
                "pattern": "[0-9]*",
                "placeholder": "Verification code",
            }
        ),
    )

    def clean_code(self) -> str:
        code = "".join(self.cleaned_data["code"].split())
        if not is_well_formed(code):
            raise forms.ValidationError(
                f"The verification code is {CODE_LENGTH} digits. Please check it and try again."
            )
        return code


class EmailForm(forms.Form):
    email = EmailAddressField(
        error_messages={"required": "Please enter your Email Address."},
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
