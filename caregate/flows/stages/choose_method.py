"""The choose-method stage: "LOGIN METHOD" – PHONE or EMAIL."""

from __future__ import annotations

from dataclasses import dataclass

from django.http import HttpRequest

from caregate.flows.engine import Advance, FlowState, Render, Result

METHODS = {"phone", "email"}


@dataclass(frozen=True)
class ChooseMethod:
    key: str = "method"
    template: str = "flows/choose_method.html"

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        if request.method == "POST":
            method = request.POST.get("method", "")
            if method in METHODS:
                return Advance({"method": method})
            return Render({"error": "Please select PHONE or EMAIL."})
        return Render({})


def chose_phone(state: FlowState) -> bool:
    return state.data.get("method") == "phone"
