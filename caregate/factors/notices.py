"""What the user is told (email and Message Center) and what the audit log records when a
factor is added, removed or used. Never the secret, a code or a QR code: only what
happened, when, and what to do if it was not them."""

from __future__ import annotations

from django.http import HttpRequest
from django.utils import timezone

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.portal.notices import notify


def _when() -> str:
    return timezone.localtime().strftime("%m/%d/%Y %I:%M %p")


def authenticator_added(request: HttpRequest, user: User, flow: str) -> None:
    record(
        "factor.enrol",
        "success",
        request=request,
        user=user,
        flow=flow,
        factor="authenticator-app",
    )
    notify(
        user,
        "Authenticator app added",
        f"An authenticator app was added to your account {user.username} on {_when()}. "
        "After your password you can now enter a code from that app (Try another way).",
    )


def authenticator_removed(request: HttpRequest, user: User) -> None:
    record("factor.remove", "success", request=request, user=user, factor="authenticator-app")
    notify(
        user,
        "Authenticator app removed",
        f"The authenticator app of your account {user.username} was removed on {_when()}. "
        "Its codes no longer sign you in.",
    )


def recovery_codes_created(request: HttpRequest, user: User, flow: str, replaced: bool) -> None:
    record(
        "factor.recovery-codes",
        "replaced" if replaced else "created",
        request=request,
        user=user,
        flow=flow,
        factor="recovery-code",
    )
    text = f"New recovery codes were created for your account {user.username} on {_when()}."
    if replaced:
        text += " The recovery codes you had before no longer work."
    notify(user, "New recovery codes", text)


def recovery_code_used(user: User, left: int) -> None:
    """Tell the user a code was used (its audit event is the stage's, written with it)."""
    if left:
        rest = f"You have {left} recovery code{'s' if left != 1 else ''} left."
    else:
        rest = "You have no recovery codes left: create new ones under Setup → My Account."
    notify(
        user,
        "A recovery code was used",
        f"A recovery code was used to sign in to your account {user.username} on {_when()}. "
        f"Each code works once. {rest}",
    )
