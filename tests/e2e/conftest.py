"""End-to-end harness: the emulator and the bot on free loopback ports, long-polling, behind a
webhook, or as two worker processes behind a proxy (`bot_mode`), and a driver that talks to the
emulator as Telegram users do.

A test reads a chat when what it waits for has happened, never after a pause, which a loaded
machine can make too short: the bot has finished handling the update the test sent
(`Driver.handled`), or a message the bot sends on its own has come (`until`, `until_count`).
The sandbox's own wait ("the bot said something, then stayed quiet for 200 ms") is only a way
to sleep until the bot next says something."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import threading
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiogram import Bot, Dispatcher
from aiogram.types import Update
from redis.asyncio import Redis

from bot.container import Services, build_services
from bot.entrypoints import Sandbox, WebhookServer
from bot.runtime import BotRuntime
from bot.settings import Settings
from domain.access import SYSTEM
from domain.model import Role
from domain.services.contacts import ContactDraft
from storage.db import is_sqlite
from tests.conftest import empty_postgres, require
from tests.e2e.workers import (
    TOKEN,
    AlternatingProxy,
    TelegramHere,
    Worker,
    settings_environment,
    worker_settings,
)

ADMIN_ID = 1001
WEBHOOK_SECRET = "e2e-secret-token"
PATIENCE = 60.0  # seconds to wait for what must happen; only a broken bot takes that long


class HandledUpdates:
    """How many times the bot has finished handling each update, whatever came of it: counted
    around the dispatcher's `feed_update`, which polling and the webhook both call, or by the
    proxy in front of worker processes."""

    def __init__(self) -> None:
        self.times: Counter[int] = Counter()
        self._changed = asyncio.Event()

    def note(self, update_id: int) -> None:
        self.times[update_id] += 1
        self._changed.set()
        self._changed = asyncio.Event()

    @classmethod
    def around(cls, dispatcher: Dispatcher) -> HandledUpdates:
        handled = cls()
        feed_update = dispatcher.feed_update

        async def counted(bot: Bot, update: Update, **kwargs: Any) -> Any:
            try:
                return await feed_update(bot, update, **kwargs)
            finally:
                handled.note(update.update_id)

        dispatcher.feed_update = counted  # type: ignore[method-assign]
        return handled

    async def wait(self, update_id: int, times: int = 1) -> None:
        try:
            async with asyncio.timeout(PATIENCE):
                while self.times[update_id] < times:
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"the bot handled update {update_id} {self.times[update_id]} time(s), not "
                f"{times}, in {PATIENCE:.0f} s"
            ) from None


class Driver:
    """Talks to the sandbox's user-side API (DESIGN §4) over HTTP."""

    def __init__(
        self,
        base_url: str,
        http: aiohttp.ClientSession,
        services: Services,
        runtime: BotRuntime,
        api_url: str | None = None,
        handled: HandledUpdates | None = None,
    ) -> None:
        """`handled`: where to learn that the bot handled an update, when it runs elsewhere
        than in `runtime`."""
        self.base_url = base_url
        self.http = http
        self.services = services
        self.runtime = runtime  # the bot being driven (polling or behind the webhook)
        self.api_url = (api_url or base_url) + "/api/v1"  # the webhook server's, in that mode
        self._handled = handled or HandledUpdates.around(runtime.dispatcher)

    async def handled(self, sent: dict[str, Any], times: int = 1) -> None:
        """Until the bot has finished handling the update of `sent` (what `send`, `upload` or
        `click` returned) `times` times: whatever it said in reply is in the chat by then."""
        await self._handled.wait(int(sent["update_id"]), times)

    async def event(self, key: str, **event: Any) -> tuple[int, Any]:
        """Posts an event to the HTTP API with the API key `key`; returns status and body."""
        headers = {"Authorization": f"Bearer {key}"}
        async with self.http.post(f"{self.api_url}/events", json=event, headers=headers) as r:
            return r.status, await r.json()

    async def post(self, path: str, **body: Any) -> Any:
        async with self.http.post(f"{self.base_url}{path}", json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def user(self, user_id: int, first_name: str = "Lan", language: str = "en") -> None:
        await self.post("/sandbox/users", id=user_id, first_name=first_name, language_code=language)

    async def send(self, user_id: int, text: str) -> dict[str, Any]:
        """Sends a message as the user; returns its message_id and update_id."""
        sent: dict[str, Any] = await self.post("/sandbox/send", user_id=user_id, text=text)
        return sent

    async def click(self, user_id: int, message_id: int, data: str) -> dict[str, Any]:
        """Presses a button; returns the update_id and the callback_query_id."""
        sent: dict[str, Any] = await self.post(
            "/sandbox/click", user_id=user_id, message_id=message_id, data=data
        )
        return sent

    async def upload(
        self, user_id: int, filename: str, content: bytes, caption: str | None = None
    ) -> dict[str, Any]:
        """Sends a file as the user; returns its message_id and update_id."""
        form = aiohttp.FormData()
        form.add_field("user_id", str(user_id))
        form.add_field("file", content, filename=filename, content_type="text/csv")
        if caption:
            form.add_field("caption", caption)
        async with self.http.post(f"{self.base_url}/sandbox/upload", data=form) as response:
            assert response.status == 200, await response.text()
            sent: dict[str, Any] = await response.json()
            return sent

    async def chat(self, user_id: int, after: int = 0, wait: float = 0.0) -> Any:
        """The chat's messages created or changed after message `after`; with `wait`, not
        before the bot said something after it and then stayed quiet for 200 ms (or `wait`
        seconds passed)."""
        params = {"after": str(after), "timeout": str(wait)}
        async with self.http.get(f"{self.base_url}/sandbox/chat/{user_id}", params=params) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def cursor(self, user_id: int) -> int:
        """The chat's current change counter, to ask later for what changed since."""
        return int((await self.chat(user_id, after=10**9, wait=0))["cursor"])

    async def changes(self, user_id: int, since: int, wait: float = 0.0) -> Any:
        """Messages created or edited, and buttons answered, after `since` (a cursor); with
        `wait`, not before the bot changed something after it and then stayed quiet for 200 ms
        (or `wait` seconds passed)."""
        params = {"since": str(since), "timeout": str(wait)}
        async with self.http.get(f"{self.base_url}/sandbox/chat/{user_id}", params=params) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def replies(self, user_id: int, after: int) -> list[Any]:
        """The bot's messages (new or edited) after message `after`."""
        return bot_messages(await self.chat(user_id, after))

    async def ask(self, user_id: int, text: str) -> list[Any]:
        """Sends a message as the user; returns the bot's messages new or edited since, once
        the bot has handled it."""
        sent = await self.send(user_id, text)
        await self.handled(sent)
        return await self.replies(user_id, sent["message_id"])

    async def fault(self, method: str, error_code: int | str, count: int, **extra: Any) -> None:
        await self.post(
            "/sandbox/faults", method=method, error_code=error_code, count=count, **extra
        )

    async def requests(self, method: str) -> list[Any]:
        async with self.http.get(
            f"{self.base_url}/sandbox/requests", params={"method": method}
        ) as response:
            body = await response.json()
        return list(body["requests"] if isinstance(body, dict) else body)


def in_workers_mode(request: pytest.FixtureRequest) -> bool:
    modes = request.fixturenames  # a test of the sandbox alone has no bot mode
    return "bot_mode" in modes and request.getfixturevalue("bot_mode") == "workers"


@pytest.fixture
def e2e_settings(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Settings:
    if in_workers_mode(request):
        url: str = request.getfixturevalue("postgres_url")
    else:
        path = tmp_path / "e2e.db"
        shutil.copy(sqlite_template, path)
        url = f"sqlite+aiosqlite:///{path}"
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=url,
        admin_ids=[ADMIN_ID],
        scheduler=False,  # the digest tests run it themselves
    )


# Each test of the bot runs with it long-polling the sandbox, behind a webhook in this process,
# and as two `stagekeeper webhook` processes on PostgreSQL and Redis behind a strictly
# alternating proxy (WorkersPool; skipped without those servers). STAGEKEEPER_TEST_BOT_MODES
# picks some of them (e.g. "workers").
BOT_MODES = os.environ.get("STAGEKEEPER_TEST_BOT_MODES", "polling,webhook,workers").split(",")
# For a test that changes the bot in this process, or watches it start: not in worker processes.
in_this_process = pytest.mark.parametrize(
    "bot_mode", [mode for mode in BOT_MODES if mode != "workers"], indirect=True
)


@pytest.fixture(params=BOT_MODES)
def bot_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def sandbox_of_driver(
    request: pytest.FixtureRequest, e2e_settings: Settings, tmp_path: Path
) -> AsyncIterator[Sandbox | None]:
    """The sandbox with the bot polling it; None in the workers mode, whose emulator and bot
    are the workers pool's."""
    if in_workers_mode(request):
        yield None
        return
    if not is_sqlite(e2e_settings.database_url):
        await empty_postgres(e2e_settings.database_url)
    services = build_services(e2e_settings)
    # Its own memory: on PostgreSQL the default is the working directory, shared by all tests.
    sandbox = Sandbox(services, port=0, state_file=tmp_path / "sandbox.json")
    await sandbox.start()
    yield sandbox
    await sandbox.stop()
    await services.close()


@pytest.fixture
async def driver(
    request: pytest.FixtureRequest, bot_mode: str, sandbox_of_driver: Sandbox | None
) -> AsyncIterator[Driver]:
    """A sandbox with the bot attached in `bot_mode`; the bot is stopped after the test."""
    if sandbox_of_driver is None:
        async with workers_driver(request) as driver:
            yield driver
        return
    sandbox = sandbox_of_driver
    services = sandbox.services
    webhook: WebhookServer | None = None
    if bot_mode == "webhook":
        await sandbox.stop_bot()  # the same emulator, the bot now behind a webhook instead
        settings = services.settings.model_copy(update={"telegram_api_base": sandbox.url})
        webhook = WebhookServer(
            build_services(settings, services.engine),
            token=sandbox.token,
            secret=WEBHOOK_SECRET,
            public_url=None,
            host="127.0.0.1",
            port=0,
        )
        await webhook.start()
    runtime = webhook.runtime if webhook is not None else sandbox.runtime
    assert runtime is not None
    async with aiohttp.ClientSession() as http:
        yield Driver(sandbox.url, http, services, runtime, webhook.url if webhook else None)
    if webhook is not None:
        await webhook.stop()


class PooledWorkers:
    """Two `stagekeeper webhook` processes with one environment, behind a proxy that
    alternates strictly between them, and the emulated Telegram they talk to."""

    def __init__(self, environment: dict[str, str], log_dir: Path) -> None:
        self.environment = environment
        self.log_dir = log_dir
        self.telegram = TelegramHere()
        self.workers: list[Worker] = []
        self.proxy = AlternatingProxy(self.workers, log_dir / "proxy.log")

    async def start(self) -> None:
        await self.telegram.start()
        await self.proxy.start()
        await self._start_workers()

    async def _start_workers(self) -> None:
        settings = {
            **self.environment,
            "BOT_TOKEN": TOKEN,
            "WEBHOOK_SECRET": WEBHOOK_SECRET,
            "WEBHOOK_URL": self.proxy.url,
            "TELEGRAM_API_BASE": self.telegram.url,
        }
        self.workers[:] = [Worker(name, settings, self.log_dir) for name in ("one", "two")]
        await asyncio.gather(*(worker.start() for worker in self.workers))

    async def empty(self) -> None:
        """Forgets the chats, people, files and requests of the last test, not the webhook the
        workers set (they set it once, at start); starts them again if one died."""
        self.proxy.on_handled = None
        emulator = self.telegram.emulator
        webhooks = [r["params"] for r in emulator.requests if r["method"] == "setWebhook"]
        emulator.reset()
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.telegram.url}/bot{TOKEN}/setWebhook", json=webhooks[-1]) as r,
        ):
            assert r.status == 200, await r.text()
        if not all(worker.alive for worker in self.workers):
            await self._stop_workers()
            await self._start_workers()
        self.proxy.taken.clear()

    async def _stop_workers(self) -> None:
        await asyncio.gather(*(worker.stop() for worker in self.workers))

    async def stop(self) -> None:
        await self._stop_workers()
        await self.proxy.stop()
        await self.telegram.stop()


class WorkersPool:
    """The worker processes of the workers-mode tests of this test process, started once for
    each environment the tests give them (a worker takes seconds to import its libraries), on a
    thread with an event loop of its own, since each test has its own loop. Each test starts
    from an empty database, Redis and emulator; the workers wait idle between their tests."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="workers", daemon=True)
        self._thread.start()
        self._pooled: dict[tuple[tuple[str, str], ...], PooledWorkers] = {}
        self.current: PooledWorkers | None = None

    async def ready(
        self, environment: dict[str, str], on_handled: Callable[[int], None]
    ) -> PooledWorkers:
        """Waits, from a test's loop, until workers run with `environment` on an emptied
        emulator, telling `on_handled` (on that loop) of each update they answered."""
        loop = asyncio.get_running_loop()

        def handled(update_id: int) -> None:
            with contextlib.suppress(RuntimeError):  # the test is over, its loop closed
                loop.call_soon_threadsafe(on_handled, update_id)

        running = asyncio.run_coroutine_threadsafe(self._ready(environment, handled), self.loop)
        self.current = await asyncio.wrap_future(running)
        return self.current

    async def _ready(
        self, environment: dict[str, str], handled: Callable[[int], None]
    ) -> PooledWorkers:
        key = tuple(sorted(environment.items()))
        pooled = self._pooled.get(key)
        if pooled is None:
            log_dir = self.log_dir / str(len(self._pooled))
            log_dir.mkdir()
            pooled = self._pooled[key] = PooledWorkers(environment, log_dir)
            await pooled.start()
        else:
            await pooled.empty()
        pooled.proxy.on_handled = handled
        return pooled

    def close(self) -> None:
        async def stop() -> None:
            await asyncio.gather(*(pooled.stop() for pooled in self._pooled.values()))

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


@pytest.fixture(scope="session")
def workers_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkersPool]:
    pool = WorkersPool(tmp_path_factory.mktemp("workers"))
    yield pool
    pool.close()


async def empty_redis() -> str:
    """This test process's Redis database, emptied; without one, a skip saying so."""
    url = os.environ.get("STAGEKEEPER_TEST_REDIS_URL")
    require(
        bool(url),
        'several workers need Redis (STAGEKEEPER_TEST_REDIS_URL is not set): run `eval "$(bash '
        '.ci/services.sh)"`',
    )
    assert url
    redis = Redis.from_url(url)
    await redis.flushdb()
    await redis.aclose()
    return url


@asynccontextmanager
async def workers_driver(request: pytest.FixtureRequest) -> AsyncIterator[Driver]:
    """A driver of the pool's workers, on an empty database and Redis; and a bot runtime in
    this process that handles no update, for the tests that run the scheduled jobs
    themselves."""
    redis_url = await empty_redis()
    settings: Settings = request.getfixturevalue("e2e_settings")
    pool: WorkersPool = request.getfixturevalue("workers_pool")
    await empty_postgres(settings.database_url)
    handled = HandledUpdates()
    environment = {**settings_environment(settings), "REDIS_URL": redis_url}
    pooled = await pool.ready(environment, handled.note)
    telegram_url = pooled.telegram.url
    settings = settings.model_copy(update={"telegram_api_base": telegram_url})
    services = build_services(settings)
    await services.users.ensure_admins(settings.admin_ids)
    runtime = BotRuntime(settings, services, TOKEN)
    try:
        async with aiohttp.ClientSession() as http:
            yield Driver(telegram_url, http, services, runtime, pooled.proxy.url, handled)
    finally:
        await runtime.close()
        await services.close()


@dataclass
class Deployment:
    """Worker processes on a database, behind a proxy, with Lan (an agent) and her lead An."""

    driver: Driver
    workers: list[Worker]
    proxy: AlternatingProxy
    an: int


@asynccontextmanager
async def deployed(
    database_url: str,
    log_dir: Path,
    names: list[str],
    redis_url: str | None,
    prepare: Callable[[Services], Awaitable[object]] | None = None,
    **settings: str,
) -> AsyncIterator[Deployment]:
    """`prepare` runs on the database before the workers start; `settings` are theirs (as
    environment variables)."""
    services = build_services(
        Settings(_env_file=None, database_url=database_url, admin_ids=[ADMIN_ID], scheduler=False)  # type: ignore[call-arg]
    )
    await services.stages.apply_template(SYSTEM, "amis")
    await services.users.ensure_admins([ADMIN_ID])
    lan = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north", telegram_id=LAN)
    an = await services.contacts.add(
        lan,
        ContactDraft(name="Nguyễn Văn An", phone="+84912345678", company="Minh Phát", stage="Lead"),
    )
    assert an.id is not None
    if prepare is not None:
        await prepare(services)
    telegram = TelegramHere()
    await telegram.start()
    workers: list[Worker] = []
    proxy = AlternatingProxy(workers)
    await proxy.start()
    handled = HandledUpdates()
    proxy.on_handled = handled.note
    environment = worker_settings(
        telegram, database_url, redis_url=redis_url, WEBHOOK_URL=proxy.url, **settings
    )
    workers += [Worker(name, environment, log_dir) for name in names]
    try:
        await asyncio.gather(*(worker.start() for worker in workers))
        async with aiohttp.ClientSession() as http:
            driver = Driver(telegram.url, http, services, None, None, handled)  # type: ignore[arg-type]
            for user_id, name in ((LAN, "Lan"), (ADMIN_ID, "Ada")):
                await driver.user(user_id, name)
            yield Deployment(driver, workers, proxy, an.id)
    finally:
        await asyncio.gather(*(worker.stop() for worker in workers))
        await proxy.stop()
        await telegram.stop()
        await services.close()


# --- a small sales team, and shortcuts to press buttons ------------------------------------

MANAGER, LAN, OTTO, STRANGER = 2002, 2003, 2004, 3001


@dataclass
class Team:
    an: int
    bich: int
    won: int


@pytest.fixture
async def team(driver: Driver) -> Team:
    services = driver.services
    await services.stages.apply_template(SYSTEM, "amis")
    await services.users.add(
        SYSTEM, "Minh Manager", Role.MANAGER, team="north", telegram_id=MANAGER
    )
    lan = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north", telegram_id=LAN)
    otto = await services.users.add(SYSTEM, "Otto", Role.AGENT, team="south", telegram_id=OTTO)
    an = await services.contacts.add(
        lan,
        ContactDraft(name="Nguyễn Văn An", phone="+84912345678", company="Minh Phát", stage="Lead"),
    )
    bich = await services.contacts.add(otto, ContactDraft(name="Trần Thị Bích", stage="Lead"))
    won = await services.contacts.add(lan, ContactDraft(name="Khách Thắng", stage="Customer"))
    for user_id, name in ((MANAGER, "Minh"), (LAN, "Lan"), (OTTO, "Otto"), (ADMIN_ID, "Ada")):
        await driver.user(user_id, name)
    assert an.id is not None
    assert bich.id is not None
    assert won.id is not None
    return Team(an.id, bich.id, won.id)


def button(message: dict[str, Any], text: str) -> str:
    """The callback data of the button whose text contains `text`."""
    for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
        for key in row:
            if text in key["text"]:
                return str(key["callback_data"])
    raise AssertionError(f"no button {text!r} in {message.get('reply_markup')}")


async def press(driver: Driver, user: int, message: dict[str, Any], text: str) -> list[Any]:
    """Presses a button and returns the bot's messages that changed or appeared."""
    return (await click(driver, user, message, button(message, text)))[0]


async def click(
    driver: Driver, user: int, message: dict[str, Any], data: str
) -> tuple[list[Any], dict[str, Any] | None]:
    """Sends a callback with `data` from `message`; returns the bot's messages that changed or
    appeared, and the bot's answer to the callback, once the bot has handled it."""
    since = await driver.cursor(user)
    sent = await driver.click(user, message["message_id"], data)
    await driver.handled(sent)
    chat = await driver.changes(user, since)
    answers = [
        a for a in chat["callback_answers"] if a["callback_query_id"] == sent["callback_query_id"]
    ]
    return bot_messages(chat), (answers[0] if answers else None)


async def stage_of(driver: Driver, contact_id: int) -> str | None:
    card = await driver.services.contacts.get(SYSTEM, contact_id)
    return card.stage.name if card.stage else None


def bot_messages(chat: dict[str, Any]) -> list[Any]:
    """The bot's messages of a chat view."""
    return [m for m in chat["messages"] if m["from"] == "bot"]


def text_of(message: dict[str, Any]) -> str:
    return str(message["text"] or message["caption"] or "")


async def until_messages(
    driver: Driver, user: int, since: int, done: Callable[[list[Any]], bool], what: str
) -> list[Any]:
    """The bot's messages changed since `since` (a cursor), once `done` holds for them: for
    what the bot sends on its own (a digest, a notification, a background task's result).
    Between looks it sleeps until the bot next changes something, for at most PATIENCE s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PATIENCE
    while True:
        chat = await driver.changes(user, since)
        messages = bot_messages(chat)
        if done(messages):
            return messages
        left = deadline - loop.time()
        if left <= 0:
            raise AssertionError(f"no {what} in {PATIENCE:.0f} s; the bot's messages: {messages}")
        await driver.changes(user, chat["cursor"], wait=min(left, 5.0))


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Until `check()` holds (looked at every 50 ms), for what no message announces."""
    try:
        async with asyncio.timeout(PATIENCE):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"not {what} after {PATIENCE:.0f} s") from None


async def until(driver: Driver, user: int, since: int, text: str) -> list[Any]:
    """The bot's messages changed since `since` (a cursor), once one of them contains `text`:
    for a message the bot edits along the way (progress) before it shows the result."""
    return await until_messages(
        driver,
        user,
        since,
        lambda messages: any(text in text_of(m) for m in messages),
        f"message with {text!r}",
    )


async def until_count(driver: Driver, user: int, since: int, count: int) -> list[Any]:
    """The bot's messages changed since `since` (a cursor), once there are `count` of them."""
    return await until_messages(
        driver, user, since, lambda messages: len(messages) >= count, f"{count} message(s)"
    )


async def press_until(
    driver: Driver, user: int, message: dict[str, Any], label: str, text: str
) -> list[Any]:
    """Presses a button and returns the bot's messages that changed or appeared, once one of
    them contains `text`."""
    since = await driver.cursor(user)
    await driver.click(user, message["message_id"], button(message, label))
    return await until(driver, user, since, text)
