"""Starts worker processes (tests/e2e/worker.py) by forking one that has imported their code
already: importing aiogram alone takes seconds on a small machine, and the kill tests start a
worker anew after each kill.

`python -m tests.e2e.zygote` reads one JSON line per worker to start from its standard input,
{"env": {...}, "log": path}, and answers "started <pid>"; when a worker ends it says
"ended <pid> <wait status>". It forks only from its single thread, between requests."""

from __future__ import annotations

import json
import os
import select
import signal
import sys

# What `stagekeeper webhook` imports, so that a forked worker imports nothing more.
import aiogram.fsm.storage.redis  # noqa: F401
import asyncpg  # noqa: F401

import bot.entrypoints
import bot.runtime  # noqa: F401
import handlers  # noqa: F401
import tests.e2e.worker as worker_main


def _run_worker(env: dict[str, str], log: str) -> None:
    """In the forked child: become the worker process; never returns."""
    try:
        out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.environ.clear()
        os.environ.update(env)
        code = worker_main.run()
    except BaseException as error:  # a forked child must never return into the zygote
        print(f"worker failed to run: {error!r}", file=sys.stderr, flush=True)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _report_ended(running: set[int]) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        running.discard(pid)
        print(f"ended {pid} {status}", flush=True)


def main() -> None:
    pending = b""
    running: set[int] = set()
    while True:
        # Wakes at least every 50 ms to tell of workers that ended.
        readable, _, _ = select.select([0], [], [], 0.05)
        _report_ended(running)
        if not readable:
            continue
        chunk = os.read(0, 1 << 16)
        if not chunk:  # the tests are over, or their process died: no worker outlives them
            for pid in running:
                os.kill(pid, signal.SIGKILL)
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            request = json.loads(line)
            pid = os.fork()
            if pid == 0:
                _run_worker(request["env"], request["log"])
            running.add(pid)
            print(f"started {pid}", flush=True)


if __name__ == "__main__":
    main()
