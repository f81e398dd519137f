"""The choose-method stage: "LOGIN METHOD" – PHONE or EMAIL."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest

from caregate.factors import policy
from caregate.flows.engine import Advance, FlowState, Render, Result

METHODS = ("phone", "email")


def offered() -> list[str]:
    """The methods the factor policy lets a registration choose (the aal2 profile: email
    is no second factor, so only PHONE; the other factors are added from My Account)."""
    return [method for method in METHODS if policy.allowed(method)]


@dataclass(frozen=True)
class ChooseMethod:
    key: str = "method"
    template: str = "flows/choose_method.html"

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        methods = offered()
        context = {"methods": methods}
        if request.method == "POST":
            method = request.POST.get("method", "")
            if method in methods:
                return Advance({"method": method})
            words = " or ".join(m.upper() for m in methods) or "a method"
            return Render({**context, "error": f"Please select {words}."})
        return Render(context)


def chose_phone(state: FlowState) -> bool:
    return state.data.get("method") == "phone"
