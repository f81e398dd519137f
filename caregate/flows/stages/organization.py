"""The organization stage: "Create a New Account - Specify Your Organization"."""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.http import HttpRequest

from caregate.accounts.models import Organization
from caregate.accounts.npi import is_valid_npi
from caregate.audit.log import record
from caregate.flows.engine import Advance, FlowState, Render, Result
from caregate.security.client import client_ip
from caregate.verification import ratelimit

NO_MATCH = (
    "The NPI and registration code do not match our records. Please check both and try "
    "again, or contact your provider administrator."
)
# Said for any 10-digit value whose check digit is wrong, whether or not some payer ID
# happens to look like it: it depends on the typed digits only, so it tells nothing.
CHECK_DIGIT_HINT = (
    " If you typed an NPI, please check its digits: the last one is a check digit, and "
    "{value} is not a valid NPI."
)
TOO_MANY = "Too many attempts. Please wait an hour and try again, or call the help desk."


class OrganizationForm(forms.Form):
    npi = forms.CharField(
        label="NPI *",
        max_length=40,
        error_messages={"required": "Please enter your NPI."},
        widget=forms.TextInput(attrs={"autocomplete": "off", "autofocus": True}),
    )
    registration_code = forms.CharField(
        max_length=100,
        error_messages={"required": "Please enter your registration code."},
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.fields["registration_code"].label = f"{settings.CAREGATE_REGISTRATION_CODE_LABEL} *"

    def clean_npi(self) -> str:
        value = self.cleaned_data["npi"].strip()
        if not value.isascii() or not value.replace("-", "").isalnum():
            raise forms.ValidationError("Please enter a 10-digit NPI (digits only).")
        # No format is refused here: a value that is not a valid NPI (10 digits with its
        # check digit) is taken as a payer-issued provider ID, and those may be digits
        # only, of any length. A mistyped NPI then simply does not match (see NO_MATCH).
        return value

    def clean_registration_code(self) -> str:
        return self.cleaned_data["registration_code"].strip()


def find_organization(identifier: str, code: str) -> Organization | None:
    """Return the organization the NPI (or payer ID) and registration code open, or None.

    Both branches hash the code once, so a wrong NPI and a wrong code cost the same time.
    """
    organization = Organization.objects.filter(npi=identifier).first()
    if organization is None:
        organization = Organization.objects.with_payer_id(identifier).first()
    if organization is None:
        Organization().set_registration_code(code)  # equal work for an unknown NPI
        return None
    return organization if organization.check_registration_code(code) else None


def identifier_for_audit(identifier: str) -> dict[str, str]:
    """What the audit log may keep of the typed identifier: an NPI is public (the NPPES
    registry), a payer ID is the registration code of a provider without an NPI."""
    return {"npi": identifier} if is_valid_npi(identifier) else {"identifier": "payer-id"}


def no_match_message(identifier: str) -> str:
    looks_like_npi = len(identifier) == 10 and identifier.isdigit()
    if looks_like_npi and not is_valid_npi(identifier):
        return NO_MATCH + CHECK_DIGIT_HINT.format(value=identifier)
    return NO_MATCH


@dataclass(frozen=True)
class OrganizationStage:
    key: str = "organization"
    template: str = "flows/organization.html"

    def handle(self, request: HttpRequest, state: FlowState) -> Result:
        form = OrganizationForm(request.POST if request.method == "POST" else None)
        if request.method != "POST" or not form.is_valid():
            return Render({"form": form})
        identifier = form.cleaned_data["npi"]
        address = client_ip(request)
        # Per NPI *and* address: a stranger's wrong codes cannot lock an organization out
        # of registering; the higher per-NPI ceiling still stops guessing from many places.
        # That ceiling counts only attempts this address's budgets let through (a refused
        # one checks no code): one address cannot keep the organization paused alone.
        allowed = ratelimit.hit_in_turn(
            [
                ("registration:client", address),
                # The address as the :client budgets count it (an IPv6 /64 is one).
                ("registration:npi", f"{identifier}|{ratelimit.client_network(address)}"),
            ],
            [("registration:npi-all", identifier)],
        )
        if not allowed:
            record("registration.organization", "throttled", request=request)
            form.add_error(None, TOO_MANY)
            return Render({"form": form})
        organization = find_organization(identifier, form.cleaned_data["registration_code"])
        if organization is None:
            logged = identifier_for_audit(identifier)
            record("registration.organization", "failure", request=request, **logged)
            form.add_error(None, no_match_message(identifier))
            return Render({"form": form})
        logged = identifier_for_audit(identifier)
        record("registration.organization", "success", request=request, **logged)
        # The name is shown under "Organizational Information" on the next screen (the
        # guide's "Enter User Information"): only once the NPI and code have matched.
        return Advance(
            {"organization_id": organization.pk, "organization_name": organization.name}
        )
