"""A database that cannot take a write right now (issue 17): another process holding SQLite's
write lock past the busy timeout, or a full disk (SQLite's `max_page_count`). The command line
says so in one line and exits 1, read-only commands never wait for the lock, the HTTP API
answers 503 in JSON, a person in chat is told politely to try again, and nothing is changed."""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event, text
from sqlalchemy.pool import Pool

import storage.db
from bot.api import SERVER_OPTIONS, mount_api
from bot.cli import main
from bot.container import build_services
from bot.entrypoints import Sandbox
from bot.settings import Settings
from domain.access import SYSTEM
from storage.db import make_engine
from tests.conftest import empty_postgres
from tests.e2e.conftest import Driver

SHORT_BUSY_TIMEOUT_MS = 200  # the lock is held throughout: waiting longer changes nothing
BUSY = "The database is busy with another write"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def database(tmp_path: Path, sqlite_template: Path) -> Path:
    path = tmp_path / "stagekeeper.db"
    shutil.copy(sqlite_template, path)
    code = main(["init", "--template", "amis", "--database-url", _url(path)])
    assert code == 0
    return path


def _url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def quick_busy_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Engines made from now on wait SHORT_BUSY_TIMEOUT_MS for another's write lock."""
    monkeypatch.setattr(storage.db, "BUSY_TIMEOUT_MS", SHORT_BUSY_TIMEOUT_MS)


@pytest.fixture
def write_lock(database: Path) -> Iterator[sqlite3.Connection]:
    """Another process's transaction holding SQLite's write lock until the test ends it."""
    holder = sqlite3.connect(database, isolation_level=None, timeout=10)
    holder.execute("BEGIN IMMEDIATE")
    yield holder
    if holder.in_transaction:
        holder.execute("ROLLBACK")
    holder.close()


def _stagekeeper(
    *args: str, busy_timeout_ms: int | None = None
) -> subprocess.CompletedProcess[str]:
    """The command line in a process of its own, as a person runs it: what it prints is all of
    what they see."""
    program = "import sys; from bot.cli import main; sys.exit(main(sys.argv[1:]))"
    if busy_timeout_ms is not None:
        program = f"import storage.db; storage.db.BUSY_TIMEOUT_MS = {busy_timeout_ms}; {program}"
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def _contacts(database: Path) -> int:
    with sqlite3.connect(database) as connection:
        (count,) = connection.execute("SELECT count(*) FROM contacts").fetchone()
    return int(count)


def test_a_report_while_another_process_holds_the_write_lock_is_printed_at_once(
    database: Path, write_lock: sqlite3.Connection
) -> None:
    """With the default busy timeout: a command that waited for the lock would fail, since the
    lock is held until the test ends (the schema check took it: a 160-line traceback)."""
    done = _stagekeeper("report", "snapshot", "--json", "--database-url", _url(database))
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["report"] == "snapshot"


@pytest.mark.parametrize(
    "command",
    [
        ["stages", "list"],
        ["contacts", "find", "An"],
        ["report", "funnel"],
        ["operations"],
        ["apikeys", "list"],
        ["fields", "list"],
        ["digest", "--now", "--dry-run"],
    ],
    ids=" ".join,
)
def test_read_only_commands_take_no_write_lock(
    database: Path,
    write_lock: sqlite3.Connection,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    code = main([*command, "--json", "--database-url", _url(database)])
    out, err = capsys.readouterr()
    assert (code, err) == (0, "")
    json.loads(out)


def test_a_write_while_another_process_holds_the_write_lock_is_one_line_and_changes_nothing(
    database: Path, write_lock: sqlite3.Connection
) -> None:
    add = ("contacts", "add", "An", "--phone", "0912345678", "--database-url", _url(database))
    done = _stagekeeper(*add, busy_timeout_ms=SHORT_BUSY_TIMEOUT_MS)
    assert (done.returncode, done.stdout) == (1, "")
    [line] = done.stderr.splitlines()
    assert line.startswith(f"stagekeeper: {BUSY}")
    assert "nothing was changed" in line
    assert "try again in a moment" in line.lower()

    write_lock.execute("ROLLBACK")  # the other process is done: trying again works
    assert _contacts(database) == 0
    done = _stagekeeper(*add)
    assert (done.returncode, done.stderr) == (0, "")
    assert _contacts(database) == 1


def test_a_refusal_for_a_busy_database_is_json_too_with_json(
    database: Path,
    write_lock: sqlite3.Connection,
    quick_busy_timeout: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(["apikeys", "create", "site", "--json", "--database-url", _url(database)])
    out, _ = capsys.readouterr()
    assert code == 1
    answer = json.loads(out)
    assert answer["error"] == "busy"
    assert answer["message"].startswith(BUSY)


@contextlib.contextmanager
def full_disk() -> Iterator[None]:
    """Every SQLite connection made in the block may not grow its database file: a full disk,
    as SQLite reports it ("database or disk is full")."""

    def no_room(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA page_count")
        (pages,) = cursor.fetchone()
        cursor.execute(f"PRAGMA max_page_count={pages}")
        cursor.close()

    event.listen(Pool, "connect", no_room)
    try:
        yield
    finally:
        event.remove(Pool, "connect", no_room)


def _snapshot(database: Path) -> dict[str, list[Any]]:
    """Every row of the tables a person's data lives in."""
    tables = ("contacts", "stage_changes", "operations", "stages", "report_contacts")
    with sqlite3.connect(database) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return {t: connection.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}


def test_an_import_into_a_full_database_is_one_line_and_changes_nothing(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text(
        "name,phone,stage\n" + "".join(f"Lead {i},+8491{i:07d},MQL\n" for i in range(3000))
    )
    before = _snapshot(database)
    with full_disk():
        code = main(["import", str(csv), "--database-url", _url(database)])
    out, err = capsys.readouterr()
    assert (code, out) == (1, "")
    line = err.replace("\r\x1b[K", "").strip()  # the progress line, cleared
    assert line == (
        "stagekeeper: The disk or the database is full; nothing was changed. "
        "Free some space and retry."
    )
    assert _snapshot(database) == before
    assert main(["import", str(csv), "--database-url", _url(database)]) == 0  # room again
    assert _contacts(database) == 3000


def test_a_stage_deletion_in_a_full_database_changes_nothing(
    database: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = tmp_path / "leads.csv"
    csv.write_text("name,phone,stage\n" + "".join(f"L{i},+8491{i:07d},MQL\n" for i in range(3000)))
    assert main(["import", str(csv), "--database-url", _url(database)]) == 0
    capsys.readouterr()
    before = _snapshot(database)
    delete = ["stages", "delete", "MQL", "--reassign-to", "SQL", "--database-url", _url(database)]
    with full_disk():
        code = main(delete)
    _, err = capsys.readouterr()
    assert code == 1
    assert err.strip().startswith("stagekeeper: The disk or the database is full")
    assert _snapshot(database) == before
    assert main(delete) == 0


@pytest.fixture
async def api(
    database: Path, quick_busy_timeout: None
) -> AsyncIterator[tuple[TestClient[Any, Any], str]]:
    services = build_services(Settings(_env_file=None, database_url=_url(database)))  # type: ignore[call-arg]
    _, secret = await services.api_keys.create(SYSTEM, "website")
    app = web.Application()
    mount_api(app, services, lambda notices: None)
    server = TestServer(app)
    await server.start_server(**SERVER_OPTIONS)
    async with TestClient(server) as client:
        yield client, secret
    await services.close()


async def test_an_event_while_the_database_is_busy_is_a_503_with_retry_after(
    database: Path, api: tuple[TestClient[Any, Any], str]
) -> None:
    client, secret = api
    headers = {"Authorization": f"Bearer {secret}"}
    event = {"event": "form_submitted", "phone": "0912345678"}
    with sqlite3.connect(database, isolation_level=None) as holder:
        holder.execute("BEGIN IMMEDIATE")
        async with client.post("/api/v1/events", json=event, headers=headers) as response:
            assert response.status == 503
            assert int(response.headers["Retry-After"]) > 0
            body = await response.json()
        holder.execute("ROLLBACK")
    assert body["error"] == "busy"
    assert body["reason"].startswith(BUSY)
    assert _contacts(database) == 0
    async with client.post("/api/v1/events", json=event, headers=headers) as response:
        assert response.status == 200
    assert _contacts(database) == 1


STRANGER = 4242
ADMIN = 1001


@contextlib.asynccontextmanager
async def _chat(database_url: str, state: Path) -> AsyncIterator[Driver]:
    """The sandbox (a local Telegram) with the bot polling it."""
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=database_url, admin_ids=[ADMIN], scheduler=False
    )
    services = build_services(settings)
    sandbox = Sandbox(services, port=0, state_file=state)
    await sandbox.start()
    assert sandbox.runtime is not None
    try:
        async with aiohttp.ClientSession() as http:
            yield Driver(sandbox.url, http, services, sandbox.runtime)
    finally:
        await sandbox.stop()
        await services.close()


@pytest.fixture
async def chat(database: Path, quick_busy_timeout: None, tmp_path: Path) -> AsyncIterator[Driver]:
    async with _chat(_url(database), tmp_path / "sandbox.json") as driver:
        yield driver


@pytest.fixture
async def chat_on_postgres(postgres_url: str, tmp_path: Path) -> AsyncIterator[Driver]:
    await empty_postgres(postgres_url)
    async with _chat(postgres_url, tmp_path / "sandbox.json") as driver:
        yield driver


async def test_in_chat_a_busy_database_gets_a_polite_retry_later_and_the_next_message_works(
    database: Path, chat: Driver
) -> None:
    """A stranger's /start records an access request: a write, refused while another process
    holds the lock. They are told so in their language, and their next /start goes through."""
    await chat.user(ADMIN, "Lan")
    [hello] = await chat.ask(ADMIN, "/start")  # an admin the bot can write to
    await chat.user(STRANGER, "Minh", language="vi")
    with sqlite3.connect(database, isolation_level=None) as holder:
        holder.execute("BEGIN IMMEDIATE")
        [busy] = await chat.ask(STRANGER, "/start")
        holder.execute("ROLLBACK")
    assert busy["text"] == (
        "Rất tiếc, cơ sở dữ liệu đang bận nên chưa có gì thay đổi. Vui lòng thử lại sau giây lát."
    )
    # No request was recorded, so no admin was asked.
    assert await chat.replies(ADMIN, hello["message_id"]) == []

    [welcome] = await chat.ask(STRANGER, "/start")
    assert welcome["text"].startswith("Chào mừng bạn đến với Stagekeeper!")
    [asked] = await chat.replies(ADMIN, hello["message_id"])
    assert "Minh" in asked["text"]


async def test_in_chat_a_dropped_database_connection_gets_a_polite_retry_later_and_the_next_works(
    chat_on_postgres: Driver, postgres_url: str
) -> None:
    """PostgreSQL restarted, or an admin ended the bot's connections: the first read of the
    next update (who is writing?) fails, before the person's language is otherwise known."""
    chat = chat_on_postgres
    await chat.user(STRANGER, "Wei", language="zh")
    engine = make_engine(postgres_url)
    async with engine.connect() as connection:
        ended = await connection.scalar(
            text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    await engine.dispose()
    assert ended  # the bot's

    [sorry] = await chat.ask(STRANGER, "/start")
    assert sorry["text"] == "抱歉，数据库正忙，未做任何更改。请稍后再试。"
    [welcome] = await chat.ask(STRANGER, "/start")
    assert welcome["text"].startswith("欢迎使用 Stagekeeper")


async def test_the_health_check_answers_while_another_process_writes(
    database: Path, api: tuple[TestClient[Any, Any], str], write_lock: sqlite3.Connection
) -> None:
    """It took the write lock to read `SELECT 1`: "unavailable" during every import."""
    client, _ = api
    async with client.get("/api/v1/healthz") as response:
        assert (response.status, await response.json()) == (200, {"status": "ok"})
