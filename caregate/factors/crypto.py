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


def _keys() -> list[bytes]:
    """The current key first, then the ones that still decrypt. Read on every use: an
    operator's (or a test's) setting applies at once."""
    configured = getattr(settings, "CAREGATE_FACTOR_ENCRYPTION_KEY", "")
    keys = [configured.encode()] if configured else []
    keys.append(_derived(settings.SECRET_KEY))
    keys += [_derived(old) for old in getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return keys


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key) for key in _keys()])


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def needs_rotation(token: str) -> bool:
    """Whether ``token`` was encrypted with a key other than the current one (a retired
    SECRET_KEY in SECRET_KEY_FALLBACKS, or the derived key before an explicit key)."""
    try:
        Fernet(_keys()[0]).decrypt(token.encode())
    except InvalidToken:
        return True
    return False


def rotate(token: str) -> str:
    """``token`` re-encrypted with the current key (SecretUnreadable if no key reads it)."""
    try:
        return _fernet().rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable from exc


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretUnreadable from exc
