"""A running bot: Bot and Dispatcher built from settings and services, with the entry points
for long polling and for webhooks, and a shutdown that lets in-flight updates finish."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from datetime import timedelta

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.webhook.aiohttp_server import SimpleRequestHandler
from aiohttp import web

import handlers
from bot.container import Services
from bot.conversations import conversation_storage
from bot.lead_notifier import LeadNotifier
from bot.middlewares import (
    AccessGate,
    CurrentUser,
    InFlightUpdates,
    LateCallbackAnswers,
    OncePerUpdate,
    RetryRequests,
)
from bot.notifier import Pacer, ResumeMessages, ScheduledMessages
from bot.scheduler import SchedulerHost
from bot.session import BotSession
from bot.settings import Settings
from handlers.commands import publish_commands, publish_default_commands
from handlers.i18n import PersonLocale, build_i18n
from handlers.progress import ProgressPace
from storage.db import make_sessionmaker
from storage.ledger import UpdateLedger

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 20.0


def build_bot(settings: Settings, token: str, *, retrying: bool = True) -> Bot:
    """`retrying=False` for a quick check that Telegram answers at all."""
    session = BotSession(api=TelegramAPIServer.from_base(settings.telegram_api_base))
    session.middleware(LateCallbackAnswers())
    if retrying:
        session.middleware(RetryRequests())
    return Bot(token, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


class BotRuntime:
    """One bot with its dispatcher. Services reach handlers as typed arguments."""

    def __init__(self, settings: Settings, services: Services, token: str) -> None:
        self.settings = settings
        self.services = services
        self.bot = build_bot(settings, token)
        self.in_flight = InFlightUpdates()
        self.i18n = build_i18n(settings.default_language)
        storage, isolation = conversation_storage(settings.redis_url)
        self.dispatcher = Dispatcher(
            storage=storage,
            events_isolation=isolation,
            stages=services.stages,
            contacts=services.contacts,
            users=services.users,
            operations=services.operations,
            imports=services.imports,
            views=services.views,
            exports=services.exports,
            fields=services.fields,
            digests=services.digests,
            reports=services.reports,
            events=services.events,
            api_keys=services.api_keys,
            zone=settings.zone,
            policy=settings.policy,
            pace=ProgressPace(settings.progress_delay, settings.progress_interval),
            # Also before PersonLocale sets it: an error there is apologized for too.
            i18n=self.i18n,
        )
        update = self.dispatcher.update
        update.outer_middleware(self.in_flight)
        update.outer_middleware(CurrentUser(services.users))
        update.outer_middleware(PersonLocale(self.i18n))
        update.outer_middleware(AccessGate())
        update.outer_middleware(ResumeMessages(services.digests))
        # Last, so that what the middlewares before it write is no step of the update.
        update.outer_middleware(OncePerUpdate(UpdateLedger(make_sessionmaker(services.engine))))
        self.dispatcher.include_routers(*handlers.routers())
        self.dispatcher.startup.register(self.publish_commands)
        self.polling = asyncio.Event()
        self.dispatcher.startup.register(self.polling.set)
        # One pace for every message the bot sends on its own: Telegram's limit is per bot.
        pacer = Pacer(settings.notify_rate)
        self.notifier = LeadNotifier(self.bot, services, self.i18n, pacer=pacer)
        self.scheduled = ScheduledMessages(self.bot, services, self.i18n, pacer)
        self.scheduler = (
            SchedulerHost(
                self.scheduled,
                self.notifier,
                lease=timedelta(seconds=settings.scheduler_lease_seconds),
            )
            if settings.scheduler
            else None
        )

    def start_scheduler(self) -> None:
        """Join the processes that may run the scheduler (the one holding the lease does)."""
        if self.scheduler is not None and self.scheduler.stopped:
            self.scheduler.start()

    async def publish_commands(self) -> None:
        """The command menus, per language and per role."""
        await publish_default_commands(self.bot, self.i18n)
        await publish_commands(self.bot, await self.services.users.everyone(), self.i18n)

    async def poll(self, *, handle_signals: bool = True) -> None:
        """Long polling until stopped; then waits for the updates being handled."""
        await self.bot.delete_webhook()
        self.start_scheduler()
        try:
            await self.dispatcher.start_polling(
                self.bot,
                handle_signals=handle_signals,
                close_bot_session=False,
                allowed_updates=self.dispatcher.resolve_used_update_types(),
            )
        finally:
            await self.in_flight.drained(SHUTDOWN_GRACE_SECONDS)

    async def start_polling(self) -> asyncio.Task[None]:
        """Poll in a task; returns once polling has begun (or failed to)."""
        task = asyncio.create_task(self.poll(handle_signals=False))
        began = asyncio.create_task(self.polling.wait())
        await asyncio.wait([task, began], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            began.cancel()
            task.result()  # raises why polling could not start
        return task

    async def stop_polling(self) -> None:
        with contextlib.suppress(RuntimeError):  # polling ended already
            await self.dispatcher.stop_polling()

    def webhook_app(self, secret: str, app: web.Application | None = None) -> web.Application:
        """The Telegram webhook route on `app` (a new application by default). Each update is
        acknowledged only after it was handled, so a crash mid-update makes Telegram send it
        again instead of losing it."""
        app = app if app is not None else web.Application()
        SimpleRequestHandler(
            self.dispatcher, self.bot, secret_token=secret, handle_in_background=False
        ).register(app, path=self.settings.webhook_path)
        return app

    async def set_webhook(self, url: str, secret: str) -> None:
        await self.bot.set_webhook(
            url,
            secret_token=secret,
            allowed_updates=self.dispatcher.resolve_used_update_types(),
            max_connections=self.settings.webhook_max_connections,
        )

    async def close(self) -> None:
        if self.scheduler is not None:
            await self.scheduler.stop()
        await self.notifier.stop()
        await self.in_flight.drained(SHUTDOWN_GRACE_SECONDS)
        await self.bot.session.close()


async def wait_for_stop_signal() -> None:
    """Return on SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
