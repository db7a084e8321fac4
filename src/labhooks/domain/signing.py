"""Standard Webhooks signatures (SPEC §4) of `id.timestamp.body`, in either of the spec's schemes:

- `hmac` (`v1`): base64 HMAC-SHA256 under the secret's base64-decoded bytes (`whsec_…`);
- `ed25519` (`v1a`): base64 ed25519 signature under a private key (`whsk_` + base64 of its
  32-byte seed, as the spec's reference library reads it); receivers verify with the public key
  (`whpk_` + base64 of its 32 bytes) and hold nothing secret.

Written against the spec rather than calling the `standardwebhooks` library per message: the
library re-parses datetimes on every call, which cost a sixth of a worker's CPU (and it has no
`v1a`). The tests check every signature with that library or `cryptography`, and with the spec's
test vectors.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
PRIVATE_KEY_PREFIX = "whsk_"
PUBLIC_KEY_PREFIX = "whpk_"


class SignatureScheme(enum.StrEnum):
    HMAC = "hmac"
    ED25519 = "ed25519"


@dataclass(frozen=True)
class PublicKey:
    key: str  # whpk_…
    expires_at: datetime | None  # None: the current key; else when it stops signing


def _b64decode(encoded: str) -> bytes:
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4))


def secret_key(secret: str) -> bytes:
    return _b64decode(secret.removeprefix(SECRET_PREFIX))


def _private_key(private: str) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(
        _b64decode(private.removeprefix(PRIVATE_KEY_PREFIX))
    )


def public_key_of(secret: str) -> str | None:
    """The `whpk_…` public key of a `whsk_…` private key; None for an HMAC secret."""
    if not secret.startswith(PRIVATE_KEY_PREFIX):
        return None
    raw = _private_key(secret).public_key().public_bytes_raw()
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode()


def public_keys(
    current: str | None, previous: str | None, previous_expires_at: datetime | None, now: datetime
) -> list[PublicKey]:
    """The public keys that verify a subscription's deliveries now, newest first: the previous
    one only while it still signs (a rotation's overlap, or a switch from ed25519 to hmac)."""
    keys = [PublicKey(current, None)] if current else []
    if previous and previous_expires_at and previous_expires_at > now:
        keys.append(PublicKey(previous, previous_expires_at))
    return keys


def _signing(secret: str) -> Callable[[bytes], str]:
    """What signs with this secret; its prefix names the scheme. ValueError if it is no key."""
    if secret.startswith(PRIVATE_KEY_PREFIX):
        private = _private_key(secret)
        return lambda signed: "v1a," + base64.b64encode(private.sign(signed)).decode()
    key = secret_key(secret)
    return lambda signed: (
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    )


class Signer:
    """Signs with each given secret or private key, newest first; two during a rotation's
    overlap, which may be of different schemes after a switch (receivers skip the other one)."""

    def __init__(self, secrets: Sequence[str]) -> None:
        self._signers = [_signing(secret) for secret in secrets]

    def signature(self, message_id: str, timestamp: int, body: bytes | str) -> str:
        data = body.encode() if isinstance(body, str) else body
        signed = f"{message_id}.{timestamp}.".encode() + data
        return " ".join(sign(signed) for sign in self._signers)
