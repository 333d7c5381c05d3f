"""Two `stagekeeper webhook` workers on one PostgreSQL and one Redis, behind a proxy that sends
each update to the other worker than the one before: a conversation goes on whichever worker
takes its next step."""

from __future__ import annotations

import asyncio
import itertools
import re
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from bot.container import Services
from domain.access import SYSTEM
from domain.model import ActivityKind, utcnow
from domain.services.contacts import ContactDraft
from storage.models import LeaseRow
from tests.conftest import empty_postgres
from tests.e2e.conftest import (
    Deployment,
    Driver,
    Team,
    WorkersPool,
    bot_messages,
    button,
    deployed,
    empty_redis,
    eventually,
    press,
    press_until,
    stage_of,
    until,
    until_messages,
)
from tests.e2e.workers import ROOT, Worker

LAN = 2003
ADMIN = 1001

pytestmark = pytest.mark.postgres


@asynccontextmanager
async def two_deployed(
    postgres_url: str, tmp_path: Path, prepare: Any = None, **settings: str
) -> AsyncIterator[Deployment]:
    redis_url = await empty_redis()
    await empty_postgres(postgres_url)
    async with deployed(
        postgres_url, tmp_path, ["one", "two"], redis_url, prepare, **settings
    ) as running:
        yield running


# --- a conversation whose steps alternate between the workers (the workers pool) ------------

on_two_workers = pytest.mark.parametrize("bot_mode", ["workers"], indirect=True)


def workers_of(pool: WorkersPool) -> set[str]:
    """The workers that took an update in this test."""
    assert pool.current is not None
    return {name for _, name in pool.current.proxy.taken}


@on_two_workers
async def test_new_goes_through_both_workers_and_creates_one_contact(
    driver: Driver, team: Team, workers_pool: WorkersPool
) -> None:
    await driver.ask(LAN, "/new")
    await driver.ask(LAN, "Phạm Thu Hà")
    await driver.ask(LAN, "0987 111 222")
    [source] = await driver.ask(LAN, "Công ty Sao Mai")
    [stage] = await press(driver, LAN, source, "Zalo")
    [added, card] = await press_until(driver, LAN, stage, "MQL", "MQL (open)")
    assert "Added" in added["text"]
    assert "MQL (open)" in card["text"]
    [found] = await driver.services.contacts.find(SYSTEM, "+84987111222")
    assert (found.contact.name, found.company, found.contact.source) == (
        "Phạm Thu Hà",
        "Công ty Sao Mai",
        "Zalo",
    )
    assert len(await driver.services.contacts.find(SYSTEM, "Phạm Thu Hà")) == 1
    assert workers_of(workers_pool) == {"one", "two"}


@on_two_workers
async def test_a_typed_lost_reason_lands_on_its_contact_and_the_next_message_searches(
    driver: Driver, team: Team, workers_pool: WorkersPool
) -> None:
    [card] = await driver.ask(LAN, "nguyen van an")
    [stages] = await press(driver, LAN, card, "Stage")
    [reasons] = await press(driver, LAN, stages, "Disqualified")
    [ask] = await press(driver, LAN, reasons, "Other")
    assert "Describe the reason" in ask["text"]
    [moved] = await driver.ask(LAN, "Mua của đối thủ rồi")
    assert "Disqualified (lost)" in moved["text"]
    history = await driver.services.contacts.history(SYSTEM, team.an)
    assert history[-1].reason == "Mua của đối thủ rồi"
    [search] = await driver.ask(LAN, "minh phat")
    assert "Nguyễn Văn An" in search["text"]
    assert len(await driver.services.contacts.history(SYSTEM, team.an)) == len(history)


@on_two_workers
async def test_a_bulk_move_moves_what_was_confirmed_on_the_other_worker(
    driver: Driver, team: Team, workers_pool: WorkersPool
) -> None:
    services = driver.services
    lan = await services.users.by_telegram_id(LAN)
    assert lan is not None
    for number in range(39):
        await services.contacts.add(lan, ContactDraft(name=f"Hội chợ {number}", stage="Lead"))
    await services.contacts.add(lan, ContactDraft(name="Hội chợ khác", company="Minh Phát"))
    [plan] = await driver.ask(ADMIN, "/move hoi cho")
    assert "40 contact(s) match" in plan["text"]
    [other] = await driver.ask(ADMIN, "/move nguyen")  # a newer selection, on the other worker
    assert "1 contact(s) match" in other["text"]
    [plan] = await driver.ask(ADMIN, "/move hoi cho")
    [confirm] = await press(driver, ADMIN, plan, "SQL")
    assert "Move 40 contact(s) to SQL?" in confirm["text"]
    [moved] = await press_until(driver, ADMIN, confirm, "Confirm", "Moved")
    assert "Moved 40 contact(s) to SQL" in moved["text"]
    found = await services.contacts.find(SYSTEM, "hoi cho", limit=100)
    assert {f.contact.stage_id for f in found} == {
        (await services.contacts.stage_by_name("SQL")).id
    }
    assert await stage_of(driver, team.an) == "Lead"
    assert button(moved, "Undo")


# --- what the bot sends on its own: one sender for the whole deployment ----------------------

SCHEDULING = {"SCHEDULER": "true", "SCHEDULER_LEASE_SECONDS": "3", "LEADS_TEAM": "north"}


def announced(message: dict[str, Any]) -> int:
    """How many new leads a message announces (0 for any other message)."""
    text = message["text"] or ""
    if "A new lead for you." in text:
        return 1
    found = re.search(r"(\d+) new leads for you", text)
    return int(found.group(1)) if found else 0


async def test_forty_new_leads_through_both_workers_reach_their_owner_as_one_paced_stream(
    postgres_url: str, tmp_path: Path
) -> None:
    async with two_deployed(postgres_url, tmp_path, **SCHEDULING) as running:
        driver = running.driver
        await driver.ask(LAN, "/start")  # a bot may write only to who wrote to it
        since = await driver.cursor(LAN)
        _, key = await driver.services.api_keys.create(SYSTEM, "website")

        async def post(number: int) -> None:
            worker = running.workers[number % 2]
            event = {
                "event": "form_submitted",
                "phone": f"0987 400 {number:03}",
                "name": f"Khách {number}",
            }
            async with driver.http.post(
                f"{worker.url}/api/v1/events",
                json=event,
                headers={"Authorization": f"Bearer {key}"},
            ) as response:
                assert response.status == 200, await response.text()

        for first in range(0, 40, 4):  # a steady stream, four at a time
            await asyncio.gather(*(post(n) for n in range(first, first + 4)))

        messages = await until_messages(
            driver,
            LAN,
            since,
            lambda messages: sum(map(announced, messages)) >= 40,
            "40 leads announced",
        )

        async def all_sent() -> bool:
            return not await driver.services.events.pending_notices()

        await eventually(all_sent, "every notice marked sent")
        messages = bot_messages(await driver.changes(LAN, since))
        assert sum(map(announced, messages)) == 40
        assert len(messages) < 40  # leads that waited went out together
        sent = [
            call["time"]
            for call in await driver.requests("sendMessage")
            if str(call["params"].get("chat_id")) == str(LAN)
            and "new lead" in str(call["params"].get("text"))
        ]
        # One sender, paced at a message a second to a chat; two senders would interleave
        # (the margin is for how late each request reached the sandbox on a loaded machine).
        assert all(later - earlier > 0.5 for earlier, later in itertools.pairwise(sent)), sent


async def morning_for_lan_and_the_admin(services: Services) -> None:
    """An idle lead for Lan; nobody's morning message is on until the test switches it on."""
    lan = await services.users.by_telegram_id(LAN)
    admin = await services.users.by_telegram_id(ADMIN)
    assert lan is not None
    assert admin is not None
    await services.contacts.add(
        lan, ContactDraft(name="Idle Ivy", stage="Lead", created_at=utcnow() - timedelta(days=10))
    )
    for person in (lan, admin):
        await services.digests.update(person, enabled=False)


async def test_two_workers_and_two_digest_now_send_one_morning_message_each(
    postgres_url: str, tmp_path: Path
) -> None:
    async with two_deployed(
        postgres_url, tmp_path, morning_for_lan_and_the_admin, **SCHEDULING
    ) as running:
        driver = running.driver
        since = {}
        for person in (LAN, ADMIN):
            await driver.ask(person, "/start")
            since[person] = await driver.cursor(person)
            user = await driver.services.users.by_telegram_id(person)
            assert user is not None
            await driver.services.digests.update(user, enabled=True, send_at="00:00")
        environment = {**running.workers[0].env, "DATABASE_URL": postgres_url}
        commands = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot",
                "digest",
                "--now",
                cwd=ROOT,
                env=environment,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            for _ in range(2)
        ]
        outputs = [(await command.communicate())[0].decode() for command in commands]
        assert [command.returncode for command in commands] == [0, 0], outputs
        [lan] = await until(driver, LAN, since[LAN], "leads of yours are waiting")
        assert "Idle Ivy" in str(lan["reply_markup"])
        await until(driver, ADMIN, since[ADMIN], "Good morning!")

        async def nothing_left_due() -> bool:  # each morning message claimed and sent
            return not await driver.services.digests.due(whatever_the_time=True)

        await eventually(nothing_left_due, "every morning message sent")
        for person, words in ((LAN, "leads of yours are waiting"), (ADMIN, "Good morning!")):
            texts = [
                m["text"] or "" for m in bot_messages(await driver.changes(person, since[person]))
            ]
            assert len([t for t in texts if words in t]) == 1, texts


async def holder(services: Services) -> str:
    async with services.engine.connect() as connection:
        found = await connection.scalar(select(LeaseRow.holder).where(LeaseRow.name == "scheduler"))
    return str(found or "")


def pid_of(worker: Worker) -> str:
    assert worker.pid is not None
    return str(worker.pid)


async def test_after_the_lease_holder_is_killed_the_other_worker_sends_the_next_reminder(
    postgres_url: str, tmp_path: Path
) -> None:
    async with two_deployed(postgres_url, tmp_path, **SCHEDULING) as running:
        driver, services = running.driver, running.driver.services
        await driver.ask(LAN, "/start")

        async def held() -> bool:
            lease = await holder(services)
            return any(f":{pid_of(w)}:" in lease for w in running.workers)

        await eventually(held, "the scheduler's lease taken by a worker")
        lease = await holder(services)
        [running_it] = [w for w in running.workers if f":{pid_of(w)}:" in lease]
        [other] = [w for w in running.workers if w is not running_it]
        running_it.kill()
        assert await running_it.died()

        lan = await services.users.by_telegram_id(LAN)
        assert lan is not None
        since = await driver.cursor(LAN)
        await services.contacts.log_activity(
            lan, running.an, ActivityKind.TASK, "gọi lại cho An", due_at=utcnow()
        )
        [reminder] = [
            m for m in await until(driver, LAN, since, "gọi lại cho An") if "gọi lại" in m["text"]
        ]
        assert "Nguyễn Văn An" in reminder["text"]
        assert f":{pid_of(other)}:" in await holder(services)
