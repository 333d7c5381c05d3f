"""The scheduler: APScheduler 3 (AsyncIOScheduler) with its two jobs in memory, run by exactly
one bot process at a time.

The jobs are fixed: each tick they look in the database for what is due (morning messages,
task reminders), and whatever they send is claimed in the database first (see
domain.services.digests), so a job that runs twice, or in two processes during a takeover,
sends nothing twice. Nothing about the jobs needs storing, so they live in APScheduler's memory
job store. A persistent (SQLAlchemy) job store is synchronous: it queried the database on the
event loop's thread, and when one of its writes failed (SQLite's "database is locked") the
exception escaped APScheduler's wake-up callback and no job ever ran again, silently. Here the
scheduler touches no database; the jobs read it through the async engine, a failed tick is
logged with its traceback, and the next tick tries again.

Several processes may serve one database (webhook workers): a lease in the database decides
which one runs the scheduler; the others check the lease every few seconds and take over when
its holder stops renewing it. The holder is also the one process that sends new-lead notices
(bot/lead_notifier.py), so one pacer covers all that the deployment sends on its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from apscheduler.executors.asyncio import AsyncIOExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from domain.model import utcnow
from storage.db import make_sessionmaker
from storage.lease import Lease
from storage.ledger import UpdateLedger

if TYPE_CHECKING:
    from bot.lead_notifier import LeadNotifier
    from bot.notifier import ScheduledMessages

log = logging.getLogger(__name__)

LEASE = timedelta(seconds=60)
CHECK_EVERY = 10.0  # seconds between lease renewals (well within LEASE)
TICK_SECONDS = 60.0  # how often due messages and tasks are looked for
NOTICES_SECONDS = 1.0  # how often notices written by other processes are looked for
FORGET_UPDATES_SECONDS = 3600.0  # how often the update ledger drops what Telegram no longer sends


class SchedulerHost:
    """Holds the lease while it can and runs the scheduler while it holds it."""

    def __init__(
        self,
        notifier: ScheduledMessages,
        notices: LeadNotifier | None = None,
        *,
        tick: float = TICK_SECONDS,
        check_every: float | None = None,
        lease: timedelta = LEASE,
    ) -> None:
        """`notices`: the process's new-lead notifier, which then sends only while this
        process holds the lease. `check_every` defaults to a sixth of the lease, at most
        CHECK_EVERY seconds."""
        self._notifier = notifier
        self._notices = notices
        if notices is not None:
            notices.hand_over()
        self._tick = tick
        self._check_every = (
            check_every if check_every is not None else min(CHECK_EVERY, lease.total_seconds() / 6)
        )
        self._lease = Lease(
            make_sessionmaker(notifier.services.engine),
            "scheduler",
            f"{socket.gethostname()}:{os.getpid()}:{id(self)}",
            lease,
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
        self._task = asyncio.create_task(self._keep_lease(), name="scheduler-lease")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        if self._scheduler is not None:
            self._stop_scheduler()
            try:
                await self._lease.release()
            except Exception:  # it expires on its own; a shutdown must go on
                log.exception("could not release the scheduler lease")

    async def _keep_lease(self) -> None:
        ours_until: float | None = None  # monotonic time up to which the lease is surely ours
        while True:
            asked = time.monotonic()
            try:
                held = await self._lease.acquire()
            except Exception:
                # A renewal that fails (the database locked or briefly down) leaves the lease as
                # it was: this process keeps running the scheduler while the lease it last
                # renewed lasts, so a passing failure neither stops the jobs nor lets a second
                # process start them.
                held = ours_until is not None and time.monotonic() < ours_until
                log.exception(
                    "could not renew the scheduler lease (trying again in %.0f s); %s",
                    self._check_every,
                    "still held" if held else "not held",
                )
            else:
                # The database set the expiry from a moment after `asked`.
                ours_until = asked + self._lease.ttl.total_seconds() if held else None
            if held and self._scheduler is None:
                self._start_scheduler()
            elif not held and self._scheduler is not None:
                log.warning("the scheduler lease is not this process's now; stopping its jobs")
                self._stop_scheduler()
            await asyncio.sleep(self._check_every)

    def _start_scheduler(self) -> None:
        scheduler = AsyncIOScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": AsyncIOExecutor()},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone="UTC",
        )
        jobs: dict[str, Callable[[], Awaitable[object]]] = {
            "morning": self._notifier.send_morning_messages,
            "task-reminders": self._notifier.send_task_reminders,
        }
        every = dict.fromkeys(jobs, self._tick)
        ledger = UpdateLedger(make_sessionmaker(self._notifier.services.engine))
        jobs["forget-old-updates"] = ledger.forget_old
        every["forget-old-updates"] = max(self._tick, FORGET_UPDATES_SECONDS)
        if self._notices is not None:
            self._notices.take_over()
            jobs["lead-notices"] = self._notices.look_for_pending
            every["lead-notices"] = min(self._tick, NOTICES_SECONDS)
        for job_id, job in jobs.items():
            scheduler.add_job(
                _logged,
                "interval",
                args=(job_id, job),
                seconds=every[job_id],
                id=job_id,
                replace_existing=True,
                next_run_time=utcnow(),  # at once: a morning missed while down goes out now
            )
        scheduler.start()
        self._scheduler = scheduler
        log.info("this process runs the scheduler")

    def _stop_scheduler(self) -> None:
        if self._notices is not None:
            self._notices.hand_over()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None


async def _logged(job_id: str, job: Callable[[], Awaitable[object]]) -> None:
    """One tick of a job. A failure is logged here, where its traceback is ours to keep, and
    leaves the next tick to try again: what was not sent is still due in the database."""
    try:
        await job()
    except Exception:
        log.exception("the scheduled job %r failed; the next tick tries again", job_id)
