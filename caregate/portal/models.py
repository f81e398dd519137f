"""The portal data the home page summarizes: cases and messages, per organization."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from caregate.accounts.models import Organization


class Case(models.Model):
    class Status(models.TextChoices):
        WORK_IN_PROGRESS = "wip", "Work in progress"
        NOT_SUBMITTED = "not_submitted", "Saved but not submitted"
        SUBMITTED = "submitted", "Submitted"

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="cases")
    case_number = models.CharField("Case #", max_length=30, unique=True)
    program_number = models.CharField("Program #", max_length=30, blank=True)
    contract = models.CharField(max_length=100)
    case_type = models.CharField(max_length=100)
    consumer_id = models.CharField(max_length=40)
    consumer_name = models.CharField(max_length=200)
    consumer_dob = models.DateField("date of birth", null=True, blank=True)
    status = models.CharField(max_length=20, choices=Status, default=Status.WORK_IN_PROGRESS)
    last_modified = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "status", "-last_modified"])]

    def __str__(self) -> str:
        return self.case_number


class Message(models.Model):
    """A Message Center message to one user, or to everyone in an organization."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="messages"
    )
    recipient = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE
    )
    subject = models.CharField(max_length=200)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    read_by = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="read_messages"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.subject
