"""The deployment's factor policy (issue #11): which second factors count, and which an
organization administrator must have.

Settings (caregate/settings.py, "stronger factors"):

- ``CAREGATE_SECOND_FACTORS``: the factors the deployment allows at all.
- ``CAREGATE_FACTOR_PROFILE``: "standard", or "aal2" (NIST SP 800-63B rev. 4): email is no
  longer a second factor (LOGIN WITH EMAIL users verify with another enrolled factor through
  "Try another way"), administrators must have a phishing-resistant factor (a passkey), and
  staff must come from the identity provider with a phishing-resistant method in ``amr``.
- ``CAREGATE_FACTORS_REQUIRED_FOR_ADMINS``: factor keys, any one of which an administrator
  must have enrolled, or "phishing-resistant" (every registered phishing-resistant factor);
  empty: none. Under "aal2" only the phishing-resistant keys of the list count, and an empty
  list (or one without such keys) means "phishing-resistant".
- ``CAREGATE_FACTOR_GRACE_DAYS``: the days, counted per user from the first sign-in at which
  the requirement applied to them, during which the sign-in ends at an "add a passkey now"
  page with "Remind me later". After them the sign-in ends at the enrolment page, and every
  portal page (caregate/portal/decorators.py) sends the administrator back to it until a
  required factor is enrolled: signing in is the only way to enrol, so the session is let in
  for that and nothing else.
- ``CAREGATE_STAFF_REQUIRED_AMR``: ``amr`` values (RFC 8176 and the OpenID registry), any one
  of which a staff ID token must carry; empty: none, except under "aal2", where it is
  ``PHISHING_RESISTANT_AMR``.

Every check is made from fields already loaded (``is_org_admin``) and settings first, so
the policy costs no query for a user it does not apply to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from caregate.accounts.models import User
from caregate.audit.log import record
from caregate.factors import registry
from caregate.factors.policy_models import FactorPolicyGrace
from caregate.factors.registry import SecondFactor

STANDARD = "standard"
AAL2 = "aal2"
PHISHING_RESISTANT = "phishing-resistant"
# Under "aal2" not a second factor: an emailed code is not an out-of-band authenticator.
NOT_UNDER_AAL2 = frozenset({"email"})
# RFC 8176 "hwk" (proof of possession of a hardware-protected key: security keys, smart
# cards) and the OpenID registry's "phr" / "phrh" (phishing-resistant, hardware-protected).
# "swk" is left out: a software key is not necessarily bound to the site it signs for.
PHISHING_RESISTANT_AMR = ("phr", "phrh", "hwk")

# The pages an administrator past the grace period may still open, by factor: the portal
# stays closed except for enrolling a required factor (and this module's own pages).
ENROLMENT_VIEWS = {
    # start-add: the current-factor step before the add page (caregate/passkeys/flows.py).
    "passkey": ("passkeys:list", "passkeys:add", "passkeys:start-add"),
    "authenticator-app": ("factors:add-app",),
}
POLICY_VIEWS = ("factors:policy-required", "factors:policy-prompt", "factors:recovery-offer")
# The My Account flows (their stages are served by the flow view, not a portal page) that
# enrol a required factor; every other one is closed too (caregate/flows/views.py).
ENROLMENT_FLOWS = {"passkey": ("add-passkey",), "authenticator-app": ("add-authenticator",)}

# The one line each enrolment page shows (templates: factors/_why_passkey.html).
WHY_PASSKEY = (
    "A passkey is safer than a text message: it works only on this website, so a fake site "
    "cannot trick you into handing it over, and there is no code to type, intercept, or have "
    "redirected to another phone by a SIM swap."
)


def profile() -> str:
    value = getattr(settings, "CAREGATE_FACTOR_PROFILE", STANDARD)
    if value not in (STANDARD, AAL2):  # settings.py refuses to start with it too
        raise ImproperlyConfigured(f"unknown CAREGATE_FACTOR_PROFILE {value!r}")
    return value


def allowed(key: str) -> bool:
    """Whether ``key`` counts as a second factor here: allowed by the deployment, and not
    turned off by the profile."""
    return registry.allowed(key) and not (profile() == AAL2 and key in NOT_UNDER_AAL2)


def usable(key: str) -> SecondFactor | None:
    factor = registry.get(key)
    return factor if factor is not None and allowed(key) else None


def _phishing_resistant_keys() -> set[str]:
    return {f.key for f in registry.registered() if f.phishing_resistant}


def admin_requirement() -> frozenset[str]:
    """The factor keys any one of which an administrator must have; empty: none."""
    listed = set(getattr(settings, "CAREGATE_FACTORS_REQUIRED_FOR_ADMINS", []) or [])
    strong = _phishing_resistant_keys()
    if PHISHING_RESISTANT in listed:
        listed = (listed - {PHISHING_RESISTANT}) | strong
    if profile() == AAL2:
        listed = (listed & strong) or strong
    return frozenset(key for key in listed if allowed(key) and registry.get(key) is not None)


def requirement_for(user: User) -> frozenset[str]:
    """What ``user`` must have enrolled (no query): administrators of an organization only;
    staff factors are their identity provider's (``staff_amr_allowed``)."""
    if not user.is_org_admin or user.is_operator_staff:
        return frozenset()
    return admin_requirement()


def satisfied(user: User, required: Iterable[str]) -> bool:
    """Whether the user has enrolled one of the required factors (a query per factor)."""
    factors = (registry.get(key) for key in sorted(required))
    return any(factor is not None and factor.enrolled(user) for factor in factors)


@dataclass(frozen=True)
class Standing:
    """An administrator who lacks a required factor: until when they may put it off."""

    required: frozenset[str]
    deadline: datetime

    @property
    def overdue(self) -> bool:
        return timezone.now() >= self.deadline

    @property
    def passkey(self) -> bool:
        return "passkey" in self.required

    @property
    def authenticator_app(self) -> bool:
        return "authenticator-app" in self.required


def grace_days() -> int:
    return max(0, int(getattr(settings, "CAREGATE_FACTOR_GRACE_DAYS", 14)))


def _grace_start(user: User, *, begin: bool) -> datetime | None:
    """When the user's grace period began; ``begin``: start it now if it has not."""
    found = FactorPolicyGrace.objects.filter(user=user).values_list("started_at", flat=True)
    started = found.first()
    if started is not None or not begin:
        return started
    now = timezone.now()
    try:
        with transaction.atomic():
            FactorPolicyGrace.objects.create(user=user, started_at=now)
    except IntegrityError:  # two sign-ins at once: the other one started it
        return FactorPolicyGrace.objects.get(user=user).started_at
    return now


def standing(user: User, *, begin: bool = False) -> Standing | None:
    """None if the policy asks nothing of ``user`` (no query for a user it does not apply
    to), else their requirement and deadline. Not begun yet (``begin`` False: a portal page,
    not a sign-in): the deadline is a full grace period from now."""
    required = requirement_for(user)
    if not required or satisfied(user, required):
        return None
    started = _grace_start(user, begin=begin) or timezone.now()
    return Standing(required, started + timedelta(days=grace_days()))


# --- the sign-in and the portal's pages -------------------------------------------------


def after_sign_in(request: HttpRequest, user: User) -> str | None:
    """Where a finished sign-in goes instead of the home page: the "add one now" prompt in
    the grace period, the enrolment page after it. None: the home page."""
    found = standing(user, begin=True)
    if found is None:
        return None
    deadline = found.deadline.isoformat()
    if found.overdue:
        record("factor-policy.signin", "enrol-required", request=request, user=user,
               required=sorted(found.required), deadline=deadline)  # fmt: skip
        return reverse("factors:policy-required")
    record("factor-policy.signin", "grace-prompt", request=request, user=user,
           required=sorted(found.required), deadline=deadline)  # fmt: skip
    return reverse("factors:policy-prompt")


def open_views(required: Iterable[str]) -> set[str]:
    return {name for key in required for name in ENROLMENT_VIEWS.get(key, ())} | set(POLICY_VIEWS)


def closed(request: HttpRequest, *, flow: str = "") -> bool:
    """Whether this portal page (or, with ``flow``, this My Account flow's stage) is closed
    to the signed-in user: an administrator past the grace period without a required
    factor, on any page but enrolling one."""
    user = request.user
    if not user.is_authenticated or not requirement_for(user):
        return False
    found = standing(user)
    if found is None or not found.overdue:
        return False
    if flow:
        if any(flow in ENROLMENT_FLOWS.get(key, ()) for key in found.required):
            return False
    else:
        match = request.resolver_match
        if match is not None and match.view_name in open_views(found.required):
            return False
    record("factor-policy.page", "refused", request=request, user=user, path=request.path[:200])
    return True


def keeps_requirement(user: User, *, removing: str) -> bool:
    """Whether ``user`` may remove one of their ``removing`` factors without falling under
    the requirement. Call inside a transaction that holds the user's row lock; returns
    True when the policy asks nothing of the user."""
    required = requirement_for(user)
    if removing not in required:
        return True
    others = [key for key in required if key != removing]
    if satisfied(user, others):
        return True
    from caregate.passkeys.models import Passkey  # noqa: PLC0415 (only passkeys count twice)

    return removing == "passkey" and Passkey.objects.filter(user=user).count() > 1


# --- staff (the ID token's amr) ---------------------------------------------------------


def staff_required_amr() -> frozenset[str]:
    """The ``amr`` values any one of which a staff ID token must carry. Under aal2 only
    phishing-resistant ones count: a configured list can narrow them, never widen them
    (as the administrators' list keeps only phishing-resistant keys under aal2)."""
    listed = frozenset(getattr(settings, "CAREGATE_STAFF_REQUIRED_AMR", []) or [])
    if profile() == AAL2:
        strong = frozenset(PHISHING_RESISTANT_AMR)
        return (listed & strong) or strong
    return listed


def staff_amr_allowed(amr: Iterable[str]) -> bool:
    required = staff_required_amr()
    return not required or bool(required & set(amr))
