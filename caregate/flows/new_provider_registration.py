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

from caregate.accounts.models import (
    CaregateUserManager,
    Organization,
    ReservedUsername,
    User,
    username_taken,
)
from caregate.audit.log import record
from caregate.delivery import tasks
from caregate.delivery.email import describe_seconds, queue_email
from caregate.flows.engine import Flow, FlowState
from caregate.flows.registration_links import registration_error, send_registration_link
from caregate.flows.stages.organization import OrganizationStage
from caregate.flows.stages.user_info import EMAIL_TAKEN, UserInfo
from caregate.verification import ratelimit

NAME = "register"
NOTICE_SUBJECT = "{portal}: someone tried to register with your email address"
NOTICE_BODY = """Hello,

Someone tried to create a new {portal} account with this email address. {taken}

If it was not you, ignore this email or call {support_phone}.
"""


def email_in_use(email: str) -> bool:
    return User.objects.with_email(email).exists()


def notify_address_in_use(email: str) -> bool:
    """Tell the holder of an address that a registration named it; False if sending failed.

    This replaces the registration link: the page the registrant sees is the same either
    way, and only the mailbox's owner learns that the address already has an account.
    """
    if not ratelimit.hit("registration-notice:destination", email):
        return True  # already told this hour; the page must not differ
    portal = settings.CAREGATE_PORTAL_NAME
    body = NOTICE_BODY.format(
        portal=portal, taken=EMAIL_TAKEN, support_phone=settings.CAREGATE_SUPPORT_PHONE
    )
    delivery = queue_email(
        email, NOTICE_SUBJECT.format(portal=portal), body, purpose="address-in-use"
    )
    return tasks.page_state(delivery) != tasks.FAILED


def create_account(organization: Organization, info: dict) -> User | None:
    """Create the (not yet MFA-registered) user; None if the username or email is taken
    (another registration may have won the race since the checks)."""
    fields = {k: v for k, v in info.items() if k != "phone"}
    user = User(
        organization=organization,
        mfa_method=User.MfaMethod.NONE,
        office_phone=info.get("phone", ""),
        **fields,
    )
    user.set_unusable_password()  # the password is created during MFA registration
    if username_taken(user.username):
        return None
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        return None
    return user


def finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    organization = Organization.objects.filter(pk=state.data.get("organization_id")).first()
    info = state.data.get("user_info") or {}
    if organization is None or not info:
        record("registration.account", "failure", request=request, flow=NAME)
        return registration_error(request)
    email = CaregateUserManager.normalize_email(info.get("email"))
    # The form does not say whether an email is taken (that would let anyone holding a
    # registration code test addresses): the account is refused here, at save, and the
    # page is the one a new account gets.
    user = None if email_in_use(email) else create_account(organization, info)
    if user is None and email_in_use(email):  # taken before, or by a concurrent registration
        record("registration.account", "email-in-use", request=request, flow=NAME)
        # Hold the username as if the account had been created: otherwise asking for it
        # in a second registration would tell whether this email had an account.
        ReservedUsername.hold(info.get("username", ""))
        if not notify_address_in_use(email):
            return registration_error(request)
        return registration_complete(request, email)
    if user is None:  # the username was taken meanwhile (the form checked it)
        record("registration.account", "failure", request=request, flow=NAME)
        return registration_error(request)
    record("registration.account", "success", request=request, user=user, flow=NAME)
    if not send_registration_link(user):
        record("registration.link-email", "failed", request=request, user=user, flow=NAME)
        return registration_error(request)
    return registration_complete(request, user.email)


def registration_complete(request: HttpRequest, email: str) -> HttpResponse:
    lifetime = describe_seconds(settings.CAREGATE_REGISTRATION_LINK_SECONDS)
    return render(
        request, "flows/registration_complete.html", {"lifetime": lifetime, "email": email}
    )


REGISTER = Flow(
    NAME,
    title="New Provider Registration",
    stages=[OrganizationStage(), UserInfo()],
    on_done=finish,
)
