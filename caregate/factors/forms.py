"""The forms of the authenticator app and recovery codes."""

from __future__ import annotations

from django import forms

from caregate.factors.totp import DIGITS


class AppCodeForm(forms.Form):
    code = forms.CharField(
        label="Code from your authenticator app",
        max_length=32,
        error_messages={"required": "Please enter the 6-digit code your app shows."},
        widget=forms.TextInput(
            attrs={"autocomplete": "one-time-code", "inputmode": "numeric", "pattern": "[0-9]*"}
        ),
    )

    def clean_code(self) -> str:
        code = "".join(self.cleaned_data["code"].split())
        if len(code) != DIGITS or not code.isascii() or not code.isdigit():
            raise forms.ValidationError(
                f"The code is {DIGITS} digits. Please check it and try again."
            )
        return code


class RecoveryCodeForm(forms.Form):
    code = forms.CharField(
        label="Recovery code",
        max_length=64,
        error_messages={"required": "Please enter one of your recovery codes."},
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
