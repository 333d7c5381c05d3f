"""Where conversation state (aiogram FSM) lives, and how one person's updates are kept in order.

With `REDIS_URL`, state and data are in Redis and a person's updates are handled one at a time
across every worker (a lock per chat and person). Without it, state is in this process's memory,
which only a single process may do."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from datetime import timedelta

from aiogram.fsm.storage.base import (
    BaseEventIsolation,
    BaseStorage,
    DefaultKeyBuilder,
    StorageKey,
)
from aiogram.fsm.storage.memory import DisabledEventIsolation, MemoryStorage
from aiogram.fsm.storage.redis import RedisEventIsolation, RedisStorage
from redis.asyncio.lock import Lock

# A conversation nobody finished is forgotten after this long.
CONVERSATION_TTL = timedelta(days=7)
# A person's lock expires this long after its holder stopped renewing it (a worker that died
# while handling their update), so that their next update waits seconds, not minutes.
LOCK_SECONDS = 5.0


class RenewedRedisIsolation(RedisEventIsolation):
    """aiogram's Redis lock, renewed while the update is handled: an update may take minutes
    (an import), but a dead worker's lock lapses within LOCK_SECONDS."""

    @asynccontextmanager
    async def lock(self, key: StorageKey) -> AsyncGenerator[None, None]:
        name = self.key_builder.build(key, "lock")
        async with self.redis.lock(name, timeout=LOCK_SECONDS) as held:
            renewing = asyncio.create_task(self._renew(held))
            try:
                yield None
            finally:
                renewing.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await renewing

    @staticmethod
    async def _renew(held: Lock) -> None:
        while True:
            await asyncio.sleep(LOCK_SECONDS / 3)
            await held.reacquire()


def conversation_storage(redis_url: str | None) -> tuple[BaseStorage, BaseEventIsolation]:
    if not redis_url:
        return MemoryStorage(), DisabledEventIsolation()
    keys = DefaultKeyBuilder(with_bot_id=True)
    storage = RedisStorage.from_url(
        redis_url, key_builder=keys, state_ttl=CONVERSATION_TTL, data_ttl=CONVERSATION_TTL
    )
    return storage, RenewedRedisIsolation(storage.redis, key_builder=keys)
