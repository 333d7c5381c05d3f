"""A worker killed (SIGKILL) at any point of an update's handling: the update is delivered again,
to the worker started anew, and then every effect is there once and the person has an answer.
The points are the statements, commits and Bot API calls of the update (tests/e2e/worker.py); a
few spread over all of them are tried, or every one with STAGEKEEPER_TEST_CRASH_POINTS=all."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.container import Services
from domain.access import SYSTEM
from tests.e2e.conftest import Driver, button, deployed, press
from tests.e2e.workers import Worker

LAN = 2003
ADMIN = 1001
SAMPLE = 5  # points tried per update, spread over its points (first and last included)
REDIS_URL = os.environ.get("STAGEKEEPER_TEST_REDIS_URL")


@dataclass
class Crashing:
    driver: Driver
    worker: Worker
    services: Services
    an: int


@pytest.fixture
async def deployment(database_url: str, tmp_path: Path) -> AsyncIterator[Crashing]:
    async with deployed(database_url, tmp_path, ["crashing"], REDIS_URL) as running:
        driver = running.driver
        yield Crashing(driver, running.workers[0], driver.services, running.an)


def spread(total: int) -> list[int]:
    if os.environ.get("STAGEKEEPER_TEST_CRASH_POINTS") == "all" or total <= SAMPLE:
        return list(range(1, total + 1))
    return sorted({1 + round(i * (total - 1) / (SAMPLE - 1)) for i in range(SAMPLE)})


async def answered(driver: Driver, update_id: int) -> None:
    """Waits until a worker handled the update to the end (a killed one never does)."""
    await driver.handled({"update_id": update_id})


async def bot_messages(driver: Driver, user: int, since: int) -> list[dict[str, Any]]:
    return [m for m in (await driver.changes(user, since))["messages"] if m["from"] == "bot"]


async def bot_texts(driver: Driver, user: int, since: int) -> list[str]:
    chat = await driver.changes(user, since, wait=0)
    texts = [m["text"] or m["caption"] or "" for m in chat["messages"] if m["from"] == "bot"]
    return texts + [a["text"] or "" for a in chat["callback_answers"]]


Prepare = Callable[[], Awaitable[Callable[[], Awaitable[int]]]]


async def crash_everywhere(
    deployment: Crashing,
    user: int,
    prepare: Prepare,
    effect_count: Callable[[], Awaitable[int]],
    *replies: str,
    check: Callable[[list[str]], None] = lambda texts: None,
) -> None:
    """`prepare` brings the chat to where the update is one step away and returns what sends it
    (returning its update id). Once without a crash to count its points, then killed at each
    of a spread of them: every time, the effect is there once more and one of `replies` is in
    the chat (what the first delivery sent before it died counts: the person saw it), and
    `check` holds for the bot's texts since the update was sent."""
    driver, worker = deployment.driver, deployment.worker
    send = await prepare()
    since = await driver.cursor(user)
    update_id = await send()
    await answered(driver, update_id)
    assert await effect_count() == 1
    total = worker.points()[update_id]
    for times, point in enumerate(spread(total), start=2):
        send = await prepare()
        since = await driver.cursor(user)
        worker.die_at(point)
        update_id = await send()
        # Background work may add points to a run, or leave some out: a run shorter than
        # `point` ends without dying.
        died = asyncio.ensure_future(worker.died())
        ended = asyncio.ensure_future(answered(driver, update_id))
        await asyncio.wait([died, ended], return_when=asyncio.FIRST_COMPLETED)
        if died.done():
            assert died.result(), f"the worker ended at point {point} of {total} unkilled"
            ended.cancel()
            await worker.start()
            await answered(driver, update_id)
        else:
            died.cancel()
            worker.crash_file.unlink(missing_ok=True)
        texts = await bot_texts(driver, user, since)
        assert await effect_count() == times, f"killed at point {point} of {total}: {texts}"
        assert any(r in text for r in replies for text in texts), f"point {point}: {texts}"
        check(texts)


async def sent(driver: Driver, user: int, text: str) -> int:
    return int((await driver.post("/sandbox/send", user_id=user, text=text))["update_id"])


async def clicked(driver: Driver, user: int, message: dict[str, Any], label: str) -> int:
    reply = await driver.click(user, message["message_id"], button(message, label))
    return int(reply["update_id"])


async def stage_buttons(deployment: Crashing) -> dict[str, Any]:
    """The card of An, back in Lead, with its stage buttons shown."""
    services = deployment.services
    lead = await services.contacts.stage_by_name("Lead")
    card = await services.contacts.get(SYSTEM, deployment.an)
    if card.stage is None or card.stage.name != "Lead":
        await services.contacts.set_stage(SYSTEM, deployment.an, lead.id, reason="test")
    driver = deployment.driver
    [found] = await driver.ask(LAN, "nguyen van an")
    [stages] = await press(driver, LAN, found, "Stage")
    return stages


async def moves_to(deployment: Crashing, stage: str) -> int:
    history = await deployment.services.contacts.history(SYSTEM, deployment.an)
    target = await deployment.services.contacts.stage_by_name(stage)
    return sum(1 for change in history if change.to_stage_id == target.id)


async def test_a_stage_button_moves_the_lead_once_wherever_the_worker_dies(
    deployment: Crashing,
) -> None:
    async def prepare() -> Callable[[], Awaitable[int]]:
        stages = await stage_buttons(deployment)
        return lambda: clicked(deployment.driver, LAN, stages, "MQL")

    await crash_everywhere(
        deployment, LAN, prepare, lambda: moves_to(deployment, "MQL"), "MQL (open)"
    )


async def test_a_lost_reason_is_recorded_once_wherever_the_worker_dies(
    deployment: Crashing,
) -> None:
    driver = deployment.driver

    async def prepare() -> Callable[[], Awaitable[int]]:
        stages = await stage_buttons(deployment)
        [reasons] = await press(driver, LAN, stages, "Disqualified")
        return lambda: clicked(driver, LAN, reasons, "Price")

    async def lost_for_price() -> int:
        history = await deployment.services.contacts.history(SYSTEM, deployment.an)
        return sum(1 for change in history if change.reason == "Price")

    await crash_everywhere(deployment, LAN, prepare, lost_for_price, "Disqualified (lost)")


needs_redis = pytest.mark.skipif(
    REDIS_URL is None and os.environ.get("CI") != "true",
    reason='no Redis: run `eval "$(bash .ci/services.sh)"` (conversations of a killed worker '
    "survive only in Redis)",
)


@needs_redis
async def test_new_creates_the_contact_once_wherever_the_worker_dies(
    deployment: Crashing,
) -> None:
    driver = deployment.driver
    made = 0

    async def prepare() -> Callable[[], Awaitable[int]]:
        nonlocal made
        made += 1
        await driver.ask(LAN, "/new")
        await driver.ask(LAN, f"Phạm Thu Hà {made}")
        await driver.ask(LAN, f"0987 111 {made:03d}")
        [source] = await driver.ask(LAN, "Công ty Sao Mai")
        [stage] = await press(driver, LAN, source, "Zalo")
        return lambda: clicked(driver, LAN, stage, "MQL")

    async def created() -> int:
        found = await deployment.services.contacts.find(SYSTEM, "Phạm Thu Hà", limit=100)
        names = [f.contact.name for f in found]
        assert len(names) == len(set(names)), f"a contact made twice: {names}"
        return len(names)

    await crash_everywhere(deployment, LAN, prepare, created, "Added", "Phạm Thu Hà")


@needs_redis
async def test_a_note_is_logged_once_and_shown_once_wherever_the_worker_dies(
    deployment: Crashing,
) -> None:
    driver = deployment.driver
    note = ""

    async def prepare() -> Callable[[], Awaitable[int]]:
        nonlocal note
        note = f"[{len(await notes()) + 1}] gọi lại"
        [card] = await driver.ask(LAN, "nguyen van an")
        await press(driver, LAN, card, "Note")
        return lambda: sent(driver, LAN, note)

    async def notes() -> list[str]:
        timeline = await deployment.services.contacts.timeline(SYSTEM, deployment.an, ["note"])
        return [entry.text for entry in timeline]

    async def logged() -> int:
        texts = await notes()
        assert len(texts) == len(set(texts)), f"a note logged twice: {texts}"
        return len(texts)

    def shown_once(texts: list[str]) -> None:
        # The card answering a delivery again shows what is stored, not the note it did not
        # store a second time.
        assert all(text.count(note) <= 1 for text in texts), texts

    await crash_everywhere(deployment, LAN, prepare, logged, "Note saved", check=shown_once)


@needs_redis
async def test_an_import_is_applied_once_wherever_the_worker_dies(deployment: Crashing) -> None:
    driver = deployment.driver
    files = 0

    async def prepare() -> Callable[[], Awaitable[int]]:
        nonlocal files
        files += 1
        rows = "".join(
            f"0977 {files:03d} {row:03d},Nhập Thử {files} {row},Lead\n" for row in (1, 2)
        )
        since = await driver.cursor(ADMIN)
        file = ("phone,name,stage\n" + rows).encode()
        await driver.handled(await driver.upload(ADMIN, f"contacts-{files}.csv", file))
        [summary] = await bot_messages(driver, ADMIN, since)
        assert "2 to create" in summary["text"]
        return lambda: clicked(driver, ADMIN, summary, "Import")

    async def imports() -> int:
        operations = await deployment.services.operations.recent(SYSTEM, limit=100)
        found = await deployment.services.contacts.find(SYSTEM, "Nhập Thử", limit=100)
        applied = sum(1 for operation in operations if operation.kind == "import")
        assert len(found) == 2 * applied, f"{len(found)} contacts from {applied} imports"
        return applied

    await crash_everywhere(deployment, ADMIN, prepare, imports, "Imported")
