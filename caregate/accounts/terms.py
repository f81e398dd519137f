"""Terms of Use: the version in force, and who accepted which version when."""

from __future__ import annotations

from django.db.models import Exists, OuterRef
from django.utils import timezone

from caregate.accounts.models import TermsAcceptance, TermsVersion, User


def current_terms() -> TermsVersion | None:
    return TermsVersion.objects.filter(published_at__lte=timezone.now()).first()


def needs_terms(user: User) -> TermsVersion | None:
    """Return the terms the user still has to accept, or None.

    The operator's own staff are not asked: the Terms of Use are the agreement between the
    operator and its customer and provider users; staff are bound by their employment."""
    if getattr(user, "is_operator_staff", False):
        return None
    # The version in force and whether this user accepted it, in one query (every portal
    # page asks).
    accepted = TermsAcceptance.objects.filter(user=user, terms=OuterRef("pk"))
    terms = (
        TermsVersion.objects.filter(published_at__lte=timezone.now())
        .annotate(accepted=Exists(accepted))
        .first()
    )
    if terms is None or terms.accepted:
        return None
    return terms


def accept(user: User, terms: TermsVersion, client_ip: str) -> None:
    TermsAcceptance.objects.get_or_create(
        user=user,
        terms=terms,
        defaults={"accepted_at": timezone.now(), "client_ip": client_ip},
    )
