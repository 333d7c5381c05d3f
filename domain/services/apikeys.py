"""Bearer keys of the HTTP API: created and revoked by admins; the secret is shown once and only
its SHA-256 hash is stored."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta

from domain.access import require_role
from domain.errors import InvalidInput, NotFound
from domain.model import ApiKey, Role, User, utcnow
from domain.ports import Clock, UnitOfWorkFactory
from domain.text import clean_name

SECRET_PREFIX = "sk_"
PREFIX_LENGTH = len(SECRET_PREFIX) + 8
TOKEN_MAX = 100
NAME_MAX = 64
# Compared when no key has the presented prefix, so that an unknown key takes as long to refuse
# as a wrong one.
_NO_KEY_HASH = hashlib.sha256(b"no such key").hexdigest()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# How long a key found valid is trusted without reading it again. Revoking in this process
# takes effect at once; in another one (the command line, another worker) within this time.
TRUSTED_FOR = timedelta(seconds=2)


class ApiKeyService:
    def __init__(self, uow: UnitOfWorkFactory, clock: Clock = utcnow) -> None:
        self._uow = uow
        self._clock = clock
        self._trusted: dict[str, tuple[ApiKey, datetime]] = {}  # by secret hash: until when

    async def create(self, actor: User, name: str) -> tuple[ApiKey, str]:
        """A new key and its secret, which is not stored and cannot be shown again."""
        require_role(actor, Role.ADMIN)
        name = _key_name(name)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        async with self._uow() as uow:
            if await uow.api_keys.active_named(name) is not None:
                raise InvalidInput(
                    f"A key called {name!r} exists; revoke it first or pick another."
                )
            key = await uow.api_keys.add(
                ApiKey(
                    None,
                    name,
                    secret[:PREFIX_LENGTH],
                    hash_secret(secret),
                    created_at=self._clock(),
                    created_by_id=actor.id,
                )
            )
            await uow.commit()
        return key, secret

    async def list(self, actor: User) -> list[ApiKey]:
        """Every key, revoked ones included, the newest first."""
        require_role(actor, Role.ADMIN)
        async with self._uow(read_only=True) as uow:
            return await uow.api_keys.list()

    async def revoke(self, actor: User, name: str) -> ApiKey:
        require_role(actor, Role.ADMIN)
        async with self._uow() as uow:
            key = await uow.api_keys.active_named(name)
            if key is None:
                raise NotFound(f"There is no key called {name.strip()!r} to revoke.")
            key.revoked_at = self._clock()
            await uow.api_keys.update(key)
            await uow.commit()
        self._trusted.pop(key.secret_hash, None)
        return key

    async def authenticate(self, secret: str) -> ApiKey | None:
        """The active key this secret belongs to, or None."""
        [key] = await self.authenticate_many([secret])
        return key

    async def authenticate_many(self, secrets: Sequence[str]) -> builtins.list[ApiKey | None]:
        """The active key of each secret, or None (requests arriving together), read at once
        unless trusted still. Hashes are compared in constant time."""
        now = self._clock()
        hashes = [hash_secret(secret) for secret in secrets]
        unsure = {
            secret[:PREFIX_LENGTH]
            for secret, hashed in zip(secrets, hashes, strict=True)
            if secret.startswith(SECRET_PREFIX)
            and len(secret) <= TOKEN_MAX
            and self._trusted.get(hashed, (None, now))[1] <= now
        }
        candidates: builtins.list[ApiKey] = []
        if unsure:
            async with self._uow(read_only=True) as uow:
                candidates = await uow.api_keys.by_prefixes(unsure)
        found = []
        for secret, hashed in zip(secrets, hashes, strict=True):
            trusted, until = self._trusted.get(hashed, (None, now))
            key = trusted if until > now else _match(secret, hashed, candidates)
            if key is not None and until <= now:
                self._trusted[hashed] = (key, now + TRUSTED_FOR)
            found.append(key)
        return found


def _match(secret: str, presented: str, candidates: list[ApiKey]) -> ApiKey | None:
    mine = [key for key in candidates if key.prefix == secret[:PREFIX_LENGTH]]
    found = None
    for key in mine:
        if hmac.compare_digest(key.secret_hash, presented) and key.active:
            found = key
    if not mine:  # an unknown key takes as long to refuse as a wrong one
        hmac.compare_digest(_NO_KEY_HASH, presented)
    return found


def _key_name(raw: str) -> str:
    name = clean_name(raw)
    if not name or len(name) > NAME_MAX:
        raise InvalidInput(f"A key needs a name of 1 to {NAME_MAX} characters.")
    return name
