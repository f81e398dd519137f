"""The WebAuthn ceremonies, with py_webauthn doing the verification.

Every ceremony's challenge is a ``PasskeyChallenge`` row: issued for one user or one flow
instance, pointed at from that session only, and used up by a compare-and-set (``UPDATE
… WHERE used_at IS NULL``) before the response is verified, so a replayed response and
the second of two concurrent finishes both find it used. A failed verification uses the
challenge up too: each challenge gets one try.

Sign counters: py_webauthn would refuse a counter that did not grow, but before checking
the signature, and without saying why. Here the library is given 0 (it never refuses on
the counter then) and the counter is compared after the signature checked out: only a
genuinely signed assertion with a counter that went back (or stood still while counting)
is called a possibly cloned authenticator. The new counter is written by compare-and-set
on the old one, so two assertions that both passed cannot both count.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import parse_authentication_credential_json
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from caregate.accounts.models import User
from caregate.passkeys.models import Passkey, PasskeyChallenge, PasskeyUser

Purpose = PasskeyChallenge.Purpose
# A browser's credential JSON is a few kilobytes; anything much larger is not one.
MAX_RESPONSE_CHARS = 64 * 1024
NAME_MAX = 60


class Refused(Exception):
    """A ceremony did not verify; ``reason`` is the audit's word for why."""

    def __init__(self, reason: str, passkey: Passkey | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.passkey = passkey


# --- settings -------------------------------------------------------------------------


def rp_id() -> str:
    return settings.CAREGATE_WEBAUTHN_RP_ID


def origins() -> list[str]:
    return list(settings.CAREGATE_WEBAUTHN_ORIGINS)


def challenge_seconds() -> int:
    # Not in settings.py: long enough to find and touch a security key, short enough that
    # a challenge left on a shared PC is soon worthless.
    return int(getattr(settings, "CAREGATE_WEBAUTHN_CHALLENGE_SECONDS", 300))


def _attestation() -> AttestationConveyancePreference:
    try:
        return AttestationConveyancePreference(settings.CAREGATE_WEBAUTHN_ATTESTATION)
    except ValueError:
        return AttestationConveyancePreference.NONE


# --- encoding -------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# --- user handles and challenges ------------------------------------------------------


def user_handle(user: User) -> str:
    """The user's WebAuthn user handle (created on first enrolment)."""
    existing = PasskeyUser.objects.filter(user=user).values_list("handle", flat=True).first()
    if existing:
        return existing
    try:
        with transaction.atomic():
            return PasskeyUser.objects.create(
                user=user, handle=b64url(secrets.token_bytes(32))
            ).handle
    except IntegrityError:  # a concurrent first enrolment created it
        return PasskeyUser.objects.get(user=user).handle


def issue_challenge(
    purpose: str,
    *,
    user_id: int | None = None,
    flow_instance: str = "",
    replaces: object = None,
) -> PasskeyChallenge:
    """A new challenge for one ceremony. ``replaces``: the challenge the same page held
    before (its flow state's or session's pointer), used or not, which can no longer be
    used once the pointer moves to the new one: it goes, so a page shown again and again
    (or a refused try shown again) keeps one row, not one per view. Only that row goes,
    and only if it has this ceremony's binding: another session of the same user keeps
    its own (the attacker review of session 13: a binding-wide delete let a second
    session void the first one's Add a passkey)."""
    now = timezone.now()
    # Expired challenges are worthless: drop them as new ones are issued.
    PasskeyChallenge.objects.filter(expires_at__lt=now).delete()
    if isinstance(replaces, str) and replaces:
        PasskeyChallenge.objects.filter(
            pk=replaces, purpose=purpose, user_id=user_id, flow_instance=flow_instance
        ).delete()
    return PasskeyChallenge.objects.create(
        id=secrets.token_urlsafe(24),
        purpose=purpose,
        user_id=user_id,
        flow_instance=flow_instance,
        challenge=secrets.token_bytes(32),
        expires_at=now + timedelta(seconds=challenge_seconds()),
    )


def consume_challenge(
    challenge_id: object, purpose: str, *, user_id: int | None = None, flow_instance: str = ""
) -> bytes:
    """Use up the challenge this session was given; Refused if it is not this session's
    (user, flow instance), expired, or already used (a replay or a concurrent finish)."""
    if not isinstance(challenge_id, str) or not challenge_id:
        raise Refused("no-challenge")
    bound = PasskeyChallenge.objects.filter(
        pk=challenge_id, purpose=purpose, user_id=user_id, flow_instance=flow_instance
    )
    row = bound.first()
    if row is None:
        raise Refused("no-challenge")
    now = timezone.now()
    if row.expires_at <= now:
        raise Refused("expired-challenge")
    if not bound.filter(used_at__isnull=True).update(used_at=now):
        raise Refused("used-challenge")
    return bytes(row.challenge)


# --- registration ---------------------------------------------------------------------


def _descriptor(passkey: Passkey) -> PublicKeyCredentialDescriptor:
    transports = []
    for name in passkey.transports:
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(id=unb64url(passkey.credential_id), transports=transports)


def registration_options(user: User, challenge: bytes) -> str:
    """navigator.credentials.create()'s options, as JSON (WebAuthn level 3's form)."""
    options = generate_registration_options(
        rp_id=rp_id(),
        rp_name=settings.CAREGATE_WEBAUTHN_RP_NAME,
        user_id=unb64url(user_handle(user)),
        user_name=user.email or user.username,
        user_display_name=user.display_name or user.username,
        challenge=challenge,
        timeout=challenge_seconds() * 1000,
        attestation=_attestation(),
        # Discoverable (resident) credentials, so that LOGIN WITH PASSKEY finds the account
        # without a typed username; user verification (PIN, fingerprint) always.
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.REQUIRED,
        ),
        exclude_credentials=[_descriptor(p) for p in Passkey.objects.filter(user=user)],
    )
    return options_to_json(options)


def _parsed(response: str) -> dict[str, Any]:
    if not response or len(response) > MAX_RESPONSE_CHARS:
        raise Refused("no-response")
    try:
        value = json.loads(response)
    except ValueError as error:
        raise Refused("malformed") from error
    if not isinstance(value, dict):
        raise Refused("malformed")
    return value


def _reason(error: Exception) -> str:
    """The audit's word for a verification the library refused."""
    text = str(error).lower()
    for needle, reason in [
        ("user verification", "no-user-verification"),
        ("origin", "wrong-origin"),
        ("rp id", "wrong-rp-id"),
        ("challenge", "wrong-challenge"),
        ("signature", "bad-signature"),
        ("not present", "no-user-presence"),
    ]:
        if needle in text:
            return reason
    return "invalid"


def register(user: User, response: str, challenge: bytes, name: str) -> Passkey:
    """Verify navigator.credentials.create()'s result and store the new passkey."""
    credential = _parsed(response)
    try:
        verified = verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id(),
            expected_origin=origins(),
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise Refused(_reason(error)) from error
    transports = credential.get("response", {}).get("transports", [])
    if not isinstance(transports, list):
        transports = []
    try:
        with transaction.atomic():
            return Passkey.objects.create(
                user=user,
                name=name,
                credential_id=b64url(verified.credential_id),
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                transports=[t for t in transports if isinstance(t, str)][:8],
                aaguid=verified.aaguid,
                backed_up=verified.credential_backed_up,
            )
    except IntegrityError as error:  # the credential is already enrolled (anyone's)
        raise Refused("already-enrolled") from error


# --- authentication -------------------------------------------------------------------


def authentication_options(challenge: bytes, user: User | None = None) -> str:
    """navigator.credentials.get()'s options: the user's own passkeys (second factor), or
    none listed (LOGIN WITH PASSKEY: the browser offers its discoverable credentials)."""
    allowed = [_descriptor(p) for p in Passkey.objects.filter(user=user)] if user else []
    options = generate_authentication_options(
        rp_id=rp_id(),
        challenge=challenge,
        timeout=challenge_seconds() * 1000,
        allow_credentials=allowed,
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return options_to_json(options)


@dataclass(frozen=True)
class Assertion:
    passkey: Passkey
    user: User


# A credential id as the browser sends it: base64url, at most 1023 bytes (WebAuthn L3).
_CREDENTIAL_ID = re.compile(r"[A-Za-z0-9_-]{1,1364}")


def _find_passkey(credential: dict[str, Any], user: User | None) -> Passkey:
    """The enrolled passkey the response names: the given user's own (second factor), or,
    with no user (LOGIN WITH PASSKEY), whoever's whose user handle the response carries."""
    try:
        parsed = parse_authentication_credential_json(credential)
    except (WebAuthnException, ValueError, TypeError) as error:
        raise Refused("malformed") from error
    if not _CREDENTIAL_ID.fullmatch(parsed.id):
        # Checked before the lookup: a NUL in the id made PostgreSQL refuse the query (500).
        raise Refused("malformed")
    found = Passkey.objects.select_related("user").filter(credential_id=parsed.id).first()
    if found is None:
        raise Refused("unknown-credential")
    if user is not None:
        if found.user_id != user.pk:
            raise Refused("not-yours")
        return found
    handle = PasskeyUser.objects.filter(user_id=found.user_id).values_list("handle", flat=True)
    sent = b64url(parsed.response.user_handle) if parsed.response.user_handle else ""
    # A discoverable credential returns the handle it was created with: it must be the
    # account's, or the credential id was lifted onto another response.
    if not sent or not constant_time_compare(sent, handle.first() or ""):
        raise Refused("wrong-user-handle", found)
    return found


def authenticate(response: str, challenge: bytes, user: User | None = None) -> Assertion:
    """Verify navigator.credentials.get()'s result; count the use on the passkey."""
    credential = _parsed(response)
    passkey = _find_passkey(credential, user)
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id(),
            expected_origin=origins(),
            credential_public_key=bytes(passkey.public_key),
            credential_current_sign_count=0,  # compared below, once the signature passed
            require_user_verification=True,
        )
    except (WebAuthnException, ValueError, TypeError, KeyError) as error:
        raise Refused(_reason(error), passkey) from error
    new, old = verified.new_sign_count, passkey.sign_count
    if (new > 0 or old > 0) and new <= old:
        raise Refused("cloned-authenticator", passkey)
    counted = Passkey.objects.filter(pk=passkey.pk, sign_count=old).update(
        sign_count=new, last_used_at=timezone.now(), backed_up=verified.credential_backed_up
    )
    if not counted:  # another assertion of this passkey counted meanwhile
        raise Refused("cloned-authenticator", passkey)
    passkey.sign_count = new
    return Assertion(passkey, passkey.user)


def clean_name(raw: object) -> str:
    """A passkey's name as typed (one line, trimmed); "" if unusable."""
    if not isinstance(raw, str):
        return ""
    name = " ".join(raw.split())
    if any(unicodedata.category(char) in _UNPRINTABLE for char in name):
        return ""  # a NUL (which PostgreSQL refuses), other controls, invisible marks
    return name if 0 < len(name) <= NAME_MAX else ""


_UNPRINTABLE = {"Cc", "Cf", "Cs", "Co", "Cn"}
