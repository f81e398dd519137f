"""Flow instances: each flow's state in a row of its own, updated by compare-and-set."""

from __future__ import annotations

from django.db import models


class FlowInstance(models.Model):
    """The JSON state of one flow instance (one sign-in or registration attempt).

    The session holds only a pointer (flow name → instance id). The state lives here so
    that no request can roll it back: every write is ``UPDATE … WHERE revision = <the
    revision this request read>``, so a request that read the state before another request
    changed it writes nothing (see ``engine.Flow.save``). Guards kept in flow state (the
    stage reached, "code sent", "email verified", the call in progress) therefore cannot
    be overwritten by a slower concurrent request, whatever the session engine does.
    """

    # Random per instance (secrets.token_urlsafe): codes and calls are bound to it.
    id = models.CharField(primary_key=True, max_length=64)
    flow = models.CharField(max_length=64)
    revision = models.PositiveIntegerField(default=0)
    state = models.JSONField()
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"{self.flow} instance {self.id[:8]} (revision {self.revision})"
