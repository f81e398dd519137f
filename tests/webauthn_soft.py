"""A software authenticator for the test-client tests: real WebAuthn data, made here.

It makes an EC P-256 credential, builds authenticatorData, a "none" attestationObject and
clientDataJSON as a browser and an authenticator would, and signs assertions, so that
the server's real verification (py_webauthn) runs on every response. Each knob a test
attacks (origin, rp id, flags, counter, challenge, user handle) can be set per call.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

ORIGIN = "http://localhost:8000"
RP_ID = "localhost"
UP, UV, AT = 0x01, 0x04, 0x40  # flags: user present, user verified, attested data


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def challenge_of(options: dict[str, Any]) -> bytes:
    return unb64url(options["challenge"])


@dataclass
class SoftAuthenticator:
    """One credential on one (software) device."""

    user_handle: bytes = b""
    sign_count: int = 0
    credential_id: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def id(self) -> str:
        return b64url(self.credential_id)

    def cose_key(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor2.dumps(
            {
                1: 2,  # kty: EC2
                3: -7,  # alg: ES256
                -1: 1,  # crv: P-256
                -2: numbers.x.to_bytes(32, "big"),
                -3: numbers.y.to_bytes(32, "big"),
            }
        )

    def _auth_data(self, rp_id: str, flags: int, counter: int, attested: bool) -> bytes:
        data = (
            hashlib.sha256(rp_id.encode()).digest() + bytes([flags]) + struct.pack(">I", counter)
        )
        if attested:
            aaguid = bytes(16)
            data += aaguid + struct.pack(">H", len(self.credential_id)) + self.credential_id
            data += self.cose_key()
        return data

    @staticmethod
    def _client_data(kind: str, challenge: bytes, origin: str) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": b64url(challenge), "origin": origin, "crossOrigin": False}
        ).encode()

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str = ORIGIN,
        rp_id: str | None = None,
        flags: int = UP | UV | AT,
        challenge: bytes | None = None,
    ) -> str:
        """navigator.credentials.create()'s result, as the JSON the page posts."""
        self.user_handle = unb64url(options["user"]["id"])
        auth_data = self._auth_data(rp_id or options["rp"]["id"], flags, self.sign_count, True)
        attestation = cbor2.dumps({"fmt": "none", "attStmt": {}, "authData": auth_data})
        client_data = self._client_data(
            "webauthn.create", challenge or challenge_of(options), origin
        )
        return json.dumps(
            {
                "id": self.id,
                "rawId": self.id,
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "attestationObject": b64url(attestation),
                    "transports": ["internal"],
                },
                "clientExtensionResults": {},
                "authenticatorAttachment": "platform",
            }
        )

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str = ORIGIN,
        rp_id: str | None = None,
        flags: int = UP | UV,
        counter: int | None = None,
        challenge: bytes | None = None,
        user_handle: bytes | None = None,
    ) -> str:
        """navigator.credentials.get()'s result; the counter goes up by one unless given."""
        if counter is None:
            self.sign_count += 1
            counter = self.sign_count
        auth_data = self._auth_data(rp_id or options["rpId"], flags, counter, False)
        client_data = self._client_data("webauthn.get", challenge or challenge_of(options), origin)
        signature = self.key.sign(
            auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        handle = self.user_handle if user_handle is None else user_handle
        return json.dumps(
            {
                "id": self.id,
                "rawId": self.id,
                "type": "public-key",
                "response": {
                    "clientDataJSON": b64url(client_data),
                    "authenticatorData": b64url(auth_data),
                    "signature": b64url(signature),
                    "userHandle": b64url(handle) if handle else None,
                },
                "clientExtensionResults": {},
                "authenticatorAttachment": "platform",
            }
        )
