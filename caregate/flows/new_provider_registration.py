"""The guide's "Section 2 – New Provider Registration & MFA Registration" (first part).

register here → "Create a New Account - Specify Your Organization" (NPI, registration
code) → "Create a New Account - Enter User Information" → "Registration is complete"; the
emailed link (20 minutes) leads to the MFA registration (flows/mfa_registration.py).
"""

from __future__ import annotations

from django.conf import settings
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from caregate.accounts.models import Organization, User
from caregate.audit.log import record
from caregate.delivery.email import describe_seconds
from caregate.flows.engine import Flow, FlowState
from caregate.flows.registration_links import registration_error, send_registration_link
from caregate.flows.stages.organization import OrganizationStage
from caregate.flows.stages.user_info import UserInfo

NAME = "register"


def create_account(organization: Organization, info: dict) -> User | None:
    """Create the (not yet MFA-registered) user; None if the username or email was taken
    meanwhile (the form checked, but another registration may have won the race)."""
    fields = {k: v for k, v in info.items() if k != "phone"}
    user = User(
        organization=organization,
        mfa_method=User.MfaMethod.NONE,
        office_phone=info.get("phone", ""),
        **fields,
    )
    user.set_unusable_password()  # the password is created during MFA registration
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        return None
    return user


def finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    organization = Organization.objects.filter(pk=state.data.get("organization_id")).first()
    info = state.data.get("user_info") or {}
    user = create_account(organization, info) if organization is not None and info else None
    if user is None:
        record("registration.account", "failure", request=request, flow=NAME)
        return registration_error(request)
    record("registration.account", "success", request=request, user=user, flow=NAME)
    if not send_registration_link(user):
        record("registration.link-email", "failed", request=request, user=user, flow=NAME)
        return registration_error(request)
    lifetime = describe_seconds(settings.CAREGATE_REGISTRATION_LINK_SECONDS)
    return render(
        request, "flows/registration_complete.html", {"lifetime": lifetime, "email": user.email}
    )


REGISTER = Flow(
    NAME,
    title="New Provider Registration",
    stages=[OrganizationStage(), UserInfo()],
    on_done=finish,
)
