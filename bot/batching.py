"""Group commit for requests that each need a unit of work: those that arrive while a batch is
being handled wait, and go together in the next one. An idle server handles a request at once;
a busy one pays for a transaction (and, on SQLite, for each statement) once per batch instead of
once per request."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Batcher(Generic[Item, Answer]):
    def __init__(
        self, handle: Callable[[list[Item]], Awaitable[list[Answer]]], *, limit: int
    ) -> None:
        """`handle` answers a list of items, in their order."""
        self._handle = handle
        self._limit = limit
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._running: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Answer:
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, answer))
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(self._run())
        # Shielded: a client that hangs up does not take its item out of a batch under way.
        return await asyncio.shield(answer)

    async def _run(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[: self._limit], self._waiting[self._limit :]
            try:
                answers = await self._handle([item for item, _ in batch])
            except Exception as error:
                log.exception("a batch of %d failed", len(batch))
                for _, answer in batch:
                    answer.set_exception(error)
                continue
            for (_, answer), result in zip(batch, answers, strict=True):
                answer.set_result(result)
