"""Users and the organizations they belong to."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower
from django.utils.crypto import salted_hmac

from caregate.accounts.hashers import after_failed_check
from caregate.accounts.npi import is_valid_npi

_PAYER_ID_SALT = "caregate.accounts.payer_id"  # also in migration accounts 0004


def normalize_payer_id(payer_id: str) -> str:
    """Payer IDs are matched without surrounding spaces and letter case (BCBS4471)."""
    return payer_id.strip().upper()


def payer_id_hash(payer_id: str, secret: str | None = None) -> str:
    """The keyed hash an organization's payer ID is stored and looked up by.

    For a provider without an NPI the payer ID is also the registration code, and payer IDs
    are short: a plain hash would be guessed from a stolen table, an HMAC keyed by the
    secret key is not.
    """
    value = normalize_payer_id(payer_id)
    return salted_hmac(_PAYER_ID_SALT, value, secret=secret, algorithm="sha256").hexdigest()


def payer_id_hashes(payer_id: str) -> list[str]:
    """The hash under the current key and under each SECRET_KEY_FALLBACKS key, so rotating
    the key does not lose organizations created before it."""
    keys = [settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS]
    return [payer_id_hash(payer_id, secret=key) for key in keys]


def describe_identifier(identifier: str) -> str:
    """Name an NPI-or-payer-ID in a message: a valid NPI is public, a payer ID (even one
    made only of digits) is a secret and is not repeated."""
    return f"NPI {identifier}" if is_valid_npi(identifier) else "this payer ID"


class OrganizationQuerySet(models.QuerySet["Organization"]):
    def with_payer_id(self, payer_id: str) -> OrganizationQuerySet:
        return self.filter(payer_id_hash__in=payer_id_hashes(payer_id))

    def with_npi_or_payer_id(self, identifier: str) -> OrganizationQuerySet:
        hashes = payer_id_hashes(identifier)
        return self.filter(models.Q(npi=identifier) | models.Q(payer_id_hash__in=hashes))


class Organization(models.Model):
    """A provider organization (the guide's "Contract"), identified by NPI or payer ID."""

    name = models.CharField(max_length=200)
    npi = models.CharField("NPI", max_length=10, unique=True, null=True, blank=True)
    # The payer-issued provider ID (the state guide's "BCBS ID"); for an organization without
    # an NPI it is both the identifier and the registration code, so only its keyed hash
    # is kept, never the ID.
    payer_id_hash = models.CharField(max_length=64, unique=True, null=True, blank=True)
    # The registration code is a shared secret: only its password hash is kept.
    registration_code_hash = models.CharField(max_length=256)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = OrganizationQuerySet.as_manager()

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(npi__isnull=False) | models.Q(payer_id_hash__isnull=False),
                name="organization_has_npi_or_payer_id",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def set_payer_id(self, payer_id: str | None) -> None:
        self.payer_id_hash = payer_id_hash(payer_id) if payer_id else None

    def has_payer_id(self, payer_id: str) -> bool:
        return self.payer_id_hash is not None and self.payer_id_hash in payer_id_hashes(payer_id)

    def set_registration_code(self, code: str) -> None:
        self.registration_code_hash = make_password(code)

    def check_registration_code(self, code: str) -> bool:
        return check_password(code, self.registration_code_hash)


class CaregateUserManager(UserManager["User"]):
    @classmethod
    def normalize_email(cls, email: str | None) -> str:
        # Whole-address lowercase: people type their work email in any case, and two
        # accounts differing only by case would be a support trap.
        return (email or "").strip().lower()

    # Emails and usernames are unique by their lowercase form, and those expression
    # indexes (user_email_unique_ci, user_username_unique_ci) are the only ones on the
    # columns: a lookup must name the same expression, lower(col) = 'value', for the
    # index to serve it. ``email=`` or ``email__iexact=`` (UPPER(col) LIKE UPPER(...))
    # scan the whole table.
    def with_email(self, email: str | None) -> models.QuerySet[User]:
        """The account of this address, in any letter case (at most one)."""
        value = self.normalize_email(email)
        return self.alias(_email_ci=Lower("email")).filter(_email_ci=value)

    def with_username(self, username: str | None) -> models.QuerySet[User]:
        """The account of this username, in any letter case (at most one)."""
        value = (username or "").strip().lower()
        return self.alias(_username_ci=Lower("username")).filter(_username_ci=value)


class User(AbstractUser):
    """A portal user: provider/customer staff, or a provider administrator."""

    class MfaMethod(models.TextChoices):
        NONE = "none", "Not registered"
        EMAIL = "email", "Email"
        PHONE = "phone", "Phone"

    email = models.EmailField("email address", max_length=254)
    # Django's 128 characters do not hold Argon2id over an imported legacy hash (the
    # legacy setting is the Argon2 salt; see accounts.hashers): about 155 for pbkdf2_sha256.
    password = models.CharField("password", max_length=256)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.PROTECT, related_name="users"
    )
    is_org_admin = models.BooleanField("provider administrator", default=False)
    mfa_method = models.CharField(max_length=10, choices=MfaMethod, default=MfaMethod.NONE)
    # E.164 (+1NNNNNNNNNN); set when the MFA method is phone.
    phone_number = models.CharField(max_length=20, blank=True)
    mfa_registered_at = models.DateTimeField(null=True, blank=True)
    # Set when the work email was verified during MFA registration ("Having trouble
    # logging in?" serves users who got this far but did not finish).
    email_verified_at = models.DateTimeField(null=True, blank=True)
    # Contact information from "Create a New Account - Enter User Information".
    address1 = models.CharField("address 1", max_length=100, blank=True)
    address2 = models.CharField("address 2", max_length=100, blank=True)
    city = models.CharField(max_length=60, blank=True)
    state = models.CharField(max_length=2, blank=True)
    zip_code = models.CharField("ZIP code", max_length=10, blank=True)
    office_phone = models.CharField("phone", max_length=20, blank=True)
    fax = models.CharField(max_length=20, blank=True)
    # Operator staff (the login page's staff LOGIN, issue #9): the account is the identity
    # provider's subject, created and updated from its ID token at each sign-in. Staff have
    # no password here and no organization; their roles come from the token's claims.
    oidc_issuer = models.CharField(max_length=255, blank=True)
    oidc_subject = models.CharField(max_length=255, blank=True)
    staff_roles = models.JSONField(default=list, blank=True)

    objects = CaregateUserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_unique_ci"),
            # "JSmith" and "jsmith" are one person to an office: never two accounts.
            models.UniqueConstraint(Lower("username"), name="user_username_unique_ci"),
            # One account per identity-provider subject, never matched by email.
            models.UniqueConstraint(
                fields=["oidc_issuer", "oidc_subject"],
                condition=~models.Q(oidc_subject=""),
                name="user_oidc_subject_unique",
            ),
        ]
        indexes = [
            # Manage Users: an organization's users in name order, 25 a page.
            models.Index(
                fields=["organization", "last_name", "first_name", "id"], name="user_org_name"
            ),
            # Manage Users search, Lower(col) LIKE 'x%' within one organization, is served
            # on PostgreSQL by text_pattern_ops expression indexes that migration 0009
            # creates there only (an opclass is not portable, and LIKE cannot use a plain
            # index under a non-C collation, C.UTF-8 included).
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = CaregateUserManager.normalize_email(self.email)
        super().save(*args, **kwargs)

    def check_password(self, raw_password: str | None) -> bool:
        if super().check_password(raw_password):
            return True
        if raw_password is not None:
            # A wrong password costs the same on a native, an imported (wrapped legacy) and
            # an unusable hash: see caregate.accounts.hashers.
            after_failed_check(raw_password, self.password)
        return False

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.username

    @property
    def is_operator_staff(self) -> bool:
        """Signed in through the operator's identity provider (staff LOGIN)."""
        return bool(self.oidc_subject)

    def has_staff_role(self, role: str) -> bool:
        return self.is_operator_staff and role in (self.staff_roles or [])

    @property
    def usable_mfa_method(self) -> str:
        """The MFA method the user can sign in with. Phone MFA without a number on record
        (an operator cleared it) counts as not registered, so the user can register again
        instead of being sent back and forth between the login buttons."""
        if self.mfa_method == self.MfaMethod.PHONE and not self.phone_number:
            return self.MfaMethod.NONE
        return self.mfa_method


class ReservedUsername(models.Model):
    """A username held by a registration that created no account (its email already had
    one): "This username is not available" answers the same as if the account existed,
    so the username's availability does not tell whether the email was taken."""

    username = models.CharField(max_length=150)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("username"), name="reserved_username_unique_ci")
        ]

    def __str__(self) -> str:
        return self.username

    @classmethod
    def hold(cls, username: str) -> None:
        cls.objects.get_or_create(username=username.strip().lower())


def username_taken(username: str) -> bool:
    """Whether a username belongs to an account or is held by a registration."""
    value = username.strip()
    return (
        User.objects.with_username(value).exists()
        or ReservedUsername.objects.filter(username=value.lower()).exists()
    )


class SignedInSession(models.Model):
    """One signed-in session of a user: what My Account lists, and what a password reset,
    Reset Registration or "end this session" ends (security/sessions.py)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="signed_in_sessions")
    session_key = models.CharField(max_length=64, unique=True)
    method = models.CharField(max_length=40)  # how the user signed in (email, phone, ...)
    client_ip = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"session of user {self.user_id} since {self.created_at:%Y-%m-%d %H:%M}"


class TermsVersion(models.Model):
    """One version of the Terms of Use; the newest published one is in force."""

    version = models.CharField(max_length=20, unique=True)
    title = models.CharField(max_length=200, default="Terms of Use")
    text = models.TextField()
    published_at = models.DateTimeField()

    class Meta:
        ordering = ["-published_at", "-id"]

    def __str__(self) -> str:
        return f"Terms of Use {self.version}"


class TermsAcceptance(models.Model):
    """A user's acceptance of one version: who, which, when, from where."""

    user = models.ForeignKey(
        "accounts.User", on_delete=models.CASCADE, related_name="terms_acceptances"
    )
    terms = models.ForeignKey(TermsVersion, on_delete=models.PROTECT)
    accepted_at = models.DateTimeField()
    client_ip = models.CharField(max_length=45, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "terms"], name="terms_accepted_once")
        ]

    def __str__(self) -> str:
        return f"{self.user_id} accepted {self.terms_id}"
