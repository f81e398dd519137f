"""The set-password stage: New Password, Confirm New Password → Create."""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.contrib.auth.password_validation import validate_password
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.flows.engine import Advance, Back, FlowState, Render, Restart, Result
from caregate.flows.forms import MAX_PASSWORD

EMAIL_NOW_TAKEN = (
    "This email address is now used by another account. Select Change to verify another "
    "email address."
)


class NewPasswordForm(forms.Form):
    new_password = forms.CharField(
        label="New Password",
        max_length=MAX_PASSWORD,
        strip=False,
        error_messages={"required": "Please enter a New Password."},
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    confirm_password = forms.CharField(
        label="Confirm New Password",
        max_length=MAX_PASSWORD,
        strip=False,
        error_messages={"required": "Please confirm the New Password."},
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def __init__(self, *args: object, user: User, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.user = user

    def clean(self) -> dict:
        data = super().clean()
        first, second = data.get("new_password"), data.get("confirm_password")
        if first and second and first != second:
            self.add_error("confirm_password", "The two passwords do not match.")
        elif first:
            try:
                validate_password(first, self.user)
            except forms.ValidationError as exc:
                self.add_error("new_password", exc)
        return data


@dataclass(frozen=True)
class SetPassword:
    """Set the user's password; also records the verified work email on the account.

    ``change_stage``: the stage the "Change" button goes back to (the email code stage).
    """

    intro: str = "The code has been verified. You can now continue."
    button: str = "Create"
    change_stage: str = "email-code"
    key: str = "password"
    template: str = "flows/set_password.html"

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        user = User.objects.filter(pk=state.data.get("user_id"), is_active=True).first()
        if user is None:
            return Restart("Please start again.")
        if request.method == "POST" and request.POST.get("action") == "change":
            return Back(self.change_stage)
        form = NewPasswordForm(request.POST if request.method == "POST" else None, user=user)
        if request.method != "POST" or not form.is_valid():
            return Render(self._context(state, form))
        user.set_password(form.cleaned_data["new_password"])
        email = state.data.get("verified_email")
        if email:
            user.email = email
            user.email_verified_at = timezone.now()
        try:
            # Another account may have taken the address since it was verified.
            with transaction.atomic():
                user.save()
        except IntegrityError:
            form.add_error(None, EMAIL_NOW_TAKEN)
            return Render(self._context(state, form))
        record("password.set", "success", request=request, user=user, flow=state.raw["flow"])
        return Advance({})

    def _context(self, state: FlowState, form: NewPasswordForm) -> dict:
        return {
            "intro": self.intro,
            "button": self.button,
            "email": state.data.get("verified_email", ""),
            "form": form,
        }
