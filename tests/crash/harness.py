"""Kills the project's commands with SIGKILL at random points and checks what they leave.

Each command runs in a process of its own on a copy of a seeded database: the command line's
`bot.cli.main`, forked from a process that has imported it (tests/crash/zygote.py; with
STAGEKEEPER_CRASH_EXEC=1, the installed `stagekeeper` script), or, for the bulk move that an
admin confirms in chat and the command line does not offer, tests/crash/bulk_move.py. It is
killed at a moment drawn from a seeded RNG, measured from a point of the run that is observed,
not guessed (the time before it goes to importing code, where a kill tells nothing):

- "write": its write transaction began — the process holds SQLite's write lock (asked of the
  kernel with F_GETLK on the `-shm` file, which takes no lock) or its PostgreSQL backend has a
  transaction id — plus a share of how long the writes of a run to the end lasted, or a moment
  of their last 50 ms, where the commit is;
- "log" (SQLite): its write-ahead log grew while it held the write lock — a commit writing the
  transaction's pages (or pages spilling from the cache) — plus at most 5 ms;
- "committed": its write transaction ended, plus at most 20 ms (SQLite's checkpoint, the close);
- "open": it opened the database, plus a share of the rest of a run to the end (reads before
  the writes, the commit, SQLite's checkpoint and the close after it);
- "message" (the digest): its k-th morning message reached the sandbox's Bot API.

Then:

- the database is whole: SQLite's `PRAGMA integrity_check` and `foreign_key_check`, and FTS5's
  integrity check of `contact_search`; on both databases every contact is in the stage its last
  history row took it to, and its search text is its name's and company's;
- the operation is all or nothing: contacts (stage and version), history, operations (and their
  undo), stages, people, companies and undo images are exactly as before the command or exactly
  as a run to the end leaves them, so an operation is in the list exactly when its contacts
  changed;
- the report tables equal a recount from scratch (when nothing was done: are the tables the
  command started from, which equal one);
- the next command works: a command that left nothing done is run again to the end and leaves
  what a run to the end leaves; after one that went through, `stagekeeper operations --json`
  lists what the database holds; and no process of the killed command is left running (an
  import's reading child);
- a digest run killed midway sends nobody their morning message twice, counting the run after
  it, which sends the others; at most the one message in flight is lost.

Used by tests/crash (a few kills per command) and bench/crash_soak.py (hundreds)."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import make_url, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from bot.settings import Settings
from domain.text import search_text
from storage.db import make_engine, make_sessionmaker
from storage.models import ReportContactRow, ReportMoveRow, ReportStayBlockRow
from storage.report_projection import recount
from tests.crash import data

ROOT = Path(__file__).resolve().parents[2]
SEED_VARIABLE = "STAGEKEEPER_CRASH_SEED"
EXEC_VARIABLE = "STAGEKEEPER_CRASH_EXEC"  # 1: run the installed script, not forked children
TOKEN = "1000000017:crash-tests"
ADMINS = tuple(range(7001, 7013))  # people with a Telegram id, each due a morning digest
WAIT = 120.0  # the longest any condition is waited for (a loaded machine is slow, not stuck)
POLL = 0.002  # how often a point of a running command is looked for


class CrashFailure(AssertionError):
    pass


def pick_seed() -> int:
    """STAGEKEEPER_CRASH_SEED when set (a replay); else the same random seed in every
    pytest-xdist process of one run (drawn from the run's id), or a new one."""
    if os.environ.get(SEED_VARIABLE):
        return int(os.environ[SEED_VARIABLE])
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if run:
        return int(run[:8], 16)
    return random.SystemRandom().randrange(1, 2**32)


async def wait_for(condition: Callable[[], Any], what: str, within: float = WAIT) -> Any:
    """Polls `condition` (sync or async) until it returns something true."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise CrashFailure(f"gave up after {within:.0f} s waiting for {what}")
        await asyncio.sleep(0.01)


# Databases ---------------------------------------------------------------------------------


class Store(ABC):
    """Databases by name, of one kind, copied from one another."""

    kind: str

    @abstractmethod
    def url(self, name: str) -> str: ...

    @abstractmethod
    async def create(self, name: str) -> None:
        """An empty database (`stagekeeper init` makes its schema)."""

    @abstractmethod
    async def clone(self, source: str, target: str) -> None:
        """`target` becomes a copy of `source` (no process may use either)."""

    @abstractmethod
    async def drop(self, name: str) -> None: ...

    @abstractmethod
    async def connected(self, name: str, pid: int) -> bool:
        """Whether process `pid` has `name` open, now."""

    @abstractmethod
    async def writing(self, name: str, pid: int) -> bool:
        """Whether process `pid` is inside a write transaction of `name`, now."""

    def log_size(self, name: str) -> int:
        """The size of `name`'s write-ahead log file, where it can be watched."""
        raise NotImplementedError

    async def settled(self, name: str) -> None:
        """Waits until nothing of a killed process still works on `name`."""
        await asyncio.sleep(0)  # a SQLite file has nothing running of its own

    async def snapshot(self, name: str) -> None:
        """Notes `name` as a kill left it, for `keep` (what checks find wrong is looked at in
        the database as the kill left it, before the next command changed it)."""
        await asyncio.sleep(0)  # copying a PostgreSQL database for every kill costs too much

    def keep(self, where: Path) -> str | None:
        """Keeps the last snapshot at `where`; how to reach it."""
        return None

    async def close(self) -> None:
        await asyncio.sleep(0)


class SqliteStore(Store):
    kind = "sqlite"

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        return self.directory / f"{name}.db"

    def url(self, name: str) -> str:
        return f"sqlite+aiosqlite:///{self.path(name)}"

    async def create(self, name: str) -> None:
        await self.drop(name)

    async def clone(self, source: str, target: str) -> None:
        await self.drop(target)
        await asyncio.to_thread(self._copy, self.path(source), self.path(target))

    @staticmethod
    def _copy(source: Path, target: Path) -> None:
        for suffix in ("", "-wal"):  # the log too: it holds the last commits, and what a kill
            origin = Path(f"{source}{suffix}")  # left of a transaction it interrupted
            if origin.exists():
                shutil.copyfile(origin, f"{target}{suffix}")

    async def snapshot(self, name: str) -> None:
        await self.clone(name, "killed")

    async def drop(self, name: str) -> None:
        await asyncio.to_thread(self._drop, name)

    def _drop(self, name: str) -> None:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.path(name)}{suffix}").unlink(missing_ok=True)

    async def connected(self, name: str, pid: int) -> bool:
        return lock_holder(Path(f"{self.path(name)}-shm"), _WAL_OPEN) == pid

    def log_size(self, name: str) -> int:
        try:
            return os.stat(f"{self.path(name)}-wal").st_size
        except FileNotFoundError:
            return 0

    async def writing(self, name: str, pid: int) -> bool:
        return lock_holder(Path(f"{self.path(name)}-shm"), _WAL_WRITE_LOCK) == pid

    def keep(self, where: Path) -> str:
        self._copy(self.path("killed"), where)
        return str(where)


# struct flock of Linux: short l_type, short l_whence, off_t l_start, off_t l_len, pid_t l_pid.
_FLOCK = "hhqqi4x"
# SQLite's WAL locks are bytes of the -shm file (unix VFS: UNIX_SHM_BASE is 120): the write lock,
# held exclusively by the one connection inside a write transaction, and after the eight locks
# the one every connection holds shared while it has the database open (UNIX_SHM_DMS).
_WAL_WRITE_LOCK = 120
_WAL_OPEN = 128


def lock_holder(shm: Path, byte: int) -> int | None:
    """A process holding a lock on `byte` of the `-shm` file `shm` of a SQLite database, or
    None. Asks the kernel which lock would conflict (F_GETLK), so it takes no lock and slows
    nobody; a lock this process holds is not reported."""
    try:
        descriptor = os.open(shm, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        request = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, byte, 1, 0)
        kind, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(descriptor, fcntl.F_GETLK, request))
    finally:
        os.close(descriptor)
    return None if kind == fcntl.F_UNLCK else pid


class PostgresStore(Store):
    """Databases named after the one of `base_url` (this test process's), copied with
    `CREATE DATABASE … TEMPLATE`."""

    kind = "postgres"

    def __init__(self, base_url: str) -> None:
        self._base = make_url(base_url)
        self._prefix = f"{self._base.database}_crash_"
        self._admin: AsyncEngine = create_async_engine(
            self._base.set(database="postgres"), isolation_level="AUTOCOMMIT", pool_size=1
        )

    def _name(self, name: str) -> str:
        return self._prefix + name

    def url(self, name: str) -> str:
        return self._base.set(database=self._name(name)).render_as_string(hide_password=False)

    async def _run(self, statement: str, **values: Any) -> Any:
        async with self._admin.connect() as connection:
            result = await connection.execute(text(statement), values)
            return result.scalar() if result.returns_rows else None

    async def _retried(self, statement: str) -> None:
        """`statement` again while another session (autovacuum, which PostgreSQL stops for a
        DROP or CREATE DATABASE, or a killed command's backend) still uses its database."""
        deadline = time.monotonic() + WAIT
        while True:
            try:
                await self._run(statement)
                return
            except DBAPIError as error:
                if "being accessed by other users" not in str(error):
                    raise
                if time.monotonic() > deadline:
                    raise CrashFailure(f"{statement}: {error}") from None
                await asyncio.sleep(0.1)

    async def create(self, name: str) -> None:
        await self.drop(name)
        await self._run(f'CREATE DATABASE "{self._name(name)}"')

    async def clone(self, source: str, target: str) -> None:
        await self.drop(target)
        await self._retried(
            f'CREATE DATABASE "{self._name(target)}" TEMPLATE "{self._name(source)}"'
        )

    async def drop(self, name: str) -> None:
        await self._drop(self._name(name))

    async def _drop(self, database: str) -> None:
        # Its clients are the harness's commands (a killed one's backend may linger): ended.
        await self._run(f"SELECT count(pg_terminate_backend(pid)) {_CLIENTS}", name=database)
        await self._retried(f'DROP DATABASE IF EXISTS "{database}"')

    async def connected(self, name: str, pid: int) -> bool:
        # The only client of the database is the command.
        return bool(await self._run(f"SELECT count(*) {_CLIENTS}", name=self._name(name)))

    async def writing(self, name: str, pid: int) -> bool:
        # Its backend has a transaction id from its first write until its transaction ends.
        return bool(
            await self._run(
                f"SELECT count(*) {_CLIENTS} AND backend_xid IS NOT NULL", name=self._name(name)
            )
        )

    async def settled(self, name: str) -> None:
        # A killed client's backend goes on with its statement until it next talks to the
        # client, then rolls back (or commits, had it received the COMMIT).
        async def gone() -> bool:
            return not await self._run(f"SELECT count(*) {_CLIENTS}", name=self._name(name))

        await wait_for(gone, f"the backends of {self._name(name)} to end")

    async def drop_all(self) -> None:
        """Every database of the harness of this test process."""
        async with self._admin.connect() as connection:
            names = (
                await connection.execute(
                    text("SELECT datname FROM pg_database WHERE datname LIKE :p"),
                    {"p": self._prefix.replace("_", r"\_") + "%"},
                )
            ).scalars()
            found = list(names)
        for name in found:
            await self._drop(name)

    async def close(self) -> None:
        await self._admin.dispose()


_CLIENTS = "FROM pg_stat_activity WHERE datname = :name AND backend_type = 'client backend'"


# Processes ---------------------------------------------------------------------------------


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This environment without any setting of the project (DATABASE_URL, BOT_TOKEN, REDIS_URL,
    …), so that the commands use only what the harness gives them."""
    environment = dict(os.environ)
    for name in Settings.model_fields:
        environment.pop(name.upper(), None)
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), environment.get("PYTHONPATH")])
    )
    return environment | (extra or {})


def program(name: str) -> list[str]:
    """How to run a command by exec (STAGEKEEPER_CRASH_EXEC=1)."""
    if name == "stagekeeper":
        script = Path(sys.executable).with_name("stagekeeper")
        return [str(script)] if script.exists() else [sys.executable, "-m", "bot"]
    if name == "bulk-move":
        return [sys.executable, "-m", "tests.crash.bulk_move"]
    raise ValueError(name)


@dataclass
class Ended:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def killed(self) -> bool:
        return self.returncode == -signal.SIGKILL

    def describe(self) -> str:
        return f"exit {self.returncode}: {(self.stderr or self.stdout).strip()[-2000:]}"


class Zygote:
    """The forker of the commands (tests/crash/zygote.py), shared by the event loops of a test
    session: its answers are read on a thread of their own and handed over as futures."""

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.crash.zygote"],
            cwd=ROOT,
            env=child_environment(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._lock = threading.Lock()
        self._numbers = itertools.count()
        self._starting: dict[int, Future[int]] = {}
        self._ended: dict[int, Future[int]] = {}
        threading.Thread(target=self._read, name="crash-zygote", daemon=True).start()

    def _send(self, request: dict[str, Any]) -> None:
        assert self._process.stdin is not None
        self._process.stdin.write(json.dumps(request).encode() + b"\n")
        self._process.stdin.flush()

    def start(self, request: dict[str, Any]) -> Future[int]:
        """A command forked as `request` says (tests/crash/zygote.py): its pid, once forked."""
        started: Future[int] = Future()
        with self._lock:
            number = next(self._numbers)
            self._starting[number] = started
            self._send({"start": number, **request})
        return started

    def kill(self, pid: int) -> None:
        with self._lock:
            self._send({"kill": pid})

    def ended(self, pid: int) -> Future[int]:
        """The wait status of process `pid`, once it ended."""
        with self._lock:
            return self._ended.setdefault(pid, Future())

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            what, *numbers = line.split()
            with self._lock:
                if what == b"started":
                    self._starting.pop(int(numbers[0])).set_result(int(numbers[1]))
                else:
                    told = self._ended.setdefault(int(numbers[0]), Future())
                    told.set_result(int(numbers[1]))
        with self._lock:  # the zygote is gone, and so are its children
            for future in [*self._starting.values(), *self._ended.values()]:
                if not future.done():
                    future.set_exception(CrashFailure("the crash tests' zygote ended"))

    def close(self) -> None:
        """Ends it; it kills whatever it started that still runs."""
        assert self._process.stdin is not None
        self._process.stdin.close()
        self._process.wait(timeout=WAIT)


class Running(ABC):
    """A command in a session of its own (its children, an import's reader, with it)."""

    def __init__(self, pid: int, command: Sequence[str]) -> None:
        self.pid = pid
        self.command = command
        self.started = time.monotonic()

    @property
    @abstractmethod
    def done(self) -> bool: ...

    @abstractmethod
    def kill(self) -> None: ...

    @abstractmethod
    async def _finished(self) -> tuple[int, str, str]: ...

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    async def ended(self, within: float = WAIT * 5) -> Ended:
        try:
            returncode, out, err = await asyncio.wait_for(self._finished(), within)
        except TimeoutError:
            self.kill()
            raise CrashFailure(
                f"`{' '.join(self.command)}` ran for more than {within:.0f} s"
            ) from None
        return Ended(returncode, out, err, self.elapsed())

    def session_left(self) -> list[str]:
        """Processes of its session still running (not zombies): what a kill left behind."""
        return [line for pid, line in _processes_of_session(self.pid)]

    def kill_session(self) -> None:
        for pid, _ in _processes_of_session(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Executed(Running):
    def __init__(self, process: asyncio.subprocess.Process, command: Sequence[str]) -> None:
        super().__init__(process.pid, command)
        self._process = process
        self._output = asyncio.ensure_future(process.communicate())

    @property
    def done(self) -> bool:
        return self._output.done()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self._process.kill()

    async def _finished(self) -> tuple[int, str, str]:
        out, err = await asyncio.shield(self._output)
        assert self._process.returncode is not None
        return self._process.returncode, out.decode(errors="replace"), err.decode(errors="replace")


class Forked(Running):
    def __init__(
        self, zygote: Zygote, pid: int, command: Sequence[str], out: Path, err: Path
    ) -> None:
        super().__init__(pid, command)
        self._zygote = zygote
        self._status = asyncio.wrap_future(zygote.ended(pid))
        self._out = out
        self._err = err

    @property
    def done(self) -> bool:
        return self._status.done()

    def kill(self) -> None:
        if not self.done:
            self._zygote.kill(self.pid)

    async def _finished(self) -> tuple[int, str, str]:
        status = await asyncio.shield(self._status)
        out = self._out.read_text(errors="replace")
        err = self._err.read_text(errors="replace")
        return os.waitstatus_to_exitcode(status), out, err


def _processes_of_session(session: int) -> Iterator[tuple[int, str]]:
    proc = Path("/proc")
    if not proc.exists():
        return
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        # pid (comm) state ppid pgrp session …; comm may hold spaces and parentheses.
        state, _, _, sid = stat[stat.rindex(")") + 2 :].split()[:4]
        if int(sid) == session and state not in "ZX":
            yield int(entry.name), f"{entry.name} {command}"


@dataclass
class Runner:
    """Starts commands with `--database-url`, forked by `zygote`, or executed without one."""

    workdir: Path
    zygote: Zygote | None = None
    extra_environment: dict[str, str] = field(default_factory=dict)
    _running: set[Running] = field(default_factory=set)
    _numbers: Iterator[int] = field(default_factory=itertools.count)

    async def start(self, command: Sequence[str], url: str) -> Running:
        arguments = [*command, "--database-url", url]
        environment = child_environment(self.extra_environment)
        running: Running
        if self.zygote is not None:
            logs = self.workdir / "logs"
            logs.mkdir(parents=True, exist_ok=True)
            number = next(self._numbers)
            out, err = logs / f"{number}.out", logs / f"{number}.err"
            request = {
                "argv": arguments,
                "env": environment,
                "cwd": str(self.workdir),
                "out": str(out),
                "err": str(err),
            }
            pid = await asyncio.wrap_future(self.zygote.start(request))
            running = Forked(self.zygote, pid, command, out, err)
        else:
            name, *rest = arguments
            process = await asyncio.create_subprocess_exec(
                *program(name),
                *rest,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=self.workdir,
                env=environment,
                start_new_session=True,
            )
            running = Executed(process, command)
        self._running.add(running)
        return running

    async def run(self, command: Sequence[str], url: str) -> Ended:
        """To the end; a failure is a CrashFailure naming the command and its reason."""
        running = await self.start(command, url)
        ended = await running.ended()
        self._running.discard(running)
        if ended.returncode != 0:
            raise CrashFailure(f"`{' '.join(command)}` failed: {ended.describe()}")
        return ended

    def forget(self, running: Running) -> None:
        self._running.discard(running)

    def kill_all(self) -> None:
        """Whatever is still running (a test that failed midway): no process outlives it."""
        for running in self._running:
            running.kill()
            running.kill_session()
        self._running.clear()


# What a database holds ---------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    """What an operation may change, by natural keys (PostgreSQL sequences leave gaps where a
    killed transaction took ids, so a run again gives new rows other ids)."""

    contacts: dict[str, tuple[str | None, int]]  # external id → (stage, version)
    history: tuple[tuple[str, int], ...]  # rows per source
    operations: tuple[tuple[str, str, int, bool], ...]  # kind, description, contacts, undone
    stages: tuple[tuple[str, str, int, bool], ...]  # name, category, position, archived
    undo_images: int
    people: tuple[tuple[str, str], ...]  # name, role
    companies: int

    def differences(self, other: State, label: str) -> str:
        """How this differs from `other`, in a few words."""
        parts = []
        if self.contacts != other.contacts:
            keys = self.contacts.keys() | other.contacts.keys()
            changed = sum(1 for key in keys if self.contacts.get(key) != other.contacts.get(key))
            parts.append(f"{changed} of {len(keys)} contacts differ")
        for name in ("history", "operations", "stages", "undo_images", "people", "companies"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if mine != theirs:
                parts.append(f"{name} {mine} where {label} {theirs}")
        return "; ".join(parts) or "no difference"


async def state_of(url: str) -> State:
    engine = make_engine(url)
    try:
        async with engine.connect() as connection:

            async def rows(statement: str) -> list[Any]:
                return list(await connection.execute(text(statement)))

            stage_names = {row.id: row.name for row in await rows("SELECT id, name FROM stages")}
            contacts = {
                row.external_id or f"#{row.id}": (stage_names.get(row.stage_id), row.version)
                for row in await rows("SELECT id, external_id, stage_id, version FROM contacts")
            }
            history = await rows(
                "SELECT source, count(*) FROM stage_changes GROUP BY source ORDER BY source"
            )
            operations = await rows(
                "SELECT kind, description, contacts, undone_at IS NOT NULL AS undone "
                "FROM operations ORDER BY id"
            )
            stages = await rows(
                "SELECT name, category, position, archived_at IS NOT NULL AS archived "
                "FROM stages ORDER BY name, archived_at"
            )
            items = await connection.scalar(text("SELECT count(*) FROM operation_items"))
            people = await rows("SELECT name, role FROM users ORDER BY name, role")
            companies = await connection.scalar(text("SELECT count(*) FROM companies"))
    finally:
        await engine.dispose()
    return State(
        contacts,
        tuple((source, count) for source, count in history),
        tuple(
            (kind, description, count, bool(undone))
            for kind, description, count, undone in operations
        ),
        tuple(
            (name, category, position, bool(archived))
            for name, category, position, archived in stages
        ),
        int(items or 0),
        tuple((name, role) for name, role in people),
        int(companies or 0),
    )


async def integrity_problems(store: Store, name: str) -> list[str]:
    """What is wrong with the database's structure and derived rows, beyond reports."""
    problems = []
    if isinstance(store, SqliteStore):
        problems += await asyncio.to_thread(_sqlite_problems, store.path(name))
    engine = make_engine(store.url(name))
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                text(
                    "SELECT c.id, c.name, co.name_key, c.search_text FROM contacts c "
                    "LEFT JOIN companies co ON co.id = c.company_id"
                )
            )
            wrong = [
                row.id for row in rows if search_text(row.name, row.name_key) != row.search_text
            ]
            if wrong:
                problems.append(
                    f"{len(wrong)} contacts' search text is not their name's: {wrong[:5]}"
                )
            astray = await connection.scalar(text(ASTRAY))
            if astray:
                problems.append(f"{astray} contacts are not in the stage their history ends in")
    finally:
        await engine.dispose()
    return problems


# Contacts whose stage is not the target of their last history row (by time, then id).
ASTRAY = """
SELECT count(*) FROM contacts c
WHERE EXISTS (SELECT 1 FROM stage_changes h WHERE h.contact_id = c.id)
  AND c.stage_id IS DISTINCT FROM (
    SELECT h.to_stage_id FROM stage_changes h WHERE h.contact_id = c.id
    ORDER BY h.at DESC, h.id DESC LIMIT 1)
"""


def _sqlite_problems(path: Path) -> list[str]:
    problems = []
    # Opening the file after a kill recovers from its write-ahead log, as the next command does.
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        result = [row[0] for row in connection.execute("PRAGMA integrity_check")]
        if result != ["ok"]:
            problems.append(f"PRAGMA integrity_check: {result[:10]}")
        orphans = connection.execute("PRAGMA foreign_key_check").fetchall()
        if orphans:
            problems.append(f"PRAGMA foreign_key_check: {len(orphans)} rows, {orphans[:5]}")
        try:
            # Raises if an entry of the index is missing, extra or not the contact's text.
            connection.execute(
                "INSERT INTO contact_search(contact_search, rank) VALUES ('integrity-check', 1)"
            )
        except sqlite3.DatabaseError as error:
            problems.append(f"FTS5 integrity-check of contact_search: {error}")
    finally:
        connection.close()
    return problems


async def _report_rows(session: Any) -> list[list[tuple[Any, ...]]]:
    """As tests/integration/reporting.py reads them: report_stay_blocks' rows whose stays all
    went (n = 0) left out, as a recount does not write them."""
    blocks = ReportStayBlockRow.__table__
    tables = (ReportContactRow.__table__, ReportMoveRow.__table__, blocks)
    result = []
    for table in tables:
        query = table.select().order_by(*table.primary_key)
        if table is blocks:
            query = query.where(blocks.c.n != 0)
        result.append([tuple(row) for row in await session.execute(query)])
    return result


async def reports_digest(url: str) -> str:
    """A digest of the report tables' rows."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            rows = await _report_rows(session)
    finally:
        await engine.dispose()
    return hashlib.sha256(repr(rows).encode()).hexdigest()


async def reports_mismatch(url: str) -> str | None:
    """How the report tables differ from a recount from scratch (in a transaction rolled back,
    so that the next command finds the database as the kill left it), or None."""
    engine = make_engine(url)
    try:
        async with make_sessionmaker(engine)() as session:
            kept = await _report_rows(session)
            await recount(session)
            counted = await _report_rows(session)
            await session.rollback()
    finally:
        await engine.dispose()
    differences = []
    for name, mine, fresh in zip(
        ("report_contacts", "report_moves", "report_stay_blocks"), kept, counted, strict=True
    ):
        if mine != fresh:
            extra = len(set(mine) - set(fresh))
            missing = len(set(fresh) - set(mine))
            differences.append(f"{name}: {extra} rows not in the recount, {missing} missing")
    return "; ".join(differences) or None


# Telegram, for the digest ------------------------------------------------------------------


class Telegram:
    """The sandbox's Bot API in this process, with the admins as users who started the bot."""

    def __init__(self) -> None:
        from sandbox import Emulator

        self.emulator = Emulator(default_token=TOKEN)
        self.url = ""
        self._runner: Any = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        from aiohttp import web

        from sandbox.app import MAX_REQUEST_SIZE

        app = web.Application(client_max_size=MAX_REQUEST_SIZE)
        self.emulator.install(app)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        self._http = aiohttp.ClientSession()
        for telegram_id in ADMINS:
            await self._post("/sandbox/users", id=telegram_id, first_name=f"Admin {telegram_id}")
            await self._post("/sandbox/send", user_id=telegram_id, text="/start")

    async def _post(self, path: str, **body: Any) -> Any:
        assert self._http is not None
        async with self._http.post(self.url + path, json=body) as response:
            response.raise_for_status()
            return await response.json()

    async def sent(self) -> list[int]:
        """The chats of every message the bot has sent so far, in order."""
        assert self._http is not None
        query = {"method": "sendMessage"}
        async with self._http.get(self.url + "/sandbox/requests", params=query) as response:
            entries = (await response.json())["requests"]
        return [int(entry["params"]["chat_id"]) for entry in entries if "result" in entry]

    @property
    def environment(self) -> dict[str, str]:
        return {"BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE": self.url}

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()


# Scenarios ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """A command to kill, run on the seeded database after `setup` (commands run to the end).
    `{import}` names the import file, `{operation}` the last operation of the database it runs
    on."""

    name: str
    command: tuple[str, ...]
    setup: tuple[tuple[str, ...], ...] = ()
    digest: bool = False


CREATING = ("--create-stages", "--create-owners")
IMPORT = ("stagekeeper", "import", "{import}", *CREATING)
IMPORT_READ_BY_CHILD = ("stagekeeper", "import", "{import-padded}", *CREATING)
BULK_MOVE = ("bulk-move", "Trần", "SQL", "--reason", "crash test")
STAGE_DELETE = ("stagekeeper", "stages", "delete", "MQL", "--reassign-to", "SQL")
UNDO = ("stagekeeper", "undo", "{operation}")

SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("import", IMPORT),
        Scenario("import-read-by-child", IMPORT_READ_BY_CHILD),
        Scenario("bulk-move", BULK_MOVE),
        Scenario("stage-delete", STAGE_DELETE),
        Scenario("undo-import", UNDO, setup=(IMPORT,)),
        Scenario("undo-bulk-move", UNDO, setup=(BULK_MOVE,)),
        Scenario("undo-stage-delete", UNDO, setup=(STAGE_DELETE,)),
        Scenario("digest", ("stagekeeper", "digest", "--now"), digest=True),
    )
}


@dataclass
class Start:
    """A scenario's starting database and what a run to the end does to it."""

    scenario: Scenario
    database: str
    command: tuple[str, ...]
    before: State
    after: State
    seconds: float  # the run to the end
    # When, from its start, it first had the database open, was inside write transactions,
    # and had sent each of its messages (the digest).
    opened: float
    writes: list[tuple[float, float]]
    messages: list[float]
    reports: str  # a digest of the report tables before it
    reports_recounted: bool  # whether those were found equal to a recount
    # The share of the measured times that kills are drawn from: a run that ends before its
    # kill (the one measured was slower, on a loaded machine) makes it smaller.
    pace: float = 1.0


@dataclass
class Tally:
    """The kills of a run and what they found."""

    seed: int
    kills: int = 0
    in_writes: int = 0
    finished_first: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    last: str = ""  # what the last kill left
    failures: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.kills += other.kills
        self.in_writes += other.in_writes
        self.finished_first += other.finished_first
        self.outcomes.update(other.outcomes)
        self.failures += other.failures

    def summary(self) -> str:
        outcomes = ", ".join(f"{what} {count}" for what, count in sorted(self.outcomes.items()))
        return (
            f"{self.kills} kills ({self.in_writes} timed from inside a write transaction), "
            f"{self.finished_first} runs ended before their kill; after the kill: "
            f"{outcomes or 'nothing'}; {len(self.failures)} failures; "
            f"seed {self.seed} (replay: {SEED_VARIABLE}={self.seed})"
        )


class Steps:
    """How long the steps of something took, for the log."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        began = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - began

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.seconds.items())


@dataclass
class Plan:
    """When to kill: `delay` seconds after a point of the run that can be observed."""

    mode: str  # "write", "log", "open" or "message": see the module's docstring
    delay: float
    count: int = 0

    def __str__(self) -> str:
        after = {
            "write": "its writes began",
            "log": "its write-ahead log grew in a write transaction",
            "committed": "its write transaction ended",
            "message": f"message {self.count} went out",
            "open": "it opened the database",
        }
        return f"{self.delay * 1000:.0f} ms after {after[self.mode]}"


def plan(start: Start, rng: random.Random, *, log_seen: bool = False) -> Plan:
    """Where to kill: a moment drawn from the run to the end, measured from a point that can
    be observed (the time up to it goes mostly to importing code, where a kill tells nothing).
    `log_seen`: whether the database's write-ahead log can be watched (SQLite's)."""
    choice = rng.random()
    if start.messages:  # the digest
        if choice < 0.6:
            count = rng.randint(1, len(start.messages))
            gaps = [b - a for a, b in itertools.pairwise(start.messages)]
            gap = max(gaps, default=0.05) * 1.5
            return Plan("message", rng.uniform(0, gap) * start.pace, count)
    elif choice < 0.2 and log_seen:
        return Plan("log", rng.uniform(0, 0.005))
    elif choice >= 0.85:  # after its commit: SQLite's checkpoint, the close
        return Plan("committed", rng.uniform(0, 0.02))
    written = sum(end - begin for begin, end in start.writes)
    if written and not start.messages and choice < 0.6:
        point = rng.uniform(0, written)
        if choice < 0.35:  # in the last 50 ms of the writes, where the commit is
            point = written - rng.uniform(0, min(0.05, written / 5))
        for begin, end in start.writes:  # the moment `point` into the writes, from the first
            if point <= end - begin:
                return Plan("write", (begin + point - start.writes[0][0]) * start.pace)
            point -= end - begin
    return Plan("open", rng.uniform(0, (start.seconds - start.opened) * 1.05) * start.pace)


class Harness:
    """Kills scenarios' commands on one kind of database. The seeded database and each
    scenario's start are made once and kept in `cache` (shared by the harnesses of a test
    session, whose event loops differ)."""

    def __init__(
        self,
        store: Store,
        workdir: Path,
        contacts: int,
        cache: dict[str, Any] | None = None,
        log: Callable[[str], None] = lambda line: None,
        zygote: Zygote | None = None,
        files: Path | None = None,
    ) -> None:
        self.store = store
        self.workdir = workdir
        self.files = files or workdir
        self.contacts = contacts
        self.cache = cache if cache is not None else {}
        self.log = log
        self.runner = Runner(workdir, zygote)
        self.telegram: Telegram | None = None

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Harness]:
        try:
            yield self
        finally:
            self.runner.kill_all()
            if self.telegram is not None:
                await self.telegram.stop()
            await self.store.close()

    # Preparation

    async def _seeded(self) -> str:
        if "seed" not in self.cache:
            steps = Steps()
            self.workdir.mkdir(parents=True, exist_ok=True)
            with steps("files"):
                files = data.write(self.files, self.contacts)
            url = self.store.url("seed")
            admins = [argument for tid in ADMINS for argument in ("--admin", str(tid))]
            with steps("init"):
                await self.store.create("seed")
                await self.runner.run(("stagekeeper", "init", "--template", "amis", *admins), url)
            with steps("import"):
                seed = ("stagekeeper", "import", str(files.seed), "--create-owners")
                await self.runner.run(seed, url)
            with steps("moves"):
                await self.runner.run(("stagekeeper", "import", str(files.seed_moves)), url)
            with steps("checks"):
                # Its report tables too: a kill that leaves nothing done must leave them as
                # they were, and a kill's checks then compare them with the start's.
                problems = await integrity_problems(self.store, "seed")
                mismatch = await reports_mismatch(url)
            if problems or mismatch:
                raise CrashFailure(f"the seeded database itself: {problems} {mismatch}")
            self.cache["seed"] = {
                "{import}": str(files.import_file),
                "{import-padded}": str(files.import_padded),
            }
            self.log(
                f"{self.store.kind}: seeded {self.contacts:,} contacts through the command "
                f"line: {steps}"
            )
        return "seed"

    def _command(self, command: tuple[str, ...], operation: int | None) -> tuple[str, ...]:
        names: dict[str, str] = dict(self.cache["seed"])
        names["{operation}"] = str(operation)
        return tuple(names.get(part, part) for part in command)

    async def _last_operation(self, database: str) -> int | None:
        engine = make_engine(self.store.url(database))
        try:
            async with engine.connect() as connection:
                last = await connection.scalar(text("SELECT max(id) FROM operations"))
        finally:
            await engine.dispose()
        return None if last is None else int(last)

    async def start(self, scenario: Scenario) -> Start:
        key = f"start:{scenario.name}"
        if key not in self.cache:
            seed = await self._seeded()
            steps = Steps()
            database = "start_" + scenario.name.replace("-", "_")
            url = self.store.url(database)
            with steps("copy"):
                await self.store.clone(seed, database)
            with steps("setup"):
                for step in scenario.setup:
                    await self.runner.run(self._command(step, None), url)
            command = self._command(scenario.command, await self._last_operation(database))
            before = await state_of(url)
            reports = await reports_digest(url)
            await self.store.clone(database, "run")
            with steps("run"):
                running, opened, writes, messages = await self._observed(scenario, command)
                ended = await running.ended()
                self.runner.forget(running)
            if ended.returncode != 0:
                raise CrashFailure(f"`{' '.join(command)}` failed: {ended.describe()}")
            after = await state_of(self.store.url("run"))
            if not scenario.digest and after == before:
                raise CrashFailure(f"`{' '.join(command)}` changed nothing: {ended.stdout}")
            self.cache[key] = Start(
                scenario,
                database,
                command,
                before,
                after,
                ended.seconds,
                opened,
                writes,
                messages,
                reports,
                reports_recounted=not scenario.setup,  # the seeded database's were
            )
            self.log(
                f"{self.store.kind} {scenario.name}: a run to the end took {ended.seconds:.2f} s, "
                f"{sum(e - b for b, e in writes):.2f} s of it in write transactions"
                + (f", {len(messages)} messages" if scenario.digest else "")
                + f" (preparing: {steps})"
            )
        start: Start = self.cache[key]
        return start

    async def started_telegram(self) -> Telegram:
        if self.telegram is None:
            self.telegram = Telegram()
            await self.telegram.start()
            self.runner.extra_environment.update(self.telegram.environment)
        return self.telegram

    async def _observed(
        self, scenario: Scenario, command: tuple[str, ...]
    ) -> tuple[Running, float, list[tuple[float, float]], list[float]]:
        """Runs the command on "run" to the end, noting when it first had the database open,
        when it was inside write transactions and when each of its messages went out."""
        telegram = await self.started_telegram() if scenario.digest else None
        already = len(await telegram.sent()) if telegram else 0
        running = await self.runner.start(command, self.store.url("run"))
        opened: float | None = None
        writes: list[tuple[float, float]] = []
        messages: list[float] = []
        began: float | None = None
        while not running.done:
            now = running.elapsed()
            if opened is None and await self.store.connected("run", running.pid):
                opened = now
            if await self.store.writing("run", running.pid):
                began = now if began is None else began
            elif began is not None:
                writes.append((began, now))
                began = None
            if telegram is not None:
                count = len(await telegram.sent()) - already
                messages += [now] * (count - len(messages))
            await asyncio.sleep(POLL)
        if began is not None:
            writes.append((began, running.elapsed()))
        return running, opened or 0.0, writes, messages

    async def _reached(self, running: Running, chosen: Plan, sent: Callable[[], Any]) -> None:
        """Waits until the run reaches the point of `chosen` (or ends)."""
        log_size: int | None = None  # when its write transaction was first seen
        wrote = False
        while not running.done:
            if chosen.mode == "write":
                reached = await self.store.writing("run", running.pid)
            elif chosen.mode == "committed":
                writing = await self.store.writing("run", running.pid)
                reached = wrote and not writing
                wrote = wrote or writing
            elif chosen.mode == "log":
                # The log grows as a commit writes the transaction's pages (or as they spill
                # from the cache): a kill then stops the commit midway.
                reached = False
                if await self.store.writing("run", running.pid):
                    size = self.store.log_size("run")
                    reached = log_size is not None and size > log_size
                    log_size = size if log_size is None else log_size
                else:
                    log_size = None
            elif chosen.mode == "message":
                reached = await sent() >= chosen.count
            else:
                reached = await self.store.connected("run", running.pid)
            if reached:
                return
            await asyncio.sleep(POLL)

    # Kills

    async def kill(self, scenario: Scenario, rng: random.Random, tally: Tally) -> None:
        """One run of the scenario's command killed as `plan` draws it, and every check."""
        start = await self.start(scenario)
        chosen = plan(start, rng, log_seen=isinstance(self.store, SqliteStore))
        telegram = await self.started_telegram() if scenario.digest else None
        await self.store.clone(start.database, "run")
        url = self.store.url("run")
        messages_before = len(await telegram.sent()) if telegram else 0

        async def sent() -> int:
            return len(await telegram.sent()) - messages_before if telegram else 0

        began = time.monotonic()
        running = await self.runner.start(start.command, url)
        await self._reached(running, chosen, sent)
        await asyncio.sleep(chosen.delay)
        running.kill()
        ended = await running.ended()
        self.runner.forget(running)
        where = f"{self.store.kind} {scenario.name}, killed {chosen}"
        if ended.killed:
            tally.kills += 1
            tally.in_writes += chosen.mode in ("write", "log")
        else:
            tally.finished_first += 1
            start.pace *= 0.7 if chosen.mode in ("write", "open") else 1
            where = f"{self.store.kind} {scenario.name}, run to the end before its kill {chosen}"
            if ended.returncode != 0:
                tally.failures.append(f"{where}: {ended.describe()}")
                return
        failures = await self._left_running(running)
        await self.store.settled("run")
        await self.store.snapshot("run")
        if scenario.digest:
            assert telegram is not None
            failures += await self.check_digest(
                start, telegram, messages_before, tally, ended.killed
            )
        else:
            failures += await self.check_operation(start, tally, ended.killed)
        if failures:
            self.cache["kept"] = number = self.cache.get("kept", 0) + 1
            kept = self.store.keep(self.workdir / f"killed-{number}-{scenario.name}.db")
            for failure in failures:
                tally.failures.append(
                    f"{where}: {failure}" + (f" (the database is kept at {kept})" if kept else "")
                )
        checked = "; ".join(failures) or "ok"
        self.log(f"{where}: {tally.last}, {checked} ({time.monotonic() - began:.1f} s)")

    async def _left_running(self, running: Running) -> list[str]:
        """Processes the command started (an import's reader) must end with it."""
        try:
            await wait_for(lambda: not running.session_left(), "the command's children to end", 30)
        except CrashFailure:
            left = running.session_left()
            running.kill_session()
            return [f"processes left running after the kill: {left}"]
        return []

    async def check_operation(self, start: Start, tally: Tally, killed: bool) -> list[str]:
        url = self.store.url("run")
        failures = await integrity_problems(self.store, "run")
        state = await state_of(url)
        if state == start.before:
            outcome = "nothing done"
        elif state == start.after:
            outcome = "all done"
        else:
            outcome = "partly done"
            failures.append(
                "partly done: "
                + state.differences(start.before, "before it had")
                + " / "
                + state.differences(start.after, "a run to the end has")
            )
        tally.outcomes[outcome] += killed
        tally.last = outcome
        if not killed and outcome != "all done":
            failures.append(f"it ended with exit 0 and left the database {outcome}")
        if outcome != "nothing done" or not start.reports_recounted:
            mismatch = await reports_mismatch(url)
            if outcome == "nothing done" and not mismatch:
                start.reports_recounted = await reports_digest(url) == start.reports
        elif await reports_digest(url) != start.reports:  # those equal a recount
            mismatch = await reports_mismatch(url) or "they changed, though nothing else did"
        else:
            mismatch = None
        if mismatch:
            failures.append(f"report tables differ from a recount: {mismatch}")
        if not killed:
            return failures
        try:
            if outcome == "all done":
                failures += await self._operations_listed(state)
            else:
                await self.runner.run(start.command, url)
                again = await state_of(url)
                if again != start.after:
                    failures.append(
                        "the command run again after the kill: "
                        + again.differences(start.after, "a run to the end has")
                    )
        except CrashFailure as failure:
            failures.append(f"the next command: {failure}")
        return failures

    async def _operations_listed(self, state: State) -> list[str]:
        ended = await self.runner.run(
            ("stagekeeper", "operations", "--json"), self.store.url("run")
        )
        listed = [
            (op["kind"], op["description"], op["undone_at"] is not None)
            for op in json.loads(ended.stdout)
        ]
        stored = [(kind, description, undone) for kind, description, _, undone in state.operations]
        if listed[::-1] != stored[len(stored) - len(listed) :]:
            return [f"`stagekeeper operations` lists {listed}, the database holds {stored}"]
        return []

    async def _deliveries(self) -> dict[int, bool]:
        """Telegram id → whether the claimed morning message was recorded as sent."""
        engine = make_engine(self.store.url("run"))
        try:
            async with engine.connect() as connection:
                rows = await connection.execute(
                    text(
                        "SELECT u.telegram_id, d.sent_at IS NOT NULL FROM deliveries d "
                        "JOIN users u ON u.id = d.user_id"
                    )
                )
                return {int(telegram_id): bool(sent) for telegram_id, sent in rows}
        finally:
            await engine.dispose()

    async def check_digest(
        self, start: Start, telegram: Telegram, before: int, tally: Tally, killed: bool
    ) -> list[str]:
        failures = await integrity_problems(self.store, "run")
        first = Counter((await telegram.sent())[before:])
        went = len(first)
        tally.last = (
            "no message sent"
            if not went
            else "all messages sent"
            if went == len(ADMINS)
            else "some messages sent"
        )
        tally.outcomes[tally.last] += killed
        twice = {chat: n for chat, n in first.items() if n > 1}
        if twice:
            failures.append(f"morning messages sent twice in one run: {twice}")
        claims = await self._deliveries()
        unrecorded = [chat for chat, sent in claims.items() if sent and not first[chat]]
        if unrecorded:
            failures.append(f"recorded as sent, never received: {unrecorded}")
        if not killed:
            return failures
        try:
            await self.runner.run(start.command, self.store.url("run"))
        except CrashFailure as failure:
            return [*failures, f"the next command: {failure}"]
        received = Counter((await telegram.sent())[before:])
        twice = {chat: n for chat, n in received.items() if n > 1}
        if twice:
            failures.append(f"morning messages sent twice, by the killed run and the next: {twice}")
        claims = await self._deliveries()
        unclaimed = sorted(set(ADMINS) - set(claims))
        if unclaimed:
            failures.append(
                f"the run after the kill did not take these people's messages: {unclaimed}"
            )
        # A kill between a claim and its send loses that one message (it is never sent twice);
        # the run is sequential, so at most one was in flight.
        lost = [chat for chat in claims if not received[chat]]
        if len(lost) > 1:
            failures.append(f"messages lost by one kill: {lost}")
        return failures

    async def kill_repeatedly(
        self, scenario: Scenario, rng: random.Random, kills: int, tally: Tally
    ) -> None:
        """Until `kills` kills landed (a run may end before its kill), at most 3 × kills runs."""
        for _ in range(kills * 3):
            if tally.kills >= kills:
                return
            await self.kill(scenario, rng, tally)
