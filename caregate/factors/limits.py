"""Attempt limits of the authenticator app and recovery codes (caregate.verification.ratelimit).

A TOTP code has 10^6 values and three of them are valid at a time (±1 step), so guesses
must be limited per account, not only per client address (an attacker who has the password
may spread guesses over many addresses). Recovery codes share the same per-account budget.

The per-account scope is settings.CAREGATE_RATE_LIMITS["factor-verify:account"]
(CAREGATE_FACTOR_VERIFY_LIMIT_PER_ACCOUNT, 10 per 15 minutes).
"""

from __future__ import annotations

from django.http import HttpRequest

from caregate.security.client import client_ip
from caregate.verification import ratelimit

ACCOUNT_SCOPE = "factor-verify:account"
CLIENT_SCOPE = "code-verify:client"  # the code checks' shared per-address budget
TOO_MANY = "Too many attempts. Please wait 15 minutes and try again, or try another way."


def attempt_allowed(request: HttpRequest, user_id: int) -> bool:
    """Count one code check for this account and this address; False when over a limit."""
    return ratelimit.hit_all([(ACCOUNT_SCOPE, str(user_id)), (CLIENT_SCOPE, client_ip(request))])
