"""An emulator with a state file remembers across a restart what Telegram would: people, how far
update and message ids went, started and blocked chats."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sandbox import Emulator, create_app
from tests.sandbox.conftest import SandboxDriver


@contextlib.asynccontextmanager
async def running(state_file: Path) -> AsyncIterator[SandboxDriver]:
    """An emulator started on `state_file`, stopped on leaving."""
    emulator = Emulator(state_file=state_file)
    client: TestClient[Any, Any] = TestClient(TestServer(create_app(emulator), host="127.0.0.1"))
    await client.start_server()
    try:
        yield SandboxDriver(client, emulator)
    finally:
        await client.close()


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    return tmp_path / "telegram.json"


async def people(sandbox: SandboxDriver) -> Any:
    """The people list the web chat shows."""
    response = await sandbox.client.get("/sandbox/users")
    assert response.status == 200
    return (await response.json())["users"]


async def test_update_ids_go_on_above_the_earlier_ones_after_a_restart(state_file):
    async with running(state_file) as sandbox:
        await sandbox.add_user(42)
        earlier = [(await sandbox.say(42, text))["update_id"] for text in ("/start", "hi")]
    async with running(state_file) as sandbox:
        later = await sandbox.say(42, "again")
        assert later["update_id"] > max(earlier)
        [update] = await sandbox.api("getUpdates")
        assert (update["update_id"], update["message"]["text"]) == (later["update_id"], "again")


async def test_the_people_of_the_web_chat_are_the_same_after_a_restart(state_file):
    async with running(state_file) as sandbox:
        await sandbox.add_user(42, "Lan", username="lan", language_code="vi")
        await sandbox.add_user(43, "Otto")
        await sandbox.add_user(44, "Minh", blocked=True)
        before = await people(sandbox)
    async with running(state_file) as sandbox:
        assert await people(sandbox) == before
    assert [(p["id"], p["first_name"], p["blocked"]) for p in before] == [
        (42, "Lan", False),
        (43, "Otto", False),
        (44, "Minh", True),
    ]


async def test_a_started_chat_stays_started_and_its_message_ids_go_on(state_file):
    async with running(state_file) as sandbox:
        chat_id = await sandbox.started_chat(42)
        earlier = await sandbox.api("sendMessage", chat_id=chat_id, text="before")
        await sandbox.add_user(43)  # never wrote to the bot
    async with running(state_file) as sandbox:
        # The bot may write first to the one who started the chat before, not to the other.
        later = await sandbox.api("sendMessage", chat_id=chat_id, text="after")
        assert later["message_id"] > earlier["message_id"]
        status, _ = await sandbox.refused("sendMessage", chat_id=43, text="hello")
        assert status == 403


async def test_a_web_chat_polling_across_a_restart_sees_the_new_messages(state_file):
    async with running(state_file) as sandbox:
        chat_id = await sandbox.started_chat(42)
        await sandbox.api("sendMessage", chat_id=chat_id, text="before")
        cursor = (await sandbox.chat(chat_id))["cursor"]
    async with running(state_file) as sandbox:
        await sandbox.say(chat_id, "/help")
        await sandbox.api("sendMessage", chat_id=chat_id, text="after")
        chat = await sandbox.chat(chat_id, since=cursor, timeout=5)
        assert [m["text"] for m in chat["messages"]] == ["/help", "after"]


async def test_reset_forgets_the_people_but_not_how_far_update_ids_went(state_file):
    async with running(state_file) as sandbox:
        await sandbox.add_user(42)
        earlier = await sandbox.say(42, "hi")
        await sandbox.user_side("reset")
        await sandbox.add_user(43)
        assert (await sandbox.say(43, "hi"))["update_id"] > earlier["update_id"]
    async with running(state_file) as sandbox:
        assert [p["id"] for p in await people(sandbox)] == [43]
        assert (await sandbox.say(43, "hi"))["update_id"] > earlier["update_id"] + 1


async def test_an_unreadable_state_file_is_refused_with_its_name(state_file):
    state_file.write_text("{not json", encoding="utf-8")
    with pytest.raises(ValueError, match=r"telegram\.json is not a sandbox state file"):
        Emulator(state_file=state_file)
