"""Schemathesis against the HTTP API's own OpenAPI document: generated requests, valid and
invalid, never get a server error, and every answer matches the document (status, content type,
schema). The API runs on a loopback port in a thread of its own, on SQLite."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from bot.api import OPENAPI, mount_api
from bot.container import build_services
from bot.settings import Settings
from domain.access import SYSTEM
from domain.services.contacts import ContactDraft


@dataclass
class LiveApi:
    url: str
    key: str


class _Server(threading.Thread):
    def __init__(self, database: Path) -> None:
        super().__init__(daemon=True)
        self.database = database
        self.started = threading.Event()
        self.api: LiveApi | None = None
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:
            self.error = error
            self.started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        url = f"sqlite+aiosqlite:///{self.database}"
        services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
        await services.stages.apply_template(SYSTEM, "amis")
        await services.contacts.add(SYSTEM, ContactDraft(name="An", phone="+84912345678"))
        _, key = await services.api_keys.create(SYSTEM, "schemathesis")
        app = web.Application()
        mount_api(app, services, lambda notices: None)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
        self.api = LiveApi(f"http://127.0.0.1:{port}/api/v1", key)
        self.started.set()
        await self._stopping.wait()
        await runner.cleanup()
        await services.close()

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self.join(timeout=10)


@pytest.fixture(scope="module")
def live_api(tmp_path_factory: pytest.TempPathFactory, sqlite_template: Path) -> Iterator[LiveApi]:
    database = tmp_path_factory.mktemp("schemathesis") / "api.db"
    shutil.copy(sqlite_template, database)
    server = _Server(database)
    server.start()
    server.started.wait(timeout=30)
    if server.api is None:
        raise RuntimeError("the API did not start") from server.error
    yield server.api
    server.stop()


# The document the API serves at /openapi.json (tests/integration/test_api.py checks that it
# does). Loaded here rather than from the live server: schemathesis' lazy loading from a fixture
# does not run on pytest 9.
schema = schemathesis.openapi.from_dict(OPENAPI)


@schema.parametrize()
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_the_api_conforms_to_its_document_and_never_fails(
    case: schemathesis.Case, live_api: LiveApi
) -> None:
    case.call_and_validate(
        base_url=live_api.url,
        headers={"Authorization": f"Bearer {live_api.key}"},
        # The document gives an event's shape; whether a phone number is possible in its region
        # or an email has a domain is the domain's to say (a 422 naming the field), which JSON
        # Schema cannot express.
        excluded_checks=[positive_data_acceptance],
    )
