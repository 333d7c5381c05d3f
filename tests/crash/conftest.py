"""The crash tests' seed and databases: a seeded one per kind and test process, copied for
every kill. (Their header and summary line: tests/crash/summary.py.)"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.crash.harness import (
    EXEC_VARIABLE,
    Harness,
    PostgresStore,
    SqliteStore,
    Store,
    Zygote,
    pick_seed,
)
from tests.crash.summary import CONTACTS


@pytest.fixture(scope="session")
def crash_seed() -> int:
    return pick_seed()


@pytest.fixture(scope="session")
def zygote() -> Iterator[Zygote | None]:
    """What forks the commands, shared by the tests of this process."""
    if os.environ.get(EXEC_VARIABLE) == "1":
        yield None
        return
    forker = Zygote()
    yield forker
    forker.close()


@dataclass
class Place:
    """What a kind of database keeps across the tests of one process."""

    kind: str
    directory: Path
    postgres_url: str | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    def store(self) -> Store:
        if self.postgres_url is None:
            return SqliteStore(self.directory / "databases")
        return PostgresStore(self.postgres_url)


@pytest.fixture(
    scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def crash_place(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Place]:
    if sys.platform != "linux":
        pytest.skip("the crash tests read Linux's file locks (F_GETLK) and process table")
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    place = Place(request.param, tmp_path_factory.mktemp(f"crash-{request.param}"), url)
    yield place
    if url is not None:

        async def drop() -> None:
            store = PostgresStore(url)
            await store.drop_all()
            await store.close()

        asyncio.run(drop())


@dataclass
class Crash:
    harness: Harness
    lines: list[str]


@pytest.fixture
async def crash(crash_place: Place, zygote: Zygote | None) -> AsyncIterator[Crash]:
    lines: list[str] = []
    harness = Harness(
        crash_place.store(),
        crash_place.directory / "work",
        CONTACTS,
        crash_place.cache,
        log=lines.append,
        zygote=zygote,
        files=crash_place.directory.parent / "crash-files",
    )
    async with harness.running():
        yield Crash(harness, lines)
