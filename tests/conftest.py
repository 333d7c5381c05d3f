"""Databases for the tests: SQLite always, PostgreSQL when STAGEKEEPER_TEST_POSTGRES_URL names
one (`.ci/services.sh` starts it; on CI its absence is an error, not a skip).

The suite runs in several processes (pytest-xdist, `-n auto` in pyproject.toml): each has a
PostgreSQL database and a Redis database of its own, derived from the ones named, so that no
process empties what another is using."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.container import Services, build_services
from bot.settings import Settings
from storage import migrate
from storage.db import make_engine
from storage.models import Base
from tests.crash.summary import (  # noqa: F401 - hooks, found by their names
    pytest_configure,
    pytest_report_header,
    pytest_runtest_logreport,
    pytest_terminal_summary,
)


def _per_process(variable: str, own: Callable[[str, int], str]) -> None:
    """Gives this xdist process its own variant of the server URL in `variable` (the test
    modules and the worker processes they start read it from the environment)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and os.environ.get(variable):
        os.environ[variable] = own(os.environ[variable], int(worker[2:]))


def _own_database(url: str, number: int) -> str:
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_gw{number}").render_as_string(
        hide_password=False
    )


def _own_redis_database(url: str, number: int) -> str:
    base, _, index = url.rpartition("/")
    return f"{base}/{(int(index or 0) + number) % 16}"  # Redis has 16 databases by default


_per_process("STAGEKEEPER_TEST_POSTGRES_URL", _own_database)
_per_process("STAGEKEEPER_TEST_REDIS_URL", _own_redis_database)
POSTGRES_URL = os.environ.get("STAGEKEEPER_TEST_POSTGRES_URL")
SHARED = Path(__file__).resolve().parents[2] / "shared"
ON_CI = os.environ.get("CI") == "true"


def require(present: bool, reason: str) -> None:
    """For a test that needs something pip does not install (a system font, Chromium, a
    server, ../shared): skips it with `reason`, which says how to get that, when it is absent;
    but fails it on CI (`CI=true`), which installs everything (.ci/run), so that a test CI
    cannot run is noticed rather than skipped."""
    __tracebackhide__ = True  # the skip is reported at the test's line
    if present:
        return
    if ON_CI:
        pytest.fail(f"CI must run this test: {reason}", pytrace=False)
    pytest.skip(reason)


def _migrate(url: str, *, afresh: bool = False) -> None:
    async def run() -> None:
        if afresh:
            await _create_database(url)
        engine = make_engine(url)
        if afresh:  # a schema left by another branch's migrations would mislead this run
            async with engine.begin() as connection:
                await connection.execute(text("DROP SCHEMA public CASCADE"))
                await connection.execute(text("CREATE SCHEMA public"))
        await migrate.upgrade(engine)
        await engine.dispose()

    # Session fixtures may be first requested from inside a running event loop: migrate in a
    # thread of its own.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file, copied for each test (migrating takes longer than copying)."""
    path = tmp_path_factory.mktemp("template") / "stagekeeper.db"
    _migrate(f"sqlite+aiosqlite:///{path}")
    return path


async def _create_database(url: str) -> None:
    """Creates the PostgreSQL database of `url` unless it exists."""
    parsed = make_url(url)
    engine = create_async_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    async with engine.connect() as connection:
        exists = await connection.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
        )
        if not exists:
            await connection.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    await engine.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> str:
    require(
        bool(POSTGRES_URL),
        'no PostgreSQL (STAGEKEEPER_TEST_POSTGRES_URL is not set): run `eval "$(bash '
        '.ci/services.sh)"` to test it too',
    )
    assert POSTGRES_URL
    _migrate(POSTGRES_URL, afresh=True)
    return POSTGRES_URL


async def empty_postgres(url: str) -> None:
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    engine = make_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    await engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "stagekeeper.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite+aiosqlite:///{path}"
    url: str = request.getfixturevalue("postgres_url")
    await empty_postgres(url)
    return url


@pytest.fixture
async def services(database_url: str) -> AsyncIterator[Services]:
    built = build_services(Settings(database_url=database_url, _env_file=None))  # type: ignore[call-arg]
    yield built
    await built.close()


def shared_path(*parts: str) -> Path:
    """A file of ../shared; skips the test with the reason when it is absent (fails on CI)."""
    path = SHARED.joinpath(*parts)
    require(path.exists(), f"{path} is absent (../shared is provided beside the repository on CI)")
    return path
