"""Terms of Use: the version in force, and who accepted which version when."""

from __future__ import annotations

from functools import cache

from django.db import connections, models, router
from django.utils import timezone

from caregate import rowsql
from caregate.accounts.models import TermsAcceptance, TermsVersion, User


def current_terms() -> TermsVersion | None:
    return TermsVersion.objects.filter(published_at__lte=timezone.now()).first()


def needs_terms(user: User) -> TermsVersion | None:
    """Return the terms the user still has to accept, or None.

    The operator's own staff are not asked: the Terms of Use are the agreement between the
    operator and its customer and provider users; staff are bound by their employment."""
    if getattr(user, "is_operator_staff", False):
        return None
    # The version in force and whether this user accepted it, in one statement written
    # once (every portal page asks; building it through the ORM, an annotated Exists
    # subquery, cost more than running it). current_terms() is the same choice by ORM.
    connection = connections[router.db_for_read(TermsVersion)]
    now = TermsVersion._meta.get_field("published_at").get_db_prep_value(
        timezone.now(), connection
    )
    with connection.cursor() as cursor:
        cursor.execute(_needs_terms_sql(connection.vendor), [user.pk, now])
        row = cursor.fetchone()
    if row is None or row[-1]:
        return None
    return rowsql.build(TermsVersion, row[:-1])


@cache
def _needs_terms_sql(vendor: str) -> str:
    """The newest published version (Meta.ordering: -published_at, -id) and whether the
    user (first parameter) accepted it; second parameter: now."""
    quote = connections[router.db_for_read(TermsVersion)].ops.quote_name

    def col(model: type[models.Model], name: str) -> str:
        return quote(model._meta.get_field(name).column)

    names = {
        "columns": rowsql.columns_of(TermsVersion, "t"),
        "terms": quote(TermsVersion._meta.db_table),
        "accepted": quote(TermsAcceptance._meta.db_table),
        "id": col(TermsVersion, "id"),
        "published": col(TermsVersion, "published_at"),
        "of_terms": col(TermsAcceptance, "terms"),
        "of_user": col(TermsAcceptance, "user"),
    }
    # Names from the models, quoted by the backend; the values are parameters.
    return (  # noqa: S608
        "SELECT {columns}, EXISTS(SELECT 1 FROM {accepted} a"
        " WHERE a.{of_terms} = t.{id} AND a.{of_user} = %s)"
        " FROM {terms} t WHERE t.{published} <= %s"
        " ORDER BY t.{published} DESC, t.{id} DESC LIMIT 1"
    ).format(**names)


def accept(user: User, terms: TermsVersion, client_ip: str) -> None:
    TermsAcceptance.objects.get_or_create(
        user=user,
        terms=terms,
        defaults={"accepted_at": timezone.now(), "client_ip": client_ip},
    )
