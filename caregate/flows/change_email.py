"""Setup → My Account → Change email address.

The current second factor again (phone on record, or a code to the current email) → the
new work email → Send verification code → Verify code → the new address is saved, the
old and the new address are both told, remembered browsers and the other sessions end.
"""

from __future__ import annotations

from django.contrib import messages
from django.db import IntegrityError, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.utils import timezone

from caregate.accounts.models import CaregateUserManager, User
from caregate.audit.log import record
from caregate.flows.change_phone import (
    ACCOUNT_CHANGED,
    MY_ACCOUNT,
    AccountFlow,
    CurrentFactor,
    owner,
    refuse,
    save_if_unchanged,
    void_after_change,
)
from caregate.flows.engine import FlowState
from caregate.flows.stages.email_code import EmailCode
from caregate.portal.notices import mask_email, notify

NAME = "change-email"
EMAIL_TAKEN = (
    "This email address belongs to another account, so it cannot be used for yours. "
    "Please choose another address, or call the help desk."
)
NOTHING_CHANGED = "That is the email address already on record for you, so nothing was changed."


def taken(email: str, user: User) -> bool:
    return User.objects.with_email(email).exclude(pk=user.pk).exists()


def finish(request: HttpRequest, state: FlowState) -> HttpResponse:
    """Save the verified address, unless another account has it.

    Asked here, not before the code is sent (the send page is the same for every address,
    so it does not tell who has an account): the code has been verified, so the user has
    shown the mailbox is theirs and the answer tells them nothing new. The database's
    unique email is the backstop for an account that takes the address meanwhile.
    """
    user, why = owner(request, state)
    if user is None:
        return refuse(request, NAME, why)
    new_email = CaregateUserManager.normalize_email(state.data.get("verified_email", ""))
    if not new_email:
        return refuse(request, NAME, why)
    old_email = user.email
    if new_email == old_email:
        messages.info(request, NOTHING_CHANGED)
        return redirect(MY_ACCOUNT)
    if taken(new_email, user):
        record("account.email", "in-use", request=request, user=user, flow=NAME)
        messages.error(request, EMAIL_TAKEN)
        return redirect(MY_ACCOUNT)
    try:
        with transaction.atomic():
            saved = save_if_unchanged(
                user, state, email=new_email, email_verified_at=timezone.now()
            )
    except IntegrityError:
        record("account.email", "in-use", request=request, user=user, flow=NAME)
        messages.error(request, EMAIL_TAKEN)
        return redirect(MY_ACCOUNT)
    if not saved:
        return refuse(request, NAME, ACCOUNT_CHANGED)
    user.refresh_from_db()
    record("account.email", "changed", request=request, user=user, flow=NAME)
    notify(
        user,
        "New email address",
        f"The email address for your account {user.username} was changed from "
        f"{mask_email(old_email)} to {mask_email(new_email)}. Notices and email codes now "
        "go to the new address. Remembered browsers and your other sessions were ended.",
        email_to=[old_email, new_email],
    )
    signed_out = void_after_change(request, user)
    if signed_out is not None:
        return signed_out
    messages.success(request, f"Your email address is now {new_email}.")
    return redirect(MY_ACCOUNT)


CHANGE_EMAIL = AccountFlow(
    NAME,
    title="Change email address",
    stages=[
        CurrentFactor(
            purpose=NAME,
            phone_intro=(
                "To change your email address, first verify the number we have on record "
                "for you. We can send a code via SMS or phone."
            ),
            email_intro=(
                "To change your email address, first verify your current address. "
                "Please click Send button."
            ),
        ),
        EmailCode(  # the new work email → Send verification code → Verify code
            purpose=f"{NAME}:new",
            prefilled=False,
            sent_message=(
                "Verification code has been sent. Please copy it to the input box below."
            ),
            verified_message="The code has been verified. You can now continue.",
            advance_on_verify=True,
            key="new-email",
        ),
    ],
    on_done=finish,
    start_url=MY_ACCOUNT,
)
