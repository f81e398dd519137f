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


def number_matches(field: str, query: str) -> Q:
    """The whole number typed, or its digits without the letter prefix: "C-100202",
    "c-100202" and "100202" all find case C-100202 (people read the number off a letter or
    a phone call without the prefix). Still whole numbers only: "1002" finds nothing."""
    exact = Q(**{f"{field}__iexact": query})
    if not query.isascii() or not query.isdigit():
        return exact
    # The query is digits only, so it is safe inside the pattern as it stands.
    return exact | Q(**{f"{field}__iregex": rf"^[a-z]+[- ]?{query}$"})


def search_cases(user: User, query: str) -> QuerySet[Case]:
    query = query.strip()
    if not query:
        return cases_for(user).order_by("-last_modified")
    return (
        cases_for(user)
        .filter(number_matches("case_number", query) | number_matches("program_number", query))
        .order_by("-last_modified")
    )
