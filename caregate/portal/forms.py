from __future__ import annotations

from django import forms


class LoginOptionsForm(forms.Form):
    """The Customer/Provider column: which button, and the Remember Me box."""

    method = forms.ChoiceField(
        choices=[("phone", "LOGIN WITH PHONE"), ("email", "LOGIN WITH EMAIL")]
    )
    remember_me = forms.BooleanField(label="Remember Me", required=False)


class CaseSearchForm(forms.Form):
    q = forms.CharField(
        label="Search for Case # or Program #",
        max_length=30,
        required=False,
        error_messages={"max_length": "A Case # or Program # is at most 30 characters."},
    )
