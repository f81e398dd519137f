"""Setup → Manage Users: a provider administrator's users, and Reset Registration.

The guide's "Provider Administrator Reset Registration": the organization's users (search,
pages) → expand a user → the pencil icon → ACCOUNT INFORMATION → RESET REGISTRATION. The
administrator can also deactivate and reactivate users and grant or remove the
administrator role.

Every lookup of a user goes through ``_org_users(admin)``: an id edited in a URL or a form
that names another organization's user finds nothing (404), never that user. Every change
runs in one transaction that first locks the organization's row, so two administrators
acting at once are serialized: the second one sees the first one's change (and whether it
is still an administrator) before the last-administrator rule is checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Lower
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from caregate.accounts.models import Organization, User
from caregate.accounts.signals import registration_reset
from caregate.audit.log import record
from caregate.delivery.email import describe_seconds
from caregate.flows.registration_links import send_registration_link
from caregate.portal.decorators import org_admin_page
from caregate.portal.forms import CaseSearchForm
from caregate.portal.notices import NOT_EXPECTED, notify
from caregate.security import sessions
from caregate.verification.models import RememberedBrowser
from caregate.verification.phones import mask_phone

Note = tuple[int, str]  # a message level and text for the administrator
PER_PAGE = 25
SEARCH_MAX = 100
# Fields a list row shows: the list never loads password hashes or contact details.
LIST_FIELDS = (
    "id",
    "username",
    "email",
    "first_name",
    "last_name",
    "is_active",
    "is_org_admin",
    "mfa_method",
    "phone_number",
    "mfa_registered_at",
)


class UserSearchForm(forms.Form):
    q = forms.CharField(
        label="Search by name, username or email",
        max_length=SEARCH_MAX,
        required=False,
        error_messages={"max_length": f"A search is at most {SEARCH_MAX} characters."},
    )


class ConfirmForm(forms.Form):
    """The confirmation's POST: the user it was shown for (checked against the URL)."""

    user = forms.IntegerField(min_value=1, max_value=2**63 - 1, widget=forms.HiddenInput)


def _org_users(admin: User) -> QuerySet[User]:
    """The only way this module reaches users: those of the administrator's organization."""
    return User.objects.filter(organization_id=admin.organization_id)


def search(users: QuerySet[User], query: str) -> QuerySet[User]:
    """Case-insensitive prefix search by first or last name, username or email.

    ``Lower(col) LIKE 'x%'`` (not Django's ``istartswith``, which is ``UPPER(...)``) so the
    (organization, Lower(col)) indexes of accounts migration 0009 serve it. Two words are
    read as a full name in either order: "Daisey Duck" or "Duck, Daisey".
    """
    words = query.lower().replace(",", " ").split()
    if not words:
        return users
    users = users.alias(
        first_l=Lower("first_name"),
        last_l=Lower("last_name"),
        username_l=Lower("username"),
        email_l=Lower("email"),
    )
    if len(words) == 2:
        one, two = words
        return users.filter(
            Q(first_l__startswith=one, last_l__startswith=two)
            | Q(last_l__startswith=one, first_l__startswith=two)
        )
    term = " ".join(words)
    return users.filter(
        Q(last_l__startswith=term)
        | Q(first_l__startswith=term)
        | Q(username_l__startswith=term)
        | Q(email_l__startswith=term)
    )


LIST_ORDER = ("last_name", "first_name", "id")  # the user_org_name index's order
# Search results in case-insensitive name order. Not the list's order on purpose: with it,
# PostgreSQL walks the whole organization in user_org_name order filtering rows (34 ms for
# a name late in the alphabet among 50,000) instead of reading the few matches from the
# prefix indexes and sorting them (1 ms); see bench/manage_users.py.
SEARCH_ORDER = (Lower("last_name"), Lower("first_name"), "id")


def _page(users: QuerySet[User], number: str | None, *, searched: bool) -> Page:
    """One page of 25; a page number that is not one (text, 0, too large) gets the nearest
    real page rather than an error."""
    ordered = users.order_by(*(SEARCH_ORDER if searched else LIST_ORDER)).only(*LIST_FIELDS)
    return Paginator(ordered, PER_PAGE).get_page((number or "1")[:12])


def _shell(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    context = {"search_form": CaseSearchForm(), "active": "SETUP", **context}
    return render(request, f"portal/manage_users/{template}", context, status=status)


def describe_mfa(user: User) -> str:
    if user.usable_mfa_method == User.MfaMethod.PHONE:
        return f"Phone ({mask_phone(user.phone_number)})"
    if user.usable_mfa_method == User.MfaMethod.EMAIL:
        return "Email"
    return "Not registered"


def _target(admin: User, user_id: int) -> User:
    user = _org_users(admin).filter(pk=user_id).first()
    if user is None:
        raise Http404("No such user in your organization.")
    return user


@require_GET
@org_admin_page
def user_list(request: HttpRequest) -> HttpResponse:
    """Manage Users (N): the organization's users, 25 a page, searched by prefix."""
    admin = request.user
    form = UserSearchForm(request.GET or None)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    users = _org_users(admin)
    if form.errors:
        users = users.none()
    elif query:
        users = search(users, query)
    page = _page(users, request.GET.get("page"), searched=bool(query))
    rows = [(user, describe_mfa(user)) for user in page.object_list]
    return _shell(
        request,
        "list.html",
        {"form": form, "query": query, "page": page, "rows": rows, "total": page.paginator.count},
    )


@require_GET
@org_admin_page
def user_detail(request: HttpRequest, user_id: int) -> HttpResponse:
    """The pencil icon: the user's details with ACCOUNT INFORMATION and the actions."""
    try:
        target = _target(request.user, user_id)
    except Http404:
        _audit(request, "view", "not-found", request.user, user_id)
        raise
    actions = [
        (slug, action)
        for slug, action in ACTIONS.items()
        if action.offered(target) and not (target == request.user and slug in SELF_REFUSED)
    ]
    return _shell(
        request,
        "detail.html",
        {"target": target, "mfa": describe_mfa(target), "actions": actions},
    )


# --- the changes ------------------------------------------------------------------------

LAST_ADMIN = (
    "{name} is the last provider administrator of your organization. Make another user an "
    "administrator first."
)
SELF = "You cannot {verb} your own account here: another provider administrator can."
NOT_ADMIN = "You are no longer a provider administrator of this organization."
LINK_SENT = "They were emailed a link to register again; it works for {lifetime}."
LINK_NOT_SENT = (
    "The email with the registration link could not be sent to {name}. They can register "
    'again with "click here" on the login page, using their username and password.'
)


def _active_admins(org_id: int) -> QuerySet[User]:
    return User.objects.filter(organization_id=org_id, is_org_admin=True, is_active=True)


def _leaves_no_admin(target: User) -> bool:
    """Whether taking ``target`` out of the active administrators leaves none."""
    if not (target.is_org_admin and target.is_active):
        return False
    return not _active_admins(target.organization_id).exclude(pk=target.pk).exists()


def _void_access(target: User) -> None:
    """End every signed-in session and remembered browser of ``target``."""
    sessions.end_sessions(target)
    RememberedBrowser.objects.filter(user=target).delete()


def reset_registration(target: User, actor: str) -> Callable[[], Note]:
    """Reset ``target``'s MFA registration: clear the method, phone number and registration
    time, end every session and remembered browser; the password stays.

    Shared with the support console. Returns what to do once the change is committed: the
    notice, which names ``actor`` as the user reads it ("Your provider administrator Daisy
    Admin"), and the emailed registration link; that returns a note for whoever acted.
    """
    target.mfa_method = User.MfaMethod.NONE
    target.phone_number = ""
    target.mfa_registered_at = None
    target.save(update_fields=["mfa_method", "phone_number", "mfa_registered_at"])
    _void_access(target)
    # Every other factor too (authenticator app, recovery codes, passkeys): their apps
    # listen, so a reset leaves the account with the password alone.
    registration_reset.send(sender=User, user=target)

    def tell() -> Note:
        lifetime = describe_seconds(settings.CAREGATE_REGISTRATION_LINK_SECONDS)
        notify(
            target,
            "Your registration was reset",
            f"{actor} reset your multi-factor authentication registration on {_now()}. To "
            "sign in again, register again: follow the link we emailed you (it works for "
            f'{lifetime}), or select "click here" on the login page and sign in with your '
            "username and password.",
            ending=NOT_EXPECTED,
        )
        if send_registration_link(target):
            return messages.INFO, LINK_SENT.format(lifetime=lifetime)
        return messages.WARNING, LINK_NOT_SENT.format(name=_named(target))

    return tell


NOTICE_NOT_SENT = "The email telling {name} about it could not be sent."


def _notice(target: User, subject: str, text: str) -> Callable[[], Note | None]:
    """The security notice of an account change, sent once the change is committed; a
    note for whoever acted only if its email is already known to have failed."""

    def tell() -> Note | None:
        if notify(target, subject, text, ending=NOT_EXPECTED):
            return None
        return messages.WARNING, NOTICE_NOT_SENT.format(name=_named(target))

    return tell


def _now() -> str:
    return timezone.localtime().strftime("%m/%d/%Y %I:%M %p")


def deactivate_user(target: User, actor: str) -> Callable[[], Note | None]:
    """Deactivate ``target`` and end their access (shared with the support console).
    Returns the notice to send once committed; ``actor`` as the user reads it."""
    target.is_active = False
    target.save(update_fields=["is_active"])
    _void_access(target)
    return _notice(
        target,
        "Your account was deactivated",
        f"{actor} deactivated your {settings.CAREGATE_PORTAL_NAME} account on {_now()}. "
        "You were signed out everywhere and can no longer sign in. If you need access "
        "again, ask your provider administrator.",
    )


def reactivate_user(target: User, actor: str) -> Callable[[], Note | None]:
    target.is_active = True
    target.save(update_fields=["is_active"])
    return _notice(
        target,
        "Your account was reactivated",
        f"{actor} reactivated your {settings.CAREGATE_PORTAL_NAME} account on {_now()}. "
        "You can sign in again with your password and your multi-factor authentication.",
    )


def _by_admin(admin: User) -> str:
    return f"Your provider administrator {admin.display_name}"


def _reset(request: HttpRequest, admin: User, target: User) -> Callable[[], Note]:
    return reset_registration(target, _by_admin(admin))


def _deactivate(request: HttpRequest, admin: User, target: User) -> Callable[[], Note | None]:
    return deactivate_user(target, _by_admin(admin))


def _reactivate(request: HttpRequest, admin: User, target: User) -> Callable[[], Note | None]:
    return reactivate_user(target, _by_admin(admin))


# The administrator role's notices: (subject, what happened), completed with who and when.
_ROLE_NOTICES = {
    True: (
        "You are now a provider administrator",
        "made you a provider administrator of {org} on {when}. You can now manage your "
        "organization's users under SETUP, Manage Users.",
    ),
    False: (
        "Your provider administrator role was removed",
        "removed your provider administrator role on {when}. You keep your account but "
        "can no longer manage your organization's users.",
    ),
}


def _set_admin(value: bool) -> Callable[[HttpRequest, User, User], Callable[[], Note | None]]:
    def apply(request: HttpRequest, admin: User, target: User) -> Callable[[], Note | None]:
        target.is_org_admin = value
        target.save(update_fields=["is_org_admin"])
        subject, text = _ROLE_NOTICES[value]
        return _notice(
            target,
            subject,
            f"{_by_admin(admin)} " + text.format(org=target.organization, when=_now()),
        )

    return apply


@dataclass(frozen=True)
class Action:
    """One change an administrator can make to a user, behind a confirmation page."""

    button: str  # the guide's label on the details page and the confirmation
    question: str  # the confirmation, naming the user
    explanation: str
    done: str
    offered: Callable[[User], bool]  # whether the details page offers it for this user
    # Returns what to do once the change is committed (emails), or None; that returns a
    # note for the administrator (how the email went), or None.
    apply: Callable[[HttpRequest, User, User], Callable[[], Note | None] | None]
    refusal: Callable[[User], str] = lambda target: ""


def _needs_active(target: User) -> str:
    return "" if target.is_active else f"{target.display_name} is deactivated: reactivate first."


def _last_admin_refusal(target: User) -> str:
    return LAST_ADMIN.format(name=target.display_name) if _leaves_no_admin(target) else ""


ACTIONS: dict[str, Action] = {
    "reset-registration": Action(
        button="RESET REGISTRATION",
        question="Reset the registration of {name}?",
        explanation=(
            "This resets the user's multi-factor authentication registration: their phone "
            "number and login method are cleared, they are signed out everywhere and "
            "remembered browsers are forgotten. They keep their password, and get an email "
            "with a link to register again; they can also use the link on the login page."
        ),
        done="The registration of {name} was reset.",
        offered=lambda target: target.is_active,
        apply=_reset,
        refusal=_needs_active,
    ),
    "deactivate": Action(
        button="DEACTIVATE USER",
        question="Deactivate {name}?",
        explanation=(
            "The user is signed out everywhere, remembered browsers are forgotten, and they "
            "cannot sign in until an administrator reactivates them."
        ),
        done="{name} was deactivated.",
        offered=lambda target: target.is_active,
        apply=_deactivate,
        refusal=lambda target: (
            f"{target.display_name} is already deactivated."
            if not target.is_active
            else _last_admin_refusal(target)
        ),
    ),
    "reactivate": Action(
        button="REACTIVATE USER",
        question="Reactivate {name}?",
        explanation="The user can sign in again with their password and registration.",
        done="{name} was reactivated.",
        offered=lambda target: not target.is_active,
        apply=_reactivate,
        refusal=lambda target: (
            f"{target.display_name} is already active." if target.is_active else ""
        ),
    ),
    "make-admin": Action(
        button="MAKE ADMINISTRATOR",
        question="Make {name} a provider administrator?",
        explanation=(
            "Provider administrators can manage every user of your organization, including "
            "resetting registrations and removing other administrators."
        ),
        done="{name} is now a provider administrator.",
        offered=lambda target: target.is_active and not target.is_org_admin,
        apply=_set_admin(True),
        refusal=lambda target: (
            f"{target.display_name} is already a provider administrator."
            if target.is_org_admin
            else _needs_active(target)
        ),
    ),
    "remove-admin": Action(
        button="REMOVE ADMINISTRATOR",
        question="Remove the provider administrator role from {name}?",
        explanation="The user keeps their account but can no longer manage users.",
        done="{name} is no longer a provider administrator.",
        offered=lambda target: target.is_org_admin,
        apply=_set_admin(False),
        refusal=lambda target: (
            f"{target.display_name} is not a provider administrator."
            if not target.is_org_admin
            else _last_admin_refusal(target)
        ),
    ),
}
# Decided: an administrator cannot deactivate or reset their own account (it would sign
# them out in the middle of the change, and a deactivated last administrator could never
# be brought back from the portal); another administrator does it. Removing one's own
# administrator role is allowed while another active administrator remains.
SELF_REFUSED = {"reset-registration": "reset", "deactivate": "deactivate"}


def _named(user: User) -> str:
    return f"{user.display_name} ({user.username})"


def refusal_for(slug: str, admin: User, target: User) -> str:
    """Why ``admin`` may not do ``slug`` to ``target`` now, or ""."""
    if target.pk == admin.pk and slug in SELF_REFUSED:
        return SELF.format(verb=SELF_REFUSED[slug])
    return ACTIONS[slug].refusal(target)


def _audit(request: HttpRequest, slug: str, outcome: str, admin: User, target_id: int) -> None:
    record(
        f"manage-users.{slug}",
        outcome,
        request=request,
        user=admin,
        target_user_id=target_id,
        organization_id=admin.organization_id,
    )


def _apply(request: HttpRequest, slug: str, user_id: int) -> tuple[User | None, str, Note | None]:
    """Make the change under the organization's lock; (target, refusal, note)."""
    action = ACTIONS[slug]
    with transaction.atomic():
        # The lock every change in this organization takes first: concurrent changes by two
        # administrators run one after the other, each seeing the other's result.
        Organization.objects.select_for_update().get(pk=request.user.organization_id)
        admin = User.objects.get(pk=request.user.pk)  # re-read under the lock
        if not (admin.is_active and admin.is_org_admin):
            return None, NOT_ADMIN, None
        target = _org_users(admin).select_for_update().filter(pk=user_id).first()
        if target is None:
            raise Http404("No such user in your organization.")
        refusal = refusal_for(slug, admin, target)
        if refusal:
            return target, refusal, None
        after = action.apply(request, admin, target)
        record(
            f"manage-users.{slug}",
            "success",
            request=request,
            user=target,
            admin_id=admin.pk,
            admin_username=admin.username,
            organization_id=admin.organization_id,
        )
    # Emails go once the change is committed (never for a change that rolled back), and
    # outside the lock: a slow mail server must not hold up the organization's changes.
    return target, "", after() if after is not None else None


@require_http_methods(["GET", "POST"])
@org_admin_page
def confirm_action(request: HttpRequest, user_id: int, action: str) -> HttpResponse:
    """The confirmation page naming the user (GET) and the change itself (POST)."""
    admin = request.user
    if action not in ACTIONS:
        raise Http404("No such action.")
    spec = ACTIONS[action]
    if request.method == "POST":
        form = ConfirmForm(request.POST)
        if not form.is_valid() or form.cleaned_data["user"] != user_id:
            # The form names another user than the address: never act on either.
            _audit(request, action, "form-mismatch", admin, user_id)
            raise Http404("The confirmation does not match this user.")
        try:
            target, refusal, note = _apply(request, action, user_id)
        except Http404:
            _audit(request, action, "not-found", admin, user_id)
            raise
        if target is None:
            _audit(request, action, "not-admin", admin, user_id)
            messages.error(request, refusal)
            return redirect("portal:home")
        if refusal:
            _audit(request, action, "refused", admin, user_id)
            messages.error(request, refusal)
            return redirect("portal:manage-user", user_id=user_id)
        messages.success(request, spec.done.format(name=_named(target)))
        if note is not None:
            messages.add_message(request, *note)
        if target.pk == admin.pk and action == "remove-admin":
            return redirect("portal:home")  # no longer allowed on these pages
        return redirect("portal:manage-user", user_id=user_id)
    try:
        target = _target(admin, user_id)
    except Http404:
        _audit(request, action, "not-found", admin, user_id)
        raise
    return _shell(
        request,
        "confirm.html",
        {
            "target": target,
            "name": _named(target),
            "action": spec,
            "slug": action,
            "question": spec.question.format(name=_named(target)),
            "refusal": refusal_for(action, admin, target),
            "form": ConfirmForm(initial={"user": target.pk}),
        },
    )
