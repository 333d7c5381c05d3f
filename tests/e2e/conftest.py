"""End-to-end harness: the emulator and the bot on free loopback ports, in long-polling or in
webhook mode, and a driver that talks to the emulator as Telegram users do."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.container import Services, build_services
from bot.entrypoints import Sandbox, WebhookServer
from bot.runtime import BotRuntime
from bot.settings import Settings
from domain.access import SYSTEM
from domain.model import Role
from domain.services.contacts import ContactDraft

ADMIN_ID = 1001
WEBHOOK_SECRET = "e2e-secret-token"


class Driver:
    """Talks to the sandbox's user-side API (DESIGN §4) over HTTP."""

    def __init__(
        self,
        base_url: str,
        http: aiohttp.ClientSession,
        services: Services,
        runtime: BotRuntime,
        api_url: str | None = None,
    ) -> None:
        self.base_url = base_url
        self.http = http
        self.services = services
        self.runtime = runtime  # the bot being driven (polling or behind the webhook)
        self.api_url = (api_url or base_url) + "/api/v1"  # the webhook server's, in that mode

    async def event(self, key: str, **event: Any) -> tuple[int, Any]:
        """Posts an event to the HTTP API with the API key `key`; returns status and body."""
        headers = {"Authorization": f"Bearer {key}"}
        async with self.http.post(f"{self.api_url}/events", json=event, headers=headers) as r:
            return r.status, await r.json()

    async def post(self, path: str, **body: Any) -> Any:
        async with self.http.post(f"{self.base_url}{path}", json=body) as response:
            assert response.status == 200, await response.text()
            return await response.json()

    async def user(self, user_id: int, first_name: str = "Lan", language: str = "en") -> None:
        await self.post("/sandbox/users", id=user_id, first_name=first_name, language_code=language)

    async def send(self, user_id: int, text: str) -> int:
        """Sends a message as the user; returns its message id."""
        return int((await self.post("/sandbox/send", user_id=user_id, text=text))["message_id"])

    async def click(self, user_id: int, message_id: int, data: str) -> Any:
        return await self.post("/sandbox/click", user_id=user_id, message_id=message_id, data=data)

    async def upload(
        self, user_id: int, filename: str, content: bytes, caption: str | None = None
    ) -> int:
        form = aiohttp.FormData()
        form.add_field("user_id", str(user_id))
        form.add_field("file", content, filename=filename, content_type="text/csv")
        if caption:
            form.add_field("caption", caption)
        async with self.http.post(f"{self.base_url}/sandbox/upload", data=form) as response:
            assert response.status == 200, await response.text()
            return int((await response.json())["message_id"])

    async def chat(self, user_id: int, after: int = 0, wait: float = 5.0) -> Any:
        params = {"after": str(after), "timeout": str(wait)}
        async with self.http.get(f"{self.base_url}/sandbox/chat/{user_id}", params=params) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def cursor(self, user_id: int) -> int:
        """The chat's current change counter, to ask later for what changed since."""
        return int((await self.chat(user_id, after=10**9, wait=0))["cursor"])

    async def changes(self, user_id: int, since: int, wait: float = 5.0) -> Any:
        """Messages created or edited, and buttons answered, after `since` (a cursor), once the
        bot has been quiet for a moment."""
        params = {"since": str(since), "timeout": str(wait)}
        async with self.http.get(f"{self.base_url}/sandbox/chat/{user_id}", params=params) as r:
            assert r.status == 200, await r.text()
            return await r.json()

    async def replies(self, user_id: int, after: int, wait: float = 5.0) -> list[Any]:
        """The bot's messages (new or edited) after message `after`, once the bot is quiet."""
        chat = await self.chat(user_id, after, wait)
        return [m for m in chat["messages"] if m["from"] == "bot"]

    async def ask(self, user_id: int, text: str, wait: float = 5.0) -> list[Any]:
        sent = await self.send(user_id, text)
        return await self.replies(user_id, sent, wait)

    async def fault(self, method: str, error_code: int | str, count: int, **extra: Any) -> None:
        await self.post(
            "/sandbox/faults", method=method, error_code=error_code, count=count, **extra
        )

    async def requests(self, method: str) -> list[Any]:
        async with self.http.get(
            f"{self.base_url}/sandbox/requests", params={"method": method}
        ) as response:
            body = await response.json()
        return list(body["requests"] if isinstance(body, dict) else body)


@pytest.fixture
def e2e_settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    path = tmp_path / "e2e.db"
    shutil.copy(sqlite_template, path)
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{path}",
        admin_ids=[ADMIN_ID],
        scheduler=False,  # the digest tests run it themselves
    )


@pytest.fixture(params=["polling", "webhook"])
async def bot_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def sandbox_of_driver(e2e_settings: Settings) -> AsyncIterator[Sandbox]:
    services = build_services(e2e_settings)
    sandbox = Sandbox(services, port=0)
    await sandbox.start()
    yield sandbox
    await sandbox.stop()
    await services.close()


@pytest.fixture
async def driver(sandbox_of_driver: Sandbox, bot_mode: str) -> AsyncIterator[Driver]:
    """A sandbox with the bot attached in `bot_mode`; the bot is stopped after the test."""
    sandbox = sandbox_of_driver
    services = sandbox.services
    e2e_settings = services.settings
    webhook: WebhookServer | None = None
    if bot_mode == "webhook":
        await sandbox.stop_bot()  # the same emulator, the bot now behind a webhook instead
        settings = e2e_settings.model_copy(update={"telegram_api_base": sandbox.url})
        webhook_services = build_services(settings, services.engine)
        webhook = WebhookServer(
            webhook_services,
            token=sandbox.token,
            secret=WEBHOOK_SECRET,
            public_url=None,
            host="127.0.0.1",
            port=0,
        )
        await webhook.start()
    runtime = webhook.runtime if webhook is not None else sandbox.runtime
    assert runtime is not None
    async with aiohttp.ClientSession() as http:
        yield Driver(sandbox.url, http, services, runtime, webhook.url if webhook else None)
    if webhook is not None:
        await webhook.stop()


# --- a small sales team, and shortcuts to press buttons ------------------------------------

MANAGER, LAN, OTTO, STRANGER = 2002, 2003, 2004, 3001


@dataclass
class Team:
    an: int
    bich: int
    won: int


@pytest.fixture
async def team(driver: Driver) -> Team:
    services = driver.services
    await services.stages.apply_template(SYSTEM, "amis")
    await services.users.add(
        SYSTEM, "Minh Manager", Role.MANAGER, team="north", telegram_id=MANAGER
    )
    lan = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north", telegram_id=LAN)
    otto = await services.users.add(SYSTEM, "Otto", Role.AGENT, team="south", telegram_id=OTTO)
    an = await services.contacts.add(
        lan,
        ContactDraft(name="Nguyễn Văn An", phone="+84912345678", company="Minh Phát", stage="Lead"),
    )
    bich = await services.contacts.add(otto, ContactDraft(name="Trần Thị Bích", stage="Lead"))
    won = await services.contacts.add(lan, ContactDraft(name="Khách Thắng", stage="Customer"))
    for user_id, name in ((MANAGER, "Minh"), (LAN, "Lan"), (OTTO, "Otto"), (ADMIN_ID, "Ada")):
        await driver.user(user_id, name)
    assert an.id is not None
    assert bich.id is not None
    assert won.id is not None
    return Team(an.id, bich.id, won.id)


def button(message: dict[str, Any], text: str) -> str:
    """The callback data of the button whose text contains `text`."""
    for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
        for key in row:
            if text in key["text"]:
                return str(key["callback_data"])
    raise AssertionError(f"no button {text!r} in {message.get('reply_markup')}")


async def press(driver: Driver, user: int, message: dict[str, Any], text: str) -> list[Any]:
    """Presses a button and returns the bot's messages that changed or appeared."""
    return (await click(driver, user, message, button(message, text)))[0]


async def click(
    driver: Driver, user: int, message: dict[str, Any], data: str
) -> tuple[list[Any], dict[str, Any] | None]:
    """Sends a callback with `data` from `message`; returns the bot's messages that changed or
    appeared, and the bot's answer to the callback."""
    since = await driver.cursor(user)
    sent = await driver.click(user, message["message_id"], data)
    chat = await driver.changes(user, since)
    answers = [
        a for a in chat["callback_answers"] if a["callback_query_id"] == sent["callback_query_id"]
    ]
    return [m for m in chat["messages"] if m["from"] == "bot"], (answers[0] if answers else None)


async def stage_of(driver: Driver, contact_id: int) -> str | None:
    card = await driver.services.contacts.get(SYSTEM, contact_id)
    return card.stage.name if card.stage else None


async def until(driver: Driver, user: int, since: int, text: str) -> list[Any]:
    """The bot's messages changed since `since` (a cursor), once one of them contains `text`:
    for a message the bot edits along the way (progress) before it shows the result."""
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        chat = await driver.changes(user, since, wait=1)
        messages = [m for m in chat["messages"] if m["from"] == "bot"]
        if any(text in (m["text"] or m["caption"] or "") for m in messages):
            return messages
        await asyncio.sleep(0.05)  # the chat answers at once while older changes are there
    raise AssertionError(f"no message with {text!r}")


async def press_until(
    driver: Driver, user: int, message: dict[str, Any], label: str, text: str
) -> list[Any]:
    """Presses a button and returns the bot's messages that changed or appeared, once one of
    them contains `text`."""
    since = await driver.cursor(user)
    await driver.click(user, message["message_id"], button(message, label))
    return await until(driver, user, since, text)
