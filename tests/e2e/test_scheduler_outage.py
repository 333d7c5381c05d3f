"""A scheduler that cannot die quietly (issue 16, part 4): while the database cannot be
reached — SQLite's write lock held by another connection for longer than the busy timeout, or
the PostgreSQL server stopped — every tick fails loudly, and once the database is back the next
due task reminder and the morning digest go out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from sqlalchemy import update

from bot.container import build_services
from bot.entrypoints import Sandbox
from bot.scheduler import SchedulerHost
from bot.settings import Settings
from domain.access import SYSTEM
from domain.model import ActivityKind, Role, utcnow
from domain.services.contacts import ContactDraft
from storage.db import make_engine
from storage.models import ActivityRow, DigestSettingsRow
from tests.e2e.conftest import ADMIN_ID, LAN, MANAGER, Driver, until

BUSY_TIMEOUT_MS = 1_000  # the test holds the lock for longer than this
TICK = 0.5
WAIT = 30.0  # seconds any awaited condition may take on a loaded machine


@dataclass
class Bed:
    driver: Driver
    host: SchedulerHost
    task_id: int
    manager_id: int


@contextlib.asynccontextmanager
async def bed(url: str, home: Path, *, busy_timeout_ms: int = 10_000) -> AsyncIterator[Bed]:
    """The sandbox with the bot and a scheduler ticking every TICK seconds. Minh (manager) has his
    digest switched off; Lan (agent) has a task due tomorrow. Both have written to the bot. The
    sandbox keeps its memory in `home`."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=url, admin_ids=[ADMIN_ID], scheduler=False
    )
    services = build_services(settings, make_engine(url, busy_timeout_ms=busy_timeout_ms))
    sandbox = Sandbox(services, port=0, state_file=home / "sandbox.json")
    await sandbox.start()  # migrates
    host: SchedulerHost | None = None
    try:
        await services.stages.apply_template(SYSTEM, "amis")
        boss = await services.users.add(
            SYSTEM, "Minh", Role.MANAGER, team="north", telegram_id=MANAGER
        )
        lan = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north", telegram_id=LAN)
        fred = await services.contacts.add(lan, ContactDraft(name="Fresh Fred", stage="Lead"))
        assert fred.id is not None
        task = await services.contacts.log_activity(
            lan, fred.id, ActivityKind.TASK, "gửi báo giá", due_at=utcnow() + timedelta(days=1)
        )
        await services.digests.update(boss, send_at="00:00", enabled=False)
        await services.digests.update(lan, enabled=False)
        assert sandbox.runtime is not None
        async with aiohttp.ClientSession() as http:
            driver = Driver(sandbox.url, http, services, sandbox.runtime)
            for telegram_id, name in ((LAN, "Lan"), (MANAGER, "Minh")):
                await driver.user(telegram_id, name)
                await driver.ask(telegram_id, "/help")  # a bot can only write to who wrote to it
            host = SchedulerHost(sandbox.runtime.scheduled, tick=TICK, check_every=TICK)
            host.start()
            await eventually(lambda: host.running, "the scheduler to start")
            assert task.id is not None
            assert boss.id is not None
            yield Bed(driver, host, task.id, boss.id)
    finally:
        if host is not None:
            await host.stop()
        await sandbox.stop()
        await services.close()


async def eventually(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {WAIT} s for {what}")
        await asyncio.sleep(0.05)


def failures(caplog: pytest.LogCaptureFixture, *words: str) -> Callable[[], bool]:
    """Whether the scheduler logged, with a traceback, a failure whose message and error have
    all `words`."""

    def logged() -> bool:
        return any(
            record.name == "bot.scheduler"
            and record.levelno >= logging.ERROR
            and record.exc_info is not None
            and all(word in f"{record.getMessage()} {record.exc_info[1]}" for word in words)
            for record in caplog.records
        )

    return logged


async def every_part_failed(
    caplog: pytest.LogCaptureFixture, jobs: tuple[str, ...] = ("'morning'", "'task-reminders'")
) -> None:
    """The `jobs` and the lease renewal failed at least once, each logged with its
    traceback."""
    for words in (*((job,) for job in jobs), ("lease", "still held")):
        await eventually(failures(caplog, *words), f"a logged failure: {' '.join(words)}")


async def make_due(url: str, bed: Bed) -> None:
    """Lan's task falls due and Minh's digest is switched on (his time, 00:00, has passed)."""
    engine = make_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(ActivityRow)
                .where(ActivityRow.id == bed.task_id)
                .values(due_at=utcnow() - timedelta(minutes=1))
            )
            await connection.execute(
                update(DigestSettingsRow)
                .where(DigestSettingsRow.user_id == bed.manager_id)
                .values(enabled=True)
            )
    finally:
        await engine.dispose()


async def both_go_out(bed: Bed, since: dict[int, int]) -> None:
    [reminder] = await until(bed.driver, LAN, since[LAN], "gửi báo giá")
    assert "Fresh Fred" in reminder["text"]
    digest = await until(bed.driver, MANAGER, since[MANAGER], "Good morning")
    assert "Your team's yesterday" in digest[0]["text"]
    assert bed.host.running


async def cursors(driver: Driver) -> dict[int, int]:
    return {who: await driver.cursor(who) for who in (LAN, MANAGER)}


async def test_sqlite_locked_longer_than_the_busy_timeout_delays_reminders_and_digests_only(
    tmp_path: Path, sqlite_template: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "locked.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite+aiosqlite:///{path}"
    async with bed(url, tmp_path, busy_timeout_ms=BUSY_TIMEOUT_MS) as scene:
        since = await cursors(scene.driver)
        # Another program (a backup, a sqlite3 shell) takes the write lock and keeps it. Its
        # calls run on a thread: the bot's connection may hold the lock for a moment first,
        # and its transaction needs this event loop to end.
        holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            await asyncio.to_thread(holder.execute, "BEGIN IMMEDIATE")
            locked_at = time.monotonic()
            # The reminders claim what they send: they write.
            await every_part_failed(caplog, jobs=("'task-reminders'",))
            held = time.monotonic() - locked_at
            assert held > BUSY_TIMEOUT_MS / 1000
            assert failures(caplog, "'task-reminders'", "database is locked")()
            # The morning job only read (nothing was due): readers wait for no writer.
            assert not failures(caplog, "'morning'")()
        finally:
            await asyncio.to_thread(holder.rollback)
            holder.close()
        await make_due(url, scene)
        await both_go_out(scene, since)


# --- PostgreSQL: a private server, stopped and started again ----------------------------------


def _postgres_bin() -> Path | None:
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: p.parts)
    return versions[-1].parent if versions else None


class PrivateServer:
    """A throwaway PostgreSQL cluster in a temporary directory on a free port; never the
    shared one. As root, its programs run as the `postgres` user (PostgreSQL refuses root)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.dir = Path(tempfile.mkdtemp(prefix="stagekeeper-pg-"))
        self.data = self.dir / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"postgresql+asyncpg://stagekeeper@127.0.0.1:{self.port}/postgres"
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    def _run(self, *args: str) -> None:
        subprocess.run([*self._as, *args], check=True, capture_output=True, timeout=120)

    def init(self) -> None:
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "stagekeeper",
            "--auth=trust", "-E", "UTF8", "--no-sync",
        )  # fmt: skip

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"),
            "-o", options, "-w", "start",
        )  # fmt: skip

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.SubprocessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def private_postgres() -> Iterator[PrivateServer]:
    bindir = _postgres_bin()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip("no PostgreSQL server programs (initdb, pg_ctl) under /usr/lib/postgresql")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: PostgreSQL will not run as root")
    server = PrivateServer(bindir)
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


async def in_thread(call: Callable[[], None]) -> None:
    await asyncio.to_thread(call)


@pytest.mark.postgres
async def test_postgres_stopped_briefly_delays_reminders_and_digests_only(
    private_postgres: PrivateServer, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    server = private_postgres
    async with bed(server.url, tmp_path) as scene:
        since = await cursors(scene.driver)
        await in_thread(server.stop)
        try:
            await every_part_failed(caplog)
        finally:
            await in_thread(server.start)
        await make_due(server.url, scene)
        await both_go_out(scene, since)
