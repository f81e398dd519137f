"""The second-factor stage of a sign-in with "Try another way".

It shows the button's own factor (LOGIN WITH EMAIL: the emailed code, LOGIN WITH PHONE:
the phone) and, for a user who has enrolled others that the deployment allows
(caregate/factors/registry.py), a "Try another way" link to the list of them. The choice
is kept in this stage's own namespace of the flow state, so it is written with the
engine's compare-and-set like everything else, and it is checked against the account's
enrolled factors when it is made. The chosen factor's stage does the verifying; when it
Advances, the flow's data names the factor (``second_factor``) for the finish and its
audit event. Remember Me is not this stage's business: the flow's finish binds it to the
button, whatever factor was used.

The deployment's policy (caregate/factors/policy.py) can turn the button's own factor off
(the "aal2" profile: email is no second factor). Then the stage shows the user's other
allowed factors to choose from, or, for a user without one, a page saying how to get
access: the button's own stage is never reached, so it cannot be used around the policy.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from django.http import HttpRequest

from caregate.accounts.models import User
from caregate.factors import policy, registry
from caregate.factors.registry import SecondFactor
from caregate.flows.engine import Advance, Back, FlowState, Render, Result, Stage
from caregate.flows.events import record_step

ANOTHER_WAY = "another-way"  # ?another-way: the list of choices (a GET: writes nothing)
NOT_OFFERED = "That way of signing in is not available for your account."
TURNED_OFF = {"email": "An emailed code", "phone": "A code sent to your phone"}
# Said on the list when the deployment's policy takes email out (aal2): every account has
# an address, so its absence from the choices needs a reason.
EMAIL_NOT_ACCEPTED = (
    "An emailed code is not offered: this portal does not accept it as a second factor."
)


@dataclass(frozen=True)
class FactorChoice:
    """Delegate to the button's own stage (``default``) or to the chosen factor's."""

    default: SecondFactor

    @property
    def key(self) -> str:
        # The button's stage keeps its URL (and its own state namespace) as before.
        return self.default.stage.key

    @property
    def template(self) -> str:
        return self.default.stage.template

    @property
    def choice_key(self) -> str:
        return f"{self.key}:factor"

    def own_allowed(self) -> bool:
        return policy.allowed(self.default.key)

    def chosen(self, state: FlowState) -> SecondFactor | None:
        """The factor this sign-in uses now: the chosen one if the deployment still allows
        it, else the button's own if the policy allows it, else None (nothing chosen)."""
        key = state.stage(self.choice_key).get("factor", "")
        found = policy.usable(key) if key else None
        return found or (self.default if self.own_allowed() else None)

    def choices(self, state: FlowState) -> list[SecondFactor]:
        user = User.objects.filter(pk=state.data.get("user_id"), is_active=True).first()
        found = registry.choices_for(user, default=self.default) if user else [self.default]
        return [factor for factor in found if policy.allowed(factor.key)]

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        if request.method == "POST" and "factor" in request.POST:
            return self._choose(request, state)
        if request.method == "GET" and ANOTHER_WAY in request.GET:
            return self._list(state)
        factor = self.chosen(state)
        if factor is None:
            return self._own_turned_off(request, state)
        result = factor.stage.handle(request, state)
        if isinstance(result, Advance):
            return Advance({**result.data, "second_factor": factor.key})
        if isinstance(result, Render):
            return self._with_link(state, factor, result)
        return result

    def _choose(self, request: HttpRequest, state: FlowState) -> Result:
        key = request.POST.get("factor", "")
        offered = {factor.key: factor for factor in self.choices(state)}
        if key not in offered:
            if not offered:  # the button's own factor is off and there is no other
                return self._own_turned_off(request, state)
            return self._list(state, error=NOT_OFFERED)
        own = state.stage(self.choice_key)
        if key == self.default.key:  # offered only while the policy allows it
            own.pop("factor", None)
        else:
            own["factor"] = key
        record_step(request, state, "factor.choose", "success", channel=key)
        # Back to this very stage: the engine saves the choice (compare-and-set) and
        # redirects to this stage's URL, where the chosen factor's page is shown.
        return Back(self.key)

    def _list(self, state: FlowState, *, error: str = "") -> Render:
        options = self.choices(state)
        chosen = self.chosen(state)
        current = chosen.key if chosen is not None else ""
        context: dict[str, Any] = {
            "options": options,
            "current": current,
            "error": error,
            "policy_note": "" if policy.allowed("email") else EMAIL_NOT_ACCEPTED,
        }
        return Render(context, template="factors/choose_factor.html")

    def _with_link(self, state: FlowState, factor: SecondFactor, result: Render) -> Render:
        """The factor's page, with "Try another way" when there is another way."""
        another = factor.key != self.default.key or self._has_other(state)
        context = {
            **result.context,
            "wrapped_template": result.template or factor.stage.template,
            "another_way": another,
        }
        return replace(result, context=context, template="factors/with_another_way.html")

    def _own_turned_off(self, request: HttpRequest, state: FlowState) -> Render:
        """The policy turned the button's own factor off and nothing else is chosen: the
        user's other factors to choose from, or how to get access."""
        if self.choices(state):
            return self._list(state)
        key = self.default.key
        record_step(request, state, "factor-policy.refused", "factor-off", channel=key)
        context = {
            "factor_label": TURNED_OFF.get(key, self.default.label),
            "phone_allowed": policy.allowed("phone"),
        }
        return Render(context, status=403, template="factors/not_allowed.html")

    def _has_other(self, state: FlowState) -> bool:
        """Whether to show the link: from what the password step noted (display only; the
        list and the choice itself re-read the account's factors)."""
        noted = state.data.get("enrolled_factors")
        if isinstance(noted, list):
            return any(key != self.default.key and policy.allowed(key) for key in noted)
        return len(self.choices(state)) > 1

    # The call-status and delivery-status polls read these from the flow's current stage.
    def current_call(self, own: dict[str, Any]) -> Any:
        helper = getattr(self.default.stage, "current_call", None)
        return helper(own) if helper is not None else None

    def delivery_status(self, state: FlowState) -> tuple[str, str]:
        helper = getattr(self.default.stage, "delivery_status", None)
        return helper(state) if helper is not None else ("none", "")


def own_factor(key: str, label: str, stage: Stage, strength: int) -> SecondFactor:
    """The button's own factor, as the registry describes factors (always enrolled: the
    Credentials stage let only users registered with it through)."""
    return SecondFactor(key=key, label=label, stage=stage, enrolled=_always, strength=strength)


def _always(user: User) -> bool:
    return True
