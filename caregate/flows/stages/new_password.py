"""New Password, Confirm New Password → Continue, for a password reset.

Unlike SetPassword (MFA registration's Create), this stage saves nothing: it checks the
password rules and hands the flow a hash, which the flow's on_done saves only after the
engine has finished the instance (its compare-and-set delete). So of two final requests
sent at once exactly one changes the password, and a replayed one changes nothing.
This must be the flow's last stage: Advance data of the last stage is never written to
the flow's row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.contrib.auth.hashers import check_password, make_password
from django.http import HttpRequest

from caregate.accounts import backends
from caregate.accounts.models import User
from caregate.flows.engine import Advance, FlowState, Render, Restart, Result
from caregate.flows.stages.set_password import NewPasswordForm
from caregate.verification import ratelimit

UNCHANGED = "Your new password must be different from your current password."

# Whether this flow instance has proven every factor ``user`` has registered.
FactorsCheck = Callable[[User, FlowState], bool]


@dataclass(frozen=True)
class NewPassword:
    factors_passed: FactorsCheck
    intro: str = "Enter a new password and confirm the password."
    button: str = "Continue"
    key: str = "password"
    template: str = "flows/forgot_password_new.html"

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        user = User.objects.filter(pk=state.data.get("user_id"), is_active=True).first()
        # Read now, not when the stage was reached: a factor added since must be proven.
        if user is None or not self.factors_passed(user, state):
            return Restart("Please start again.")
        form = NewPasswordForm(request.POST if request.method == "POST" else None, user=user)
        if request.method == "POST" and form.is_valid() and self._unchanged(form, user):
            # A reset keeps nothing out if the password stays the one that may have leaked.
            form.add_error("new_password", UNCHANGED)
        if request.method != "POST" or not form.is_valid():
            return Render({"form": form, "intro": self.intro, "button": self.button})
        return Advance({"password_hash": make_password(form.cleaned_data["new_password"])})

    @staticmethod
    def _unchanged(form: NewPasswordForm, user: User) -> bool:
        # The comparison is a password guess like any other: it spends the account's
        # sign-in budget, and once that is spent it is not made (the password is taken as
        # it is), so it cannot be used to try passwords (the second attacker review of
        # session 12). Django's check without the setter: it must not upgrade (save) the
        # old hash halfway through a reset.
        if not ratelimit.hit(backends.SCOPE, f"account:{user.pk}"):
            return False
        return check_password(form.cleaned_data["new_password"], user.password)
