"""Users and the organizations they belong to."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.hashers import check_password, make_password
from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models
from django.db.models.functions import Lower


class Organization(models.Model):
    """A provider organization (the guide's "Contract"), identified by NPI or payer ID."""

    name = models.CharField(max_length=200)
    npi = models.CharField("NPI", max_length=10, unique=True, null=True, blank=True)
    # The payer-issued provider ID (the state guide's "BCBS ID"); for an organization without
    # an NPI it is both the identifier and the registration code.
    payer_id = models.CharField(max_length=40, unique=True, null=True, blank=True)
    # The registration code is a shared secret: only its password hash is kept.
    registration_code_hash = models.CharField(max_length=256)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(npi__isnull=False) | models.Q(payer_id__isnull=False),
                name="organization_has_npi_or_payer_id",
            )
        ]

    def __str__(self) -> str:
        return self.name

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


class User(AbstractUser):
    """A portal user: provider/customer staff, or a provider administrator."""

    class MfaMethod(models.TextChoices):
        NONE = "none", "Not registered"
        EMAIL = "email", "Email"
        PHONE = "phone", "Phone"

    email = models.EmailField("email address", max_length=254)
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

    objects = CaregateUserManager()

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="user_email_unique_ci"),
            # "JSmith" and "jsmith" are one person to an office: never two accounts.
            models.UniqueConstraint(Lower("username"), name="user_username_unique_ci"),
        ]

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.email = CaregateUserManager.normalize_email(self.email)
        super().save(*args, **kwargs)

    @property
    def display_name(self) -> str:
        return self.get_full_name() or self.username

    @property
    def usable_mfa_method(self) -> str:
        """The MFA method the user can sign in with. Phone MFA without a number on record
        (an operator cleared it) counts as not registered, so the user can register again
        instead of being sent back and forth between the login buttons."""
        if self.mfa_method == self.MfaMethod.PHONE and not self.phone_number:
            return self.MfaMethod.NONE
        return self.mfa_method


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
