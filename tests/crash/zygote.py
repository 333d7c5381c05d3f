"""Starts the crash tests' commands by forking a process that has imported their code already,
as tests/e2e/zygote.py does for the bot's workers: importing the command line takes about two
seconds here and `digest --now` (aiogram) several more, which every kill and every next command
would pay again. A forked child runs exactly what the `stagekeeper` script runs,
`bot.cli.main(argv)`, in a session of its own (STAGEKEEPER_CRASH_EXEC=1 runs the installed
script instead).

`python -m tests.crash.zygote` reads one JSON line per request from its standard input:

- {"start": N, "argv": [...], "env": {...}, "cwd": dir, "out": file, "err": file} starts a
  command (argv[0] is "stagekeeper" or "bulk-move") and answers "started N <pid>";
- {"kill": pid} sends SIGKILL to that child, if it is one that has not been waited for (so no
  other process that took its id since is ever signalled).

When a child ends it says "ended <pid> <wait status>". At the end of its input (the tests are
over, or their process died) it kills its children and ends. It forks only from its single
thread, between requests."""

from __future__ import annotations

import json
import os
import random
import select
import signal
import sys
import traceback
from typing import Any

import asyncpg  # noqa: F401

# What the commands import, so that a forked child imports nothing more.
import bot.cli
import bot.notifier
import bot.runtime
import handlers  # noqa: F401
import tests.crash.bulk_move


def _run(request: dict[str, Any]) -> None:
    """In the forked child: become the command; never returns."""
    code = 1
    try:
        os.setsid()
        os.chdir(request["cwd"])
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.dup2(os.open(request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 1)
        os.dup2(os.open(request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 2)
        os.environ.clear()
        os.environ.update(request["env"])
        random.seed()  # not the zygote's sequence, shared by every child
        name, *argv = request["argv"]
        sys.argv = [name, *argv]
        if name == "bulk-move":
            tests.crash.bulk_move.main()
            code = 0
        else:
            code = bot.cli.main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:  # a forked child must never return into the zygote
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _report_ended(running: set[int]) -> None:
    while running:
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
        # Wakes at least every 5 ms to tell of commands that ended.
        readable, _, _ = select.select([0], [], [], 0.005)
        _report_ended(running)
        if not readable:
            continue
        chunk = os.read(0, 1 << 16)
        if not chunk:
            for pid in running:
                os.kill(pid, signal.SIGKILL)
            return
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            request = json.loads(line)
            if "kill" in request:
                if request["kill"] in running:  # not waited for yet: still this child's id
                    os.kill(request["kill"], signal.SIGKILL)
                continue
            pid = os.fork()
            if pid == 0:
                _run(request)
            running.add(pid)
            print(f"started {request['start']} {pid}", flush=True)


if __name__ == "__main__":
    main()
