"""`stagekeeper run`, `webhook` and `sandbox`: the long-running commands."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from pathlib import Path

from aiohttp import web
from sqlalchemy.engine import make_url

from bot.api import SERVER_OPTIONS, mount_api
from bot.container import Services
from bot.runtime import BotRuntime, wait_for_stop_signal
from domain.access import SYSTEM
from domain.model import Notice
from sandbox import Emulator
from sandbox.app import MAX_REQUEST_SIZE
from sandbox.state import User as SandboxUser
from storage import migrate
from storage.db import is_sqlite

log = logging.getLogger(__name__)

SANDBOX_TOKEN = "1000000001:stagekeeper-sandbox"
SANDBOX_ADMIN_ID = 1001
SANDBOX_STATE_SUFFIX = "-sandbox.json"


class StartupRefused(Exception):
    """The command cannot start as configured; the message says what to set."""


async def serve_polling(services: Services) -> None:
    settings = services.settings
    if settings.bot_token is None:
        raise StartupRefused("BOT_TOKEN is not set (get one from @BotFather)")
    await services.users.ensure_admins(settings.admin_ids)
    runtime = BotRuntime(settings, services, settings.bot_token.get_secret_value())
    try:
        await runtime.poll()
    finally:
        await runtime.close()


async def serve_webhook(services: Services) -> None:
    settings = services.settings
    if settings.bot_token is None:
        raise StartupRefused("BOT_TOKEN is not set (get one from @BotFather)")
    if settings.webhook_secret is None or not settings.webhook_secret.get_secret_value():
        raise StartupRefused(
            "WEBHOOK_SECRET is not set; without it anyone could post updates to the webhook"
        )
    if not settings.webhook_url:
        raise StartupRefused("WEBHOOK_URL is not set (the public https address of this server)")
    if not settings.redis_url and not is_sqlite(settings.database_url):
        log.warning(
            "REDIS_URL is not set: conversations live in this process's memory, so run this "
            "as the ONLY webhook worker (set REDIS_URL to run several)"
        )
    await services.users.ensure_admins(settings.admin_ids)
    server = WebhookServer(
        services,
        token=settings.bot_token.get_secret_value(),
        secret=settings.webhook_secret.get_secret_value(),
        public_url=settings.webhook_url,
        host=settings.webhook_host,
        port=settings.webhook_port,
    )
    await server.start()
    try:
        await wait_for_stop_signal()
    finally:
        await server.stop()


class WebhookServer:
    """The bot behind a Telegram webhook, on an aiohttp server of its own that also serves the
    HTTP API."""

    def __init__(
        self,
        services: Services,
        *,
        token: str,
        secret: str,
        public_url: str | None,
        host: str,
        port: int,
    ) -> None:
        """`public_url` is where Telegram reaches this server; None means this host and port
        (for a local Bot API, e.g. the sandbox in tests)."""
        self.runtime = BotRuntime(services.settings, services, token)
        self.secret = secret
        self.public_url = public_url.rstrip("/") if public_url else None
        self.host = host
        self.port = port
        app = self.runtime.webhook_app(secret)
        mount_api(app, services, self.runtime.notifier.submit)
        self._runner = web.AppRunner(app, shutdown_timeout=20, **SERVER_OPTIONS)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.port).start()
        if self.port == 0:  # a free port was asked for: find out which
            self.port = self._runner.addresses[0][1]
        url = (self.public_url or self.url) + self.runtime.settings.webhook_path
        await self.runtime.publish_commands()
        await self.runtime.set_webhook(url, self.secret)
        await self.runtime.notifier.start()
        self.runtime.start_scheduler()
        log.info("webhook listening on %s:%s for %s", self.host, self.port, url)

    async def stop(self) -> None:
        await self._runner.cleanup()  # finishes the requests (updates) in flight
        await self.runtime.close()


def sandbox_state_file(database_url: str) -> Path | None:
    """Where the emulator keeps what Telegram remembers across a restart (people, update and
    message ids): beside a SQLite database file, as its ledger of handled updates and the people
    the bot knows live there; in the working directory for a server database; nowhere for a
    database in memory, which a restart forgets too."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return Path("stagekeeper" + SANDBOX_STATE_SUFFIX)
    if not url.database or url.database == ":memory:" or url.query.get("mode") == "memory":
        return None
    return Path(url.database + SANDBOX_STATE_SUFFIX)


class Sandbox:
    """The emulator, the web chat, the HTTP API and the bot on one port, the bot polling the
    emulator."""

    def __init__(
        self,
        services: Services,
        *,
        host: str = "127.0.0.1",
        port: int = 8081,
        state_file: Path | None = None,
    ) -> None:
        """`state_file`: where the emulator keeps what it remembers; by default where
        `sandbox_state_file` says."""
        self.services = services
        self.host = host
        self.port = port
        token = services.settings.bot_token
        self.token = token.get_secret_value() if token else SANDBOX_TOKEN
        self.emulator = Emulator(
            default_token=self.token,
            state_file=state_file or sandbox_state_file(services.settings.database_url),
        )
        self.app = web.Application(client_max_size=MAX_REQUEST_SIZE)
        self.emulator.install(self.app)
        mount_api(self.app, services, self._notify)
        # handler_cancellation: a long poll ends when the bot hangs up, so stopping is prompt.
        self._runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, **SERVER_OPTIONS
        )
        self._polling: asyncio.Task[None] | None = None
        self.runtime: BotRuntime | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        await migrate.upgrade(self.services.engine)
        admins = self.services.settings.admin_ids or [SANDBOX_ADMIN_ID]
        await self.services.users.ensure_admins(admins)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:  # a free port was asked for: find out which
            self.port = self._runner.addresses[0][1]
        settings = self.services.settings.model_copy(update={"telegram_api_base": self.url})
        self.runtime = BotRuntime(settings, replace(self.services, settings=settings), self.token)
        self._polling = await self.runtime.start_polling()
        await self.runtime.notifier.start()

    def _notify(self, notices: list[Notice]) -> None:
        # Without the bot (stopped) the notices stay pending until a bot starts again.
        if self.runtime is not None:
            self.runtime.notifier.submit(notices)

    async def stop_bot(self) -> None:
        """Stop the bot (letting updates in flight finish); the emulator keeps serving."""
        if self.runtime is not None:
            await self.runtime.stop_polling()
            if self._polling is not None:
                await self._polling
            await self.runtime.close()
            self.runtime = self._polling = None

    async def stop(self) -> None:
        await self.stop_bot()
        await self._runner.cleanup()


async def serve_sandbox(services: Services, *, host: str, port: int, demo: bool) -> None:
    if demo:
        from bot.demo import load_demo

        print("Stagekeeper sandbox: loading the demo data (this takes a little while)…", flush=True)
        await migrate.upgrade(services.engine)
        summary = await load_demo(services)
    sandbox = Sandbox(services, host=host, port=port)
    await sandbox.start()
    if demo:
        # The web chat lists the people the emulator knows: offer the demo people.
        for person in summary.people:
            if person.telegram_id is not None:
                # The whole name: which part is the given name depends on the language.
                sandbox.emulator.add_user(
                    SandboxUser(person.telegram_id, person.name, language_code="vi")
                )
    print(f"Stagekeeper sandbox: open {sandbox.url} in a browser (Ctrl+C stops it).")
    if demo:
        print(summary.describe())
        _, key = await services.api_keys.create(SYSTEM, "demo")
        example = '{"event": "form_submitted", "phone": "0912 000 111", "name": "Lê Hoa"}'
        print(f"HTTP API key (demo): {key}")
        print(f"  curl {sandbox.url}/api/v1/events -H 'Authorization: Bearer {key}' -d '{example}'")
    else:
        admins = services.settings.admin_ids or [SANDBOX_ADMIN_ID]
        print(f"Chat as Telegram id {admins[0]} to be the admin.")
    try:
        await wait_for_stop_signal()
    finally:
        await sandbox.stop()
