"""Bot workers in processes of their own, as a deployment runs them: `stagekeeper webhook`
(tests/e2e/worker.py) on one database, the sandbox's Bot API in the test's process, and, for
several workers, a proxy in front of them that alternates strictly between them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import ClassVar

import aiohttp
from aiohttp import web
from pydantic import SecretStr

from bot.settings import Settings
from sandbox import Emulator
from sandbox.app import MAX_REQUEST_SIZE

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "1000000002:stagekeeper-workers"
SECRET = "workers-secret"
WEBHOOK_PATH = "/telegram/webhook"
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, int(runner.addresses[0][1])


class TelegramHere:
    """The sandbox's Bot API and user side, in this process."""

    def __init__(self) -> None:
        self.emulator = Emulator(default_token=TOKEN)
        self.app = web.Application(client_max_size=MAX_REQUEST_SIZE)
        self.emulator.install(self.app)
        self.url = ""

    async def start(self) -> None:
        self._runner, port = await serve(self.app)
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._runner.cleanup()


class Zygote:
    """The forker of this test process's workers (tests/e2e/zygote.py), shared by the tests'
    event loops and the workers pool's: its answers are read on a thread of their own and
    handed over as futures."""

    _shared: ClassVar[Zygote | None] = None

    @classmethod
    def shared(cls) -> Zygote:
        if cls._shared is None:
            cls._shared = cls()
        return cls._shared

    def __init__(self) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.e2e.zygote"],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        self._lock = threading.Lock()
        self._starting: deque[Future[int]] = deque()
        self._ended: dict[int, Future[int]] = {}
        threading.Thread(target=self._read, name="zygote", daemon=True).start()

    def start(self, env: dict[str, str], log: Path) -> Future[int]:
        """A worker process with `env`, its output added to `log`: its pid, once forked."""
        started: Future[int] = Future()
        request = json.dumps({"env": env, "log": str(log)}).encode() + b"\n"
        with self._lock:
            assert self._process.stdin is not None
            self._starting.append(started)
            self._process.stdin.write(request)
            self._process.stdin.flush()
        return started

    def ended(self, pid: int) -> Future[int]:
        """The wait status of process `pid`, once it ended."""
        with self._lock:
            return self._ended.setdefault(pid, Future())

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            what, pid, *status = line.split()
            with self._lock:
                if what == b"started":
                    told = self._starting.popleft()
                else:
                    told = self._ended.setdefault(int(pid), Future())
                if not told.cancelled():  # by a test that stopped waiting for it
                    told.set_result(int(status[0]) if status else int(pid))
        with self._lock:  # the zygote is gone: so is any worker not reported yet
            for starting in self._starting:
                if not starting.cancelled():
                    starting.set_exception(RuntimeError("the zygote ended"))


class Worker:
    """One `stagekeeper webhook` process (tests/e2e/worker.py, able to die at a chosen point)
    on a fixed port, so that it can be started again where it was."""

    def __init__(self, name: str, settings: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.crash_file = log_dir / f"{name}.crash"
        self.points_file = log_dir / f"{name}.points"
        self.log = log_dir / f"{name}.log"
        self.env = {
            **os.environ,
            **settings,
            "WEBHOOK_HOST": "127.0.0.1",
            "WEBHOOK_PORT": str(self.port),
            "WEBHOOK_URL": settings.get("WEBHOOK_URL", self.url),
            "STAGEKEEPER_TEST_CRASH_AT": str(self.crash_file),
            "STAGEKEEPER_TEST_POINTS": str(self.points_file),
        }
        self.pid: int | None = None
        self._ended: Future[int] | None = None

    @property
    def alive(self) -> bool:
        return self._ended is not None and not self._ended.done()

    async def start(self) -> None:
        zygote = Zygote.shared()
        self.pid = await asyncio.wrap_future(zygote.start(self.env, self.log))
        self._ended = zygote.ended(self.pid)
        async with aiohttp.ClientSession() as http:
            for _ in range(int(START_TIMEOUT * 10)):
                if not self.alive:
                    raise AssertionError(f"{self.name} exited: {self.log.read_text()[-3000:]}")
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{self.url}/api/v1/healthz") as response:
                        if response.status == 200:
                            return
                await asyncio.sleep(0.1)
        raise AssertionError(f"{self.name} did not start: {self.log.read_text()[-3000:]}")

    def die_at(self, point: int) -> None:
        """The next update this worker begins to handle kills it at its `point`-th point."""
        self.crash_file.write_text(str(point))

    def kill(self) -> None:
        assert self.pid is not None
        os.kill(self.pid, signal.SIGKILL)

    async def _end(self) -> int:
        """Its wait status, once it ended. A test that stops waiting (cancels) leaves the
        future shared with the zygote's reader as it is."""
        assert self._ended is not None
        return await asyncio.shield(asyncio.wrap_future(self._ended))

    async def died(self) -> bool:
        """Waits for the process to end; True if it was killed."""
        status = await self._end()
        return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL

    def points(self) -> dict[int, int]:
        """The points of each update it handled to the end."""
        if not self.points_file.exists():
            return {}
        pairs = (line.split() for line in self.points_file.read_text().splitlines())
        return {int(update): int(count) for update, count in pairs}

    async def stop(self) -> None:
        if not self.alive:
            return
        assert self.pid is not None
        os.kill(self.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(self._end(), 30)
        except TimeoutError:
            self.kill()
            await self._end()


class AlternatingProxy:
    """A load balancer that sends each request to the next worker in turn, whatever it holds;
    a worker that does not answer makes the request fail (Telegram then delivers it again)."""

    def __init__(self, workers: list[Worker], journal: Path | None = None) -> None:
        """`journal`: a file to which it adds a line for each update, naming the worker."""
        self.workers = workers
        self.journal = journal
        self.taken: list[tuple[int | None, str]] = []  # (update id, worker) in order
        self.on_handled: Callable[[int], None] | None = None  # an update a worker answered 2xx
        self._turn = 0
        self.app = web.Application(client_max_size=MAX_REQUEST_SIZE)
        self.app.router.add_route("*", "/{path:.*}", self._forward)
        self.url = ""

    async def start(self) -> None:
        self._http = aiohttp.ClientSession()
        self._runner, port = await serve(self.app)
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._runner.cleanup()
        await self._http.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        worker = self.workers[self._turn % len(self.workers)]
        self._turn += 1
        body = await request.read()
        update_id = None
        if request.path == WEBHOOK_PATH:
            update_id = (await request.json()).get("update_id")
            self.taken.append((update_id, worker.name))
            if self.journal is not None:
                with self.journal.open("a") as journal:
                    journal.write(f"update {update_id} to {worker.name}\n")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in HOP_HEADERS}
        try:
            async with self._http.request(
                request.method, worker.url + request.path_qs, data=body, headers=headers
            ) as answer:
                payload = await answer.read()
                kept = {k: v for k, v in answer.headers.items() if k.lower() not in HOP_HEADERS}
                if update_id is not None and 200 <= answer.status < 300 and self.on_handled:
                    self.on_handled(update_id)
                return web.Response(body=payload, status=answer.status, headers=kept)
        except aiohttp.ClientError:
            return web.Response(status=502, text=f"{worker.name} did not answer")


HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "content-encoding"}


def worker_settings(
    telegram: TelegramHere, database_url: str, *, redis_url: str | None = None, **extra: str
) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "BOT_TOKEN": TOKEN,
        "WEBHOOK_SECRET": SECRET,
        "WEBHOOK_PATH": WEBHOOK_PATH,
        "TELEGRAM_API_BASE": telegram.url,
        "SCHEDULER": "false",
        "ADMIN_IDS": "1001",
        "LOG_LEVEL": "INFO",
        "REDIS_URL": redis_url or "",
        **extra,
    }


def settings_environment(settings: Settings) -> dict[str, str]:
    """The environment that gives a worker process these settings (those not at their
    default)."""
    environment = {}
    defaults = Settings(_env_file=None)  # type: ignore[call-arg]
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value == getattr(defaults, name):
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = ",".join(str(item) for item in value)
        elif isinstance(value, dict):
            value = ";".join(f"{key}={item}" for key, item in value.items())
        elif isinstance(value, bool):
            value = "true" if value else "false"
        environment[name.upper()] = "" if value is None else str(value)
    return environment
