"""Two `stagekeeper webhook` workers on one PostgreSQL and one Redis, behind a proxy that sends
each update to the other worker than the one before: a conversation goes on whichever worker
takes its next step."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from redis.asyncio import Redis

from bot.container import Services
from domain.access import SYSTEM
from domain.services.contacts import ContactDraft
from tests.conftest import empty_postgres
from tests.e2e.conftest import Driver, button, deployed, press, press_until, stage_of
from tests.e2e.workers import AlternatingProxy

LAN = 2003
ADMIN = 1001
REDIS_URL = os.environ.get("STAGEKEEPER_TEST_REDIS_URL")

pytestmark = pytest.mark.postgres


@dataclass
class TwoWorkers:
    driver: Driver
    proxy: AlternatingProxy
    services: Services
    an: int

    def workers_of(self, first_update: int) -> set[str]:
        return {name for update, name in self.proxy.taken if (update or 0) >= first_update}


@pytest.fixture
async def two_workers(postgres_url: str, tmp_path: Path) -> AsyncIterator[TwoWorkers]:
    if REDIS_URL is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI must test several workers: STAGEKEEPER_TEST_REDIS_URL is not set")
        pytest.skip('no Redis: run `eval "$(bash .ci/services.sh)"` to test several workers')
    await empty_postgres(postgres_url)
    redis = Redis.from_url(REDIS_URL)
    await redis.flushdb()
    await redis.aclose()
    async with deployed(postgres_url, tmp_path, ["one", "two"], REDIS_URL) as running:
        driver = running.driver
        yield TwoWorkers(driver, running.proxy, driver.services, running.an)


async def test_new_goes_through_both_workers_and_creates_one_contact(
    two_workers: TwoWorkers,
) -> None:
    driver = two_workers.driver
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
    assert two_workers.workers_of(0) == {"one", "two"}


async def test_a_typed_lost_reason_lands_on_its_contact_and_the_next_message_searches(
    two_workers: TwoWorkers,
) -> None:
    driver = two_workers.driver
    [card] = await driver.ask(LAN, "nguyen van an")
    [stages] = await press(driver, LAN, card, "Stage")
    [reasons] = await press(driver, LAN, stages, "Disqualified")
    [ask] = await press(driver, LAN, reasons, "Other")
    assert "Describe the reason" in ask["text"]
    [moved] = await driver.ask(LAN, "Mua của đối thủ rồi")
    assert "Disqualified (lost)" in moved["text"]
    history = await driver.services.contacts.history(SYSTEM, two_workers.an)
    assert history[-1].reason == "Mua của đối thủ rồi"
    [search] = await driver.ask(LAN, "minh phat")
    assert "Nguyễn Văn An" in search["text"]
    assert len(await driver.services.contacts.history(SYSTEM, two_workers.an)) == len(history)


async def test_a_bulk_move_moves_what_was_confirmed_on_the_other_worker(
    two_workers: TwoWorkers,
) -> None:
    services = two_workers.services
    lan = await services.users.by_telegram_id(LAN)
    assert lan is not None
    for number in range(39):
        await services.contacts.add(lan, ContactDraft(name=f"Hội chợ {number}", stage="Lead"))
    await services.contacts.add(lan, ContactDraft(name="Hội chợ khác", company="Minh Phát"))
    driver = two_workers.driver
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
    assert await stage_of(driver, two_workers.an) == "Lead"
    assert button(moved, "Undo")
