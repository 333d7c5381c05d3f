"""Composition: mount the emulator on an aiohttp application, or build one that serves only it."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from sandbox.botapi import BotApi
from sandbox.state import SandboxState
from sandbox.userside import UserSide

STATIC_DIR = Path(__file__).parent / "static"
MAX_REQUEST_SIZE = 50 * 1024 * 1024  # Telegram's limit for files bots upload


class Emulator(SandboxState):
    """A local Telegram: the Bot API for bots, /sandbox/* for users and tests, and a web chat."""

    def install(self, app: web.Application) -> None:
        """Adds all routes to `app`. Mount on an application with a large client_max_size."""
        BotApi(self).add_routes(app)
        UserSide(self).add_routes(app)
        app.router.add_get("/", _web_chat)
        app.router.add_static("/sandbox/static/", STATIC_DIR)
        app[EMULATOR] = self


EMULATOR = web.AppKey("sandbox_emulator", Emulator)


async def _web_chat(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html")


def create_app(emulator: Emulator | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_REQUEST_SIZE)
    (emulator or Emulator()).install(app)
    return app
