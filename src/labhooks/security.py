"""Secrets: password hashes, API tokens, encryption at rest, signing secrets and keys.

Passwords are hashed with argon2id (slow on purpose, at a cost from Settings). API tokens are
256 random bits, so a fast SHA-256 is enough to store them and lets every request find its token
by an indexed lookup.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import secrets
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from labhooks.domain.signing import PRIVATE_KEY_PREFIX, SECRET_PREFIX, SignatureScheme

if TYPE_CHECKING:
    from labhooks.settings import Settings

API_TOKEN_PREFIX = "lh_"  # noqa: S105 (a prefix, not a secret)


HASHING_NICENESS = 10  # how much less the hashing threads count with the OS scheduler


def _lower_priority() -> None:
    """Linux schedules threads one by one: a hashing thread gives way to the event loop. (POSIX
    makes the nice value the whole process's, so elsewhere it is left alone.)"""
    if sys.platform == "linux":
        os.nice(HASHING_NICENESS)


class Passwords:
    """argon2id at the configured cost: OWASP's recommendation by default (19 MiB, 2 passes,
    1 lane); the test suite sets the smallest argon2 allows. A hash made at another cost still
    verifies (its cost is part of it), and `needs_rehash` says to redo it at this one.

    argon2 keeps a core busy for tens of milliseconds per hash. The async methods run it on
    threads of their own, at most half the cores at once and at a lower scheduling priority: a
    flood of logins waits for those, and the event loop, which publishes and serves everything
    else, keeps the CPU it needs (bench/login_flood.py measures it)."""

    def __init__(self, time_cost: int = 2, memory_kib: int = 19456, parallelism: int = 1) -> None:
        self._hasher = PasswordHasher(
            time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism
        )
        # checked against for an unknown e-mail, so that answer takes as long as a wrong password
        self._nobody = self._hasher.hash(secrets.token_urlsafe(16))
        self._threads = ThreadPoolExecutor(
            max(1, (os.cpu_count() or 2) // 2), "argon2", initializer=_lower_priority
        )

    async def hashed(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self.hash, password)

    async def verified(self, password_hash: str | None, password: str) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self.verify, password_hash, password)

    @classmethod
    def of(cls, settings: Settings) -> Passwords:
        return cls(
            settings.password_time_cost, settings.password_memory_kib, settings.password_parallelism
        )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` is the one hashed; None (nobody) costs the same and is False."""
        try:
            return self._hasher.verify(password_hash or self._nobody, password) and bool(
                password_hash
            )
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, password_hash: str) -> bool:
        return self._hasher.check_needs_rehash(password_hash)


def new_api_token() -> str:
    return API_TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_api_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_signing_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def new_signing_key(scheme: SignatureScheme) -> str:
    """A new `whsec_` secret, or a new ed25519 private key as `whsk_` + base64 of its seed."""
    if scheme is SignatureScheme.ED25519:
        seed = Ed25519PrivateKey.generate().private_bytes_raw()
        return PRIVATE_KEY_PREFIX + base64.b64encode(seed).decode()
    return new_signing_secret()


class SecretBox:
    """Authenticated encryption (Fernet) with a key derived from LABHOOKS_SECRET_KEY."""

    def __init__(self, secret_key: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"labhooks secrets at rest"
        ).derive(secret_key.encode())
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        return self._fernet.decrypt(ciphertext.encode()).decode()
