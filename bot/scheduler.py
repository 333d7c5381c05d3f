"""The scheduler: APScheduler 3 (AsyncIOScheduler) with its jobs kept in the application's
database, run by exactly one bot process at a time.

Several processes may serve one database (webhook workers). APScheduler 3 cannot share a job
store between schedulers, so a lease in the database decides which process runs it; the others
check the lease every few seconds and take over when its holder stops renewing it. Jobs are
referenced by text (`bot.scheduler:morning_job`) with no arguments and explicit ids, so the
stored jobs survive restarts and code reloads; they reach this process's notifier through the
module-level `_notifier`. Whatever a job sends is claimed in the database first (see
domain.services.digests), so a job that runs twice, or in two processes during a takeover,
sends nothing twice."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from datetime import timedelta
from typing import TYPE_CHECKING

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.engine import make_url

from domain.model import utcnow
from storage.db import make_sessionmaker
from storage.lease import Lease

if TYPE_CHECKING:
    from bot.notifier import ScheduledMessages

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
CHECK_EVERY = 10.0  # seconds between lease renewals (well within LEASE)
TICK_SECONDS = 60  # how often due messages and tasks are looked for
JOBS = (
    ("morning", "bot.scheduler:morning_job"),
    ("task-reminders", "bot.scheduler:task_job"),
)

_notifier: ScheduledMessages | None = None


async def morning_job() -> None:
    if _notifier is not None:
        await _notifier.send_morning_messages()


async def task_job() -> None:
    if _notifier is not None:
        await _notifier.send_task_reminders()


def sync_url(url: str) -> str:
    """The job store is synchronous: the same database through a synchronous driver."""
    parsed = make_url(url)
    driver = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg"}[parsed.get_backend_name()]
    return parsed.set(drivername=driver).render_as_string(hide_password=False)


class SchedulerHost:
    """Holds the lease while it can and runs the scheduler while it holds it."""

    def __init__(self, notifier: ScheduledMessages, database_url: str) -> None:
        self._notifier = notifier
        self._url = database_url
        self._lease = Lease(
            make_sessionmaker(notifier.services.engine),
            "scheduler",
            f"{socket.gethostname()}:{os.getpid()}:{id(self)}",
            LEASE,
        )
        self._scheduler: AsyncIOScheduler | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """Whether this process runs the scheduler now."""
        return self._scheduler is not None

    @property
    def stopped(self) -> bool:
        return self._task is None

    def start(self) -> None:
        self._task = asyncio.create_task(self._keep_lease())

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._scheduler is not None:
            self._stop_scheduler()
            await self._lease.release()

    async def _keep_lease(self) -> None:
        while True:
            try:
                held = await self._lease.acquire()
            except Exception:
                log.exception("could not renew the scheduler lease")
                held = False
            if held and self._scheduler is None:
                self._start_scheduler()
            elif not held and self._scheduler is not None:
                log.warning("another process holds the scheduler lease now; stopping mine")
                self._stop_scheduler()
            await asyncio.sleep(CHECK_EVERY)

    def _start_scheduler(self) -> None:
        global _notifier
        _notifier = self._notifier
        scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(url=sync_url(self._url))},
            executors={"default": AsyncIOExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
            timezone="UTC",
        )
        for job_id, reference in JOBS:
            scheduler.add_job(
                reference,
                "interval",
                seconds=TICK_SECONDS,
                id=job_id,
                replace_existing=True,
                next_run_time=utcnow(),  # at once: a morning missed while down goes out now
            )
        scheduler.start()
        self._scheduler = scheduler
        log.info("this process runs the scheduler")

    def _stop_scheduler(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
