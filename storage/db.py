"""Engines: SQLite by default (WAL, foreign keys, busy timeout), PostgreSQL through asyncpg."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import DateTime, event
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.types import TypeDecorator

from domain.ports import DatabaseBusy, DatabaseFull, DatabaseUnavailable
from storage import pipeline, sqlite_driver

BUSY_TIMEOUT_MS = 10_000
Synchronous = Literal["NORMAL", "FULL"]
CACHE_KIB = 64 * 1024
# Of a new database file (an existing one keeps its own): bulk writes touch fewer, fuller pages,
# about a tenth faster for a stage deletion of a million contacts than with 4 KiB.
PAGE_SIZE = 16_384
# An execution option of a bulk unit of work's connection (domain.ports.UnitOfWorkFactory):
# SQLite checks no foreign key in it. Its statements copy references the same transaction read
# or wrote, and the checks, a look-up in the referenced table per reference per row, made up
# about a tenth of a stage deletion of a million contacts.
UNCHECKED_REFERENCES = "stagekeeper_unchecked_references"
# An execution option of a connection that only reads: on SQLite its transaction begins deferred,
# taking no write lock, so it waits for no writer (an import holding the lock included).
READ_ONLY = "stagekeeper_read_only"
# The pages a move of a large share of the contacts keeps (storage.bulk.keep_more_pages), until
# the connection's next transaction: it inserts their stays into an index in no particular
# order. An import is faster with CACHE_KIB (23 s against 25 s for a million new contacts).
LARGE_MOVE_CACHE_KIB = 256 * 1024
# The key, in a connection's info, of the cache it was given, when not CACHE_KIB.
CACHE_SETTING = "stagekeeper_cache_kib"
# The checkpointer copies the write-ahead log into the database at most this often.
CHECKPOINT_INTERVAL_S = 1.0

log = logging.getLogger(__name__)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime; the domain works in aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(
    url: str,
    *,
    busy_timeout_ms: int | None = None,
    synchronous: Synchronous = "NORMAL",
    **kwargs: Any,
) -> AsyncEngine:
    """`busy_timeout_ms`: how long a SQLite statement waits for another connection's write
    lock before it fails with "database is locked" (BUSY_TIMEOUT_MS, read when called).
    `synchronous`: SQLite's; NORMAL may lose the last commits on a power loss, FULL does not
    (README, "Running for real")."""
    if busy_timeout_ms is None:
        busy_timeout_ms = BUSY_TIMEOUT_MS
    # Keys stored as written (not \u-escaped), so that SQLite's JSON paths find "Ngành". One
    # encoder for all: json.dumps with an option makes a new one each call, which costs as
    # much as encoding a before-image (an import writes one for every contact it changes).
    kwargs.setdefault("json_serializer", json.JSONEncoder(ensure_ascii=False).encode)
    if is_sqlite(url) and ":memory:" not in url:
        # Every writing unit of work takes SQLite's one write lock (BEGIN IMMEDIATE), so a second
        # connection could only wait in SQLite's busy handler, which sleeps up to 100 ms between
        # tries: under load, one connection with the others waiting in line is much faster.
        kwargs.setdefault("pool_size", 1)
        kwargs.setdefault("max_overflow", 0)
    if is_sqlite(url):
        kwargs.setdefault("async_creator", sqlite_driver.connector(url))
    engine = create_async_engine(url, **kwargs)
    pipeline.watch(engine)
    if engine.dialect.name == "sqlite":
        _tune_sqlite(engine, busy_timeout_ms, synchronous)
        path = engine.url.database
        if path and path != ":memory:" and not path.startswith("file:"):
            _Checkpointer(path).watch(engine)
    return engine


# What a driver's error says of the database when it is no fault of the request. SQLite's
# primary result codes (the low byte of an extended code): another connection's write lock, a
# full disk or max_page_count, a failing or unreadable file.
_SQLITE_CODES: dict[int, type[DatabaseUnavailable]] = {
    sqlite3.SQLITE_BUSY: DatabaseBusy,
    sqlite3.SQLITE_LOCKED: DatabaseBusy,
    sqlite3.SQLITE_FULL: DatabaseFull,
    sqlite3.SQLITE_IOERR: DatabaseUnavailable,
    sqlite3.SQLITE_CANTOPEN: DatabaseUnavailable,
    sqlite3.SQLITE_READONLY: DatabaseUnavailable,
    sqlite3.SQLITE_CORRUPT: DatabaseUnavailable,
    sqlite3.SQLITE_NOTADB: DatabaseUnavailable,
}
# PostgreSQL's SQLSTATEs: a lock not granted in lock_timeout, a full disk, too many connections,
# a server shutting down or starting, an I/O error; and class 08, a connection lost or refused.
_POSTGRES_STATES: dict[str, type[DatabaseUnavailable]] = {
    "55P03": DatabaseBusy,
    "53100": DatabaseFull,
    "53300": DatabaseUnavailable,
    "57P01": DatabaseUnavailable,
    "57P02": DatabaseUnavailable,
    "57P03": DatabaseUnavailable,
    "58030": DatabaseUnavailable,
}


def unavailable(error: BaseException) -> DatabaseUnavailable | None:
    """What a driver's error means when it is no fault of the request (storage.uow raises it
    in its place); None for any other error."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    kind: type[DatabaseUnavailable] | None = None
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        # SQLAlchemy saw the connection drop (a server restarted, a backend terminated; asyncpg
        # says so in several ways) and let the pool replace it: the next attempt reconnects.
        kind = DatabaseUnavailable
    elif isinstance(cause, sqlite3.Error):
        kind = _SQLITE_CODES.get(getattr(cause, "sqlite_errorcode", 0) & 0xFF)
    elif isinstance(state := getattr(cause, "sqlstate", None), str):
        kind = _POSTGRES_STATES.get(state, DatabaseUnavailable if state[:2] == "08" else None)
    elif isinstance(cause, ConnectionError):  # the server went away, or is not there
        kind = DatabaseUnavailable
    return kind(str(cause) or type(cause).__name__) if kind else None


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def _tune_sqlite(engine: AsyncEngine, busy_timeout_ms: int, synchronous: Synchronous) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN and SAVEPOINT work as written.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA page_size={PAGE_SIZE}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        # Up to 64 MiB of pages (the default is 2 MiB): an import of a million contacts inserts
        # into indexes of a million entries in no particular order, and a page that must be
        # read back for most of those inserts makes them several times slower.
        cursor.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        # The checkpointer's thread copies the log into the database instead: a commit that
        # wrote hundreds of megabytes would otherwise copy them again before it returns.
        cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        # Only outside a transaction does SQLite take this setting; the connection (kept by the
        # pool across transactions) remembers what it was last set to.
        checked = not connection.get_execution_options().get(UNCHECKED_REFERENCES, False)
        settings = connection.connection.info
        if settings.get("foreign_keys", True) != checked:
            connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if checked else 'OFF'}")
            settings["foreign_keys"] = checked
        if settings.pop(CACHE_SETTING, CACHE_KIB) != CACHE_KIB:
            connection.exec_driver_sql(f"PRAGMA cache_size=-{CACHE_KIB}")
        # IMMEDIATE takes the write lock up front: a transaction that reads and then writes can
        # otherwise fail with SQLITE_BUSY when another writer commits in between, and the busy
        # timeout cannot help with that.
        read_only = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


class _Checkpointer:
    """Copies SQLite's write-ahead log into the database file on a thread and connection of its
    own, after commits (at most once per CHECKPOINT_INTERVAL_S), so that no commit waits for it.
    A passive checkpoint blocks neither readers nor writers; it copies what no reader still
    needs, and the log is reused from its start once all of it has been copied. The last
    connection to close (usually this one, when the engine is disposed) empties the log. An
    engine is not used after it was disposed (Services.close, the migrations' own engine)."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._committed = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def watch(self, engine: AsyncEngine) -> None:
        # A connection goes back to the pool after its transaction ended (SQLAlchemy's commit
        # event comes before the commit).
        event.listen(engine.sync_engine, "checkin", lambda *_: self._committed.set())
        event.listen(engine.sync_engine, "engine_disposed", lambda _engine: self._stop())
        self._thread.start()

    def _stop(self) -> None:
        self._stopping.set()
        self._committed.set()
        self._thread.join()

    def _run(self) -> None:
        connection: sqlite3.Connection | None = None
        try:
            while self._committed.wait() and not self._stopping.is_set():
                self._committed.clear()
                try:
                    connection = connection or self._connect()
                    row = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    _, logged, copied = row
                except sqlite3.Error:
                    log.exception("checkpoint of %s failed", self._path)
                    logged, copied = 1, 0
                if copied < logged:  # a reader still needs part of the log: try again later
                    self._committed.set()
                # Commits that come meanwhile set the event again: one checkpoint takes them all.
                self._stopping.wait(CHECKPOINT_INTERVAL_S)
        finally:
            if connection is not None:
                connection.close()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return connection
