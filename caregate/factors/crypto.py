"""Encryption of the authenticator-app secrets at rest (Fernet).

The key is CAREGATE_FACTOR_ENCRYPTION_KEY (a Fernet key) when the operator sets one, so
that it can live apart from SECRET_KEY; otherwise it is derived from SECRET_KEY with HKDF
(SHA-256, an info string of its own), so the key never equals a key used for anything
else. Keys derived from SECRET_KEY_FALLBACKS still decrypt, so rotating SECRET_KEY does not
lose the enrolled apps (they are re-encrypted with the new key at their next use).
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

_INFO = b"caregate.factors.authenticator-secret"


class SecretUnreadable(Exception):
    """The stored secret cannot be decrypted with any configured key."""


def _derived(secret_key: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret_key.encode()))


def _fernet() -> MultiFernet:
    # Read on every use: an operator's (or a test's) setting applies at once.
    configured = getattr(settings, "CAREGATE_FACTOR_ENCRYPTION_KEY", "")
    keys = [configured.encode()] if configured else []
    keys.append(_derived(settings.SECRET_KEY))
    keys += [_derived(old) for old in getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([Fernet(key) for key in keys])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable from exc
