"""`stagekeeper webhook` as the tests run it in a process of its own (`python -m tests.e2e.worker`),
able to die by SIGKILL at a chosen point of an update's handling.

The points of an update are, in order: every SQL statement and commit, and every Bot API request
before it is sent and after its answer came. When an update's handling begins and the file named
by STAGEKEEPER_TEST_CRASH_AT exists, it holds N: the file is removed and the worker kills itself
at the N-th point of that update. The number of points of each update handled to the end is
appended to the file named by STAGEKEEPER_TEST_POINTS, as "update_id points"."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from aiogram import Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from sqlalchemy import event
from sqlalchemy.engine import Engine

from bot.cli import main


class Points:
    def __init__(self, crash_file: Path | None, points_file: Path | None) -> None:
        self.crash_file = crash_file
        self.points_file = points_file
        self.count = 0
        self.crash_at: int | None = None
        self.handling = False

    def begin(self) -> None:
        self.count = 0
        self.handling = True
        self.crash_at = None
        if self.crash_file is not None and self.crash_file.exists():
            self.crash_at = int(self.crash_file.read_text())
            self.crash_file.unlink()

    def point(self, *args: Any, what: str = "") -> None:
        if not self.handling:
            return
        self.count += 1
        if self.count == self.crash_at:
            what = what or (str(args[2])[:80] if len(args) > 2 else "commit")
            sys.stderr.write(f"worker {os.getpid()}: dying at point {self.count} ({what})\n")
            sys.stderr.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    def end(self, update_id: int) -> None:
        self.handling = False
        if self.points_file is not None:
            with self.points_file.open("a") as out:
                out.write(f"{update_id} {self.count}\n")


def install(points: Points) -> None:
    event.listen(Engine, "before_cursor_execute", points.point)
    event.listen(Engine, "commit", points.point)

    feed_update = Dispatcher.feed_update

    async def counted_feed_update(self: Dispatcher, bot: Any, update: Any, **kwargs: Any) -> Any:
        points.begin()
        try:
            return await feed_update(self, bot, update, **kwargs)
        finally:
            points.end(update.update_id)

    make_request = AiohttpSession.make_request

    async def counted_make_request(self: AiohttpSession, *args: Any, **kwargs: Any) -> Any:
        method = type(args[1]).__name__ if len(args) > 1 else "a request"
        points.point(what=f"before {method}")
        result = await make_request(self, *args, **kwargs)
        points.point(what=f"after {method}")
        return result

    Dispatcher.feed_update = counted_feed_update  # type: ignore[method-assign]
    AiohttpSession.make_request = counted_make_request  # type: ignore[method-assign]


def run() -> int:
    crash = os.environ.get("STAGEKEEPER_TEST_CRASH_AT")
    counted = os.environ.get("STAGEKEEPER_TEST_POINTS")
    install(Points(Path(crash) if crash else None, Path(counted) if counted else None))
    return main(["webhook"])


if __name__ == "__main__":
    sys.exit(run())
