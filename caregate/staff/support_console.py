"""The support console: the operator's support team finds any portal user and helps them.

Operator staff whose roles include support (staff LOGIN; roles come from the identity
provider's groups, see ``caregate/staff/roles.py``) get SUPPORT in the portal menu: a search
of every user by name, username, email or their organization's NPI; a user's details
(registration state, signed-in sessions, their last audit events); and Reset Registration,
deactivate and reactivate, each behind a confirmation naming the user that asks for a
reason, each an audit event naming the staff member and the reason.

Every lookup here is across organizations BY DESIGN: the support team serves every provider.
Manage Users (``portal/manage_users.py``) confines a provider administrator to their own
organization; here nothing is scoped to an organization, and what confines the console is
the role. ``support_page`` lets only support staff in; everyone else, provider
administrators included, gets the same 403 on every address under ``/support/`` whatever
the id, so the console tells them nothing about which users exist.

``request.user`` is read from the database on every request, and every change re-reads the
acting staff member inside its transaction: a staff member whose support role is removed
in the database, or who is deactivated, loses the console at their next request. The roles
themselves are refreshed only at staff sign-in (they come from the ID token's groups), so a
group removed at the identity provider takes effect at the next staff sign-in; until then
the session's idle and absolute lifetimes bound it.

Staff accounts are never changed here, the console user's own included: they come from the
identity provider and are changed there.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from unicodedata import category

from django import forms
from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db import transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.audit.models import AuditEvent
from caregate.portal.decorators import View, portal_page
from caregate.portal.manage_users import ACTIONS as MANAGE_USERS_ACTIONS
from caregate.portal.manage_users import (
    LIST_FIELDS,
    PER_PAGE,
    SEARCH_MAX,
    SEARCH_ORDER,
    ConfirmForm,
    Note,
    deactivate_user,
    describe_mfa,
    reactivate_user,
    reset_registration,
    search,
)
from caregate.security import sessions
from caregate.staff.roles import ROLES, SUPPORT

RECENT_EVENTS = 20
REASON_MIN, REASON_MAX = 10, 500
NOT_SUPPORT = "You no longer have the support role."


def support_page(view: View) -> View:
    """A portal page for operator staff with the support role only; 403 for anyone else."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not request.user.has_staff_role(SUPPORT):
            return _denied(request)
        return view(request, *args, **kwargs)

    return portal_page(wrapper)


def _denied(request: HttpRequest) -> HttpResponse:
    return render(request, "staff/denied.html", status=403)


def _shell(request: HttpRequest, template: str, context: dict, status: int = 200) -> HttpResponse:
    return render(request, f"staff/{template}", {"active": "SUPPORT", **context}, status=status)


def _named(user: User) -> str:
    return f"{user.display_name} ({user.username})"


def registration_state(user: User) -> str:
    """The registration as Manage Users describes it; staff have the identity provider's."""
    if user.is_operator_staff:
        return "Staff single sign-on"
    return describe_mfa(user)


# --- search -------------------------------------------------------------------------------


class SupportSearchForm(forms.Form):
    q = forms.CharField(
        label="Name, username, email or NPI",
        max_length=SEARCH_MAX,
        required=False,
        error_messages={"max_length": f"A search is at most {SEARCH_MAX} characters."},
    )


def _is_npi_query(query: str) -> bool:
    return len(query) == 10 and query.isascii() and query.isdigit()


def find_users(query: str) -> QuerySet[User]:
    """Every user, of any organization, whose first or last name, full name, username or
    email starts with ``query`` (Manage Users' search, without its organization); ten
    digits also find the users of the organization with that NPI."""
    everyone = User.objects.all()
    found = search(everyone, query)
    if _is_npi_query(query):
        found = found | everyone.filter(organization__npi=query)
    return found


def _page(users: QuerySet[User], number: str | None) -> Page:
    # What a row shows, as in Manage Users: never the password hash or contact details.
    fields = (*LIST_FIELDS, "oidc_subject", "organization__name", "organization__npi")
    ordered = users.select_related("organization").only(*fields).order_by(*SEARCH_ORDER)
    return Paginator(ordered, PER_PAGE).get_page((number or "1")[:12])


def _who(staff: User) -> dict[str, object]:
    """How every support audit event names the staff member."""
    return {"staff_id": staff.pk, "staff_username": staff.username, "staff_email": staff.email}


@require_GET
@support_page
def search_page(request: HttpRequest) -> HttpResponse:
    """SUPPORT: find a user of any organization. Nothing is listed before a search."""
    form = SupportSearchForm(request.GET or None)
    query = form.cleaned_data["q"] if form.is_valid() else ""
    page = None
    rows: list[tuple[User, str]] = []
    if query:
        page = _page(find_users(query), request.GET.get("page"))
        rows = [(user, registration_state(user)) for user in page.object_list]
        # Who looked whom up across organizations is itself worth keeping.
        record(
            "support.search",
            "success",
            request=request,
            user=request.user,
            query=query,
            found=page.paginator.count,
        )
    context = {"form": form, "query": query, "npi_query": _is_npi_query(query)}
    return _shell(request, "search.html", {**context, "page": page, "rows": rows})


# --- a user's details ---------------------------------------------------------------------


def recent_events(user: User) -> QuerySet[AuditEvent]:
    """The user's last audit events, newest first: only what the table shows (never the
    event's detail, which may name other people or carry what a caller passed)."""
    return (
        AuditEvent.objects.filter(user_id_snapshot=user.pk)
        .order_by("-id")
        .only("id", "created_at", "event", "outcome", "client_ip")[:RECENT_EVENTS]
    )


def _target(user_id: int) -> User:
    target = User.objects.select_related("organization").filter(pk=user_id).first()
    if target is None:
        raise Http404("No such user.")
    return target


@require_GET
@support_page
def user_detail(request: HttpRequest, user_id: int) -> HttpResponse:
    """A user's account, registration, sessions and recent events, with the actions."""
    try:
        target = _target(user_id)
    except Http404:
        _audit(request, "view", "not-found", request.user, user_id)
        raise
    record("support.view", "success", request=request, user=request.user, target_user_id=user_id)
    actions = [(slug, action) for slug, action in ACTIONS.items() if not action.refusal(target)]
    return _shell(
        request,
        "detail.html",
        {
            "target": target,
            "name": _named(target),
            "registration": registration_state(target),
            "roles": [ROLES.get(role, role) for role in target.staff_roles or []],
            # Counting forgets the rows of sessions that already ended (My Account's way).
            "session_count": len(sessions.active_sessions(target)),
            "events": recent_events(target),
            "actions": actions,
            "refusal": _staff_refusal(target),
        },
    )


# --- the changes --------------------------------------------------------------------------

STAFF_ACCOUNT = (
    "{name} is an operator staff account. Staff accounts come from the identity provider: "
    "change them there, not in the support console."
)


class ReasonForm(ConfirmForm):
    """The confirmation's POST: the user it was shown for, and why."""

    reason = forms.CharField(
        label="Reason",
        min_length=REASON_MIN,
        max_length=REASON_MAX,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        error_messages={
            "required": "Please give the reason for this change.",
            "min_length": f"A reason is at least {REASON_MIN} characters.",
            "max_length": f"A reason is at most {REASON_MAX} characters.",
        },
    )

    def clean_reason(self) -> str:
        # Invisible characters (zero-width spaces, direction marks) are not a reason: the
        # audit log must say why, in letters a reviewer can read.
        visible = "".join(ch for ch in self.cleaned_data["reason"] if category(ch) != "Cf")
        visible = " ".join(visible.split())
        if len(visible) < REASON_MIN:
            raise forms.ValidationError(f"A reason is at least {REASON_MIN} characters.")
        return visible


def _staff_refusal(target: User) -> str:
    return STAFF_ACCOUNT.format(name=_named(target)) if target.is_operator_staff else ""


@dataclass(frozen=True)
class SupportAction:
    """One change the support team can make to a user, behind a confirmation page."""

    button: str
    question: str  # the confirmation, naming the user
    explanation: str
    done: str
    # Makes the change (staff, target); returns what to do once it is committed, or None.
    apply: Callable[[User, User], Callable[[], Note | None] | None]
    state_refusal: Callable[[User], str]  # why the target's state does not allow it, or ""

    def refusal(self, target: User) -> str:
        return _staff_refusal(target) or self.state_refusal(target)


def _by_support(staff: User) -> str:
    return f"Our support team ({staff.display_name})"


def _reset(staff: User, target: User) -> Callable[[], Note]:
    return reset_registration(target, _by_support(staff))


def _worded_as_in_manage_users(
    slug: str,
    apply: Callable[[User, User], Callable[[], Note | None] | None],
    *,
    explanation: str = "",
    state_refusal: Callable[[User], str] | None = None,
) -> SupportAction:
    """A support action with Manage Users' labels and questions (the guide's words), and
    its refusals except where support may do more."""
    wording = MANAGE_USERS_ACTIONS[slug]
    return SupportAction(
        button=wording.button,
        question=wording.question,
        explanation=explanation or wording.explanation,
        done=wording.done,
        apply=apply,
        state_refusal=state_refusal or wording.refusal,
    )


ACTIONS: dict[str, SupportAction] = {
    "reset-registration": _worded_as_in_manage_users("reset-registration", _reset),
    "deactivate": _worded_as_in_manage_users(
        "deactivate",
        lambda staff, target: deactivate_user(target, _by_support(staff)),
        explanation=(
            "The user is signed out everywhere, remembered browsers are forgotten, and they "
            "cannot sign in until they are reactivated."
        ),
        # Not Manage Users' refusal: support may deactivate a last administrator.
        state_refusal=lambda target: (
            f"{target.display_name} is already deactivated." if not target.is_active else ""
        ),
    ),
    "reactivate": _worded_as_in_manage_users(
        "reactivate", lambda staff, target: reactivate_user(target, _by_support(staff))
    ),
}


def last_admin_warning(slug: str, target: User) -> str:
    """Support may deactivate an organization's last active provider administrator (they
    are the operator), but is told what it means first."""
    if slug != "deactivate" or not (target.is_org_admin and target.is_active):
        return ""
    others = User.objects.filter(
        organization_id=target.organization_id, is_org_admin=True, is_active=True
    ).exclude(pk=target.pk)
    if others.exists():
        return ""
    return (
        f"{_named(target)} is the last active provider administrator of "
        f"{target.organization}. Until they are reactivated, nobody there can manage its "
        "users: every Reset Registration will come to the support team."
    )


def _audit(
    request: HttpRequest,
    slug: str,
    outcome: str,
    staff: User,
    target_id: int,
    *,
    target: User | None = None,
    reason: str = "",
) -> None:
    detail: dict[str, object] = {"target_user_id": target_id, **_who(staff)}
    if reason:
        detail["reason"] = reason
    if target is not None:
        detail["organization_id"] = target.organization_id
    record(f"support.{slug}", outcome, request=request, user=target, **detail)


@dataclass(frozen=True)
class Result:
    outcome: str  # success | refused | not-support
    target: User | None = None
    refusal: str = ""
    note: Note | None = None


def _apply(request: HttpRequest, slug: str, user_id: int, reason: str) -> Result:
    """Make the change with the target's row locked; raise Http404 for no such user."""
    action = ACTIONS[slug]
    with transaction.atomic():
        # Re-read: the role or the account may have gone since the page was shown, or
        # since this request passed the decorator.
        staff = User.objects.filter(pk=request.user.pk).first()
        if staff is None or not staff.is_active or not staff.has_staff_role(SUPPORT):
            return Result("not-support", refusal=NOT_SUPPORT)
        # The lock serializes two changes of one user (two support staff, or support and
        # the organization's administrator): the second sees the first one's result.
        target = User.objects.select_for_update().filter(pk=user_id).first()
        if target is None:
            raise Http404("No such user.")
        refusal = action.refusal(target)
        if refusal:
            _audit(request, slug, "refused", staff, user_id, target=target, reason=reason)
            return Result("refused", target, refusal)
        after = action.apply(staff, target)
        _audit(request, slug, "success", staff, user_id, target=target, reason=reason)
    # The emails go once the change is committed, and outside the lock.
    return Result("success", target, note=after() if after is not None else None)


def _confirmation(
    request: HttpRequest, slug: str, target: User, form: ReasonForm, status: int = 200
) -> HttpResponse:
    spec = ACTIONS[slug]
    return _shell(
        request,
        "confirm.html",
        {
            "target": target,
            "action": spec,
            "slug": slug,
            "question": spec.question.format(name=_named(target)),
            "refusal": spec.refusal(target),
            "warning": last_admin_warning(slug, target),
            "form": form,
        },
        status=status,
    )


@require_http_methods(["GET", "POST"])
@support_page
def confirm_action(request: HttpRequest, user_id: int, action: str) -> HttpResponse:
    """The confirmation naming the user, with the Reason box (GET), and the change (POST)."""
    if action not in ACTIONS:
        raise Http404("No such action.")
    if request.method == "GET":
        try:
            target = _target(user_id)
        except Http404:
            _audit(request, action, "not-found", request.user, user_id)
            raise
        return _confirmation(request, action, target, ReasonForm(initial={"user": target.pk}))
    return _post_action(request, action, user_id)


def _post_action(request: HttpRequest, slug: str, user_id: int) -> HttpResponse:
    form = ReasonForm(request.POST)
    form.is_valid()
    if "user" in form.errors or form.cleaned_data.get("user") != user_id:
        # The form names another user than the address: never act on either.
        _audit(request, slug, "form-mismatch", request.user, user_id)
        raise Http404("The confirmation does not match this user.")
    if form.errors:  # the reason: shown again with the error, nothing changed
        try:
            target = _target(user_id)
        except Http404:
            _audit(request, slug, "not-found", request.user, user_id)
            raise
        return _confirmation(request, slug, target, form)
    reason = form.cleaned_data["reason"]
    try:
        result = _apply(request, slug, user_id, reason)
    except Http404:
        _audit(request, slug, "not-found", request.user, user_id, reason=reason)
        raise
    if result.outcome == "not-support":
        _audit(request, slug, "not-support", request.user, user_id, reason=reason)
        return _denied(request)
    if result.outcome == "refused":
        messages.error(request, result.refusal)
    else:
        messages.success(request, ACTIONS[slug].done.format(name=_named(result.target)))
        if result.note is not None:
            messages.add_message(request, *result.note)
    return redirect("staff:support-user", user_id=user_id)
