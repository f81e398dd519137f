"""What the home page, the case list and the message center read, scoped to the user."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from django.db import connections, models, router
from django.db.models import Q, QuerySet

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
    """The home page's four counters in one statement: the unread messages (the user's
    own and the organization's, not marked read by this user) and the organization's
    cases by status (each count an index range on organization and status).

    Written as SQL once rather than as two ORM aggregates: the home page is every portal
    user's most frequent page, and building those two queries cost more than running
    them. tests/test_portal.py compares it with the ORM's counts."""
    if user.organization_id is None:
        return Counters(0, 0, 0, 0)
    connection = connections[router.db_for_read(Case)]
    org, me = user.organization_id, user.pk
    params = [
        *(org, Case.Status.WORK_IN_PROGRESS.value),
        *(org, Case.Status.NOT_SUBMITTED.value),
        *(org, Case.Status.SUBMITTED.value),
        *(org, me, me),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_counters_sql(connection.vendor), params)
        wip, not_submitted, submitted, unread = cursor.fetchone()
    return Counters(unread, wip, not_submitted, submitted)


@cache
def _counters_sql(vendor: str) -> str:
    """counters()'s statement for this database (names from the models, quoted by it)."""
    quote = connections[router.db_for_read(Case)].ops.quote_name
    read = Message.read_by.through

    def col(model: type[models.Model], name: str) -> str:
        return quote(model._meta.get_field(name).column)

    names = {
        "cases": quote(Case._meta.db_table),
        "messages": quote(Message._meta.db_table),
        "reads": quote(read._meta.db_table),
        "case_org": col(Case, "organization"),
        "status": col(Case, "status"),
        "msg_id": col(Message, "id"),
        "msg_org": col(Message, "organization"),
        "recipient": col(Message, "recipient"),
        "read_msg": col(read, "message"),
        "read_user": col(read, "user"),
    }
    per_status = "(SELECT COUNT(*) FROM {cases} WHERE {case_org} = %s AND {status} = %s)"
    unread = (
        "(SELECT COUNT(*) FROM {messages} m WHERE m.{msg_org} = %s"
        " AND (m.{recipient} IS NULL OR m.{recipient} = %s)"
        " AND NOT EXISTS (SELECT 1 FROM {reads} r"
        " WHERE r.{read_msg} = m.{msg_id} AND r.{read_user} = %s))"
    )
    template = f"SELECT {per_status}, {per_status}, {per_status}, {unread}"
    return template.format(**names)


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
