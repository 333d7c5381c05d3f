"""A running emulator on a loopback port and shortcuts for driving it from tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sandbox import Emulator, create_app


class SandboxDriver:
    """Talks to the emulator over HTTP, as the bot and as its users."""

    def __init__(self, client: TestClient[Any, Any], emulator: Emulator) -> None:
        self.client = client
        self.emulator = emulator
        self.token = emulator.default_token

    @property
    def base_url(self) -> str:
        return str(self.client.make_url("")).rstrip("/")

    async def call(self, method: str, token: str | None = None, **params: Any) -> tuple[int, Any]:
        """A Bot API call with a JSON body; returns the HTTP status and the decoded body."""
        response = await self.client.post(f"/bot{token or self.token}/{method}", json=params)
        return response.status, await response.json()

    async def api(self, method: str, **params: Any) -> Any:
        status, body = await self.call(method, **params)
        assert status == 200, body
        assert body["ok"] is True
        return body["result"]

    async def refused(self, method: str, **params: Any) -> tuple[int, str]:
        status, body = await self.call(method, **params)
        assert body["ok"] is False
        assert body["error_code"] == status
        return status, body["description"]

    async def user_side(self, path: str, **body: Any) -> Any:
        response = await self.client.post(f"/sandbox/{path}", json=body)
        assert response.status == 200, await response.text()
        return await response.json()

    async def add_user(self, user_id: int = 42, first_name: str = "Lan", **extra: Any) -> Any:
        return await self.user_side("users", id=user_id, first_name=first_name, **extra)

    async def say(self, user_id: int, text: str) -> Any:
        return await self.user_side("send", user_id=user_id, text=text)

    async def started_chat(self, user_id: int = 42) -> int:
        """A user who has written to the bot, so the bot may answer; returns the chat id."""
        await self.add_user(user_id)
        await self.say(user_id, "/start")
        return user_id

    async def chat(self, user_id: int, **query: Any) -> Any:
        response = await self.client.get(
            f"/sandbox/chat/{user_id}", params={k: str(v) for k, v in query.items()}
        )
        assert response.status == 200, await response.text()
        return await response.json()


@pytest.fixture
def emulator() -> Emulator:
    return Emulator(callback_answer_timeout=15.0, webhook_retry_delay=0.05)


@pytest.fixture
async def sandbox(emulator: Emulator) -> AsyncIterator[SandboxDriver]:
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(emulator), host="127.0.0.1"))
    await client.start_server()
    yield SandboxDriver(client, emulator)
    await client.close()
