"""python -m sandbox --port 8081: serve the emulator and its web chat on their own."""

from __future__ import annotations

import argparse
from pathlib import Path

from aiohttp import web

from sandbox.app import Emulator, create_app
from sandbox.state import DEFAULT_TOKEN


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=DEFAULT_TOKEN, help="the bot token user routes use")
    parser.add_argument("--callback-answer-timeout", type=float, default=15.0)
    parser.add_argument(
        "--state-file", type=Path, help="keep users and update ids here across restarts"
    )
    args = parser.parse_args()
    emulator = Emulator(
        args.token,
        callback_answer_timeout=args.callback_answer_timeout,
        state_file=args.state_file,
    )
    web.run_app(create_app(emulator), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
