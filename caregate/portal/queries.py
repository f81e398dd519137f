"""What the home page, the case list and the message center read, scoped to the user."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from caregate.accounts.models import User
from caregate.portal.models import Case, Message

HOME_TABLE_ROWS = 50


@dataclass(frozen=True)
class Counters:
    new_messages: int
    work_in_progress: int
    not_submitted: int
    submitted: int


def cases_for(user: User) -> QuerySet[Case]:
    if user.organization_id is None:
        return Case.objects.none()
    return Case.objects.filter(organization_id=user.organization_id)


def messages_for(user: User) -> QuerySet[Message]:
    if user.organization_id is None:
        return Message.objects.none()
    return Message.objects.filter(organization_id=user.organization_id).filter(
        Q(recipient__isnull=True) | Q(recipient=user)
    )


def counters(user: User) -> Counters:
    # One aggregate query for the three case counters.
    totals = cases_for(user).aggregate(
        wip=Count("id", filter=Q(status=Case.Status.WORK_IN_PROGRESS)),
        not_submitted=Count("id", filter=Q(status=Case.Status.NOT_SUBMITTED)),
        submitted=Count("id", filter=Q(status=Case.Status.SUBMITTED)),
    )
    unread = messages_for(user).exclude(read_by=user).count()
    return Counters(unread, totals["wip"], totals["not_submitted"], totals["submitted"])


def saved_not_submitted(user: User) -> QuerySet[Case]:
    return (
        cases_for(user)
        .filter(status=Case.Status.NOT_SUBMITTED)
        .order_by("-last_modified")[:HOME_TABLE_ROWS]
    )


def search_cases(user: User, query: str) -> QuerySet[Case]:
    query = query.strip()
    if not query:
        return cases_for(user).order_by("-last_modified")
    return cases_for(user).filter(Q(case_number__iexact=query) | Q(program_number__iexact=query))
