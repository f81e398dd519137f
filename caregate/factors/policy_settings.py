"""Start-up checks of the factor policy's settings (pure: settings.py calls it before any
app loads). A mistyped profile or a requirement nothing can meet must stop the start, not
quietly leave administrators without the factor the deployment meant to require."""

from __future__ import annotations

from collections.abc import Sequence

PROFILES = ("standard", "aal2")
# Registered factors that are phishing-resistant (caregate/passkeys/apps.py: "passkey").
PHISHING_RESISTANT_KEYS = ("passkey",)
KNOWN_KEYS = ("email", "phone", "authenticator-app", "recovery-code", "passkey")
MAX_GRACE_DAYS = 365


def policy_problems(
    *, profile: str, allowed: Sequence[str], admins: Sequence[str], grace_days: int
) -> list[str]:
    problems: list[str] = []
    if profile not in PROFILES:
        problems.append(f"CAREGATE_FACTOR_PROFILE must be one of {', '.join(PROFILES)}")
    unknown = sorted(set(admins) - set(KNOWN_KEYS) - {"phishing-resistant"})
    if unknown:
        problems.append(f"CAREGATE_FACTORS_REQUIRED_FOR_ADMINS: unknown {', '.join(unknown)}")
    strong_allowed = any(key in allowed for key in PHISHING_RESISTANT_KEYS)
    wants_strong = profile == "aal2" or "phishing-resistant" in admins
    if wants_strong and not strong_allowed:
        problems.append(
            "the factor policy requires a phishing-resistant factor for administrators, but "
            "CAREGATE_SECOND_FACTORS allows none (add passkey)"
        )
    listed = [key for key in admins if key in KNOWN_KEYS]
    if listed and not wants_strong and not any(key in allowed for key in listed):
        problems.append(
            "CAREGATE_FACTORS_REQUIRED_FOR_ADMINS names only factors CAREGATE_SECOND_FACTORS "
            "does not allow"
        )
    if not 0 <= grace_days <= MAX_GRACE_DAYS:
        # A date past the calendar (days beyond datetime's range) would fail every
        # administrator's sign-in; a grace of years is a requirement never applied.
        problems.append(f"CAREGATE_FACTOR_GRACE_DAYS must be between 0 and {MAX_GRACE_DAYS}")
    return problems
