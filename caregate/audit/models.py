"""The append-only, hash-chained security event log (HIPAA: who signed in, when, how)."""

from __future__ import annotations

from typing import Any

from django.db import models


class AppendOnlyError(Exception):
    """Raised when code tries to change or delete an audit event."""


class AuditEvent(models.Model):
    """One sign-in step (or other security event), never a password or a code."""

    # The chain's own sequence number, assigned under the head lock (never a DB sequence,
    # whose gaps would look like deletions).
    id = models.BigIntegerField(primary_key=True)
    created_at = models.DateTimeField()
    event = models.CharField(max_length=64)
    outcome = models.CharField(max_length=32)
    user_id_snapshot = models.BigIntegerField(null=True, blank=True)
    username = models.CharField(max_length=150, blank=True)
    client_ip = models.CharField(max_length=45, blank=True)
    user_agent = models.CharField(max_length=512, blank=True)
    flow = models.CharField(max_length=64, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["user_id_snapshot", "created_at"])]

    def __str__(self) -> str:
        return f"#{self.pk} {self.created_at:%Y-%m-%d %H:%M:%S} {self.event} {self.outcome}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError("audit events cannot be changed")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit events cannot be deleted")


class AuditHead(models.Model):
    """The single row that holds the chain's tip; locking it serializes appends.

    It also lets the verifier notice events deleted from the end of the chain: ``mac`` is an
    HMAC (keyed by the secret key) over last id, last hash and count, so someone with only
    database access cannot move the head back to an earlier event after deleting the tail.
    """

    last_id = models.BigIntegerField(default=0)
    last_hash = models.CharField(max_length=64)
    count = models.BigIntegerField(default=0)
    mac = models.CharField(max_length=64, default="")

    def __str__(self) -> str:
        return f"audit head #{self.last_id}"
