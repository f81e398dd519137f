"""The client's address, honouring only the configured number of trusted proxies."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """Return the address of the client that made the request.

    X-Forwarded-For is client-controlled except for the entries our own proxies append,
    so only the last CAREGATE_TRUSTED_PROXY_COUNT entries are believed.
    """
    hops = settings.CAREGATE_TRUSTED_PROXY_COUNT
    if hops > 0:
        forwarded = [
            part.strip()
            for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")
            if part.strip()
        ]
        if len(forwarded) >= hops:
            return forwarded[-hops][:45]
    return str(request.META.get("REMOTE_ADDR", ""))[:45]
