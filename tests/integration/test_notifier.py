"""Telling owners about new leads: paced overall and per chat, several waiting leads as one
message, and notices kept pending until their message went out (SQLite; a bot that records)."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.container import Services, build_services
from bot.lead_notifier import LeadNotifier
from bot.notifier import Pacer, ScheduledMessages
from bot.scheduler import SchedulerHost
from bot.settings import Settings
from domain.access import SYSTEM
from domain.model import ActivityKind, Notice, Role, utcnow
from domain.services.events import EventDraft
from handlers.i18n import build_i18n


@dataclass
class Sent:
    at: float
    chat_id: int
    text: str
    buttons: list[str]


class RecordingBot:
    def __init__(self, failures: int = 0) -> None:
        self.sent: list[Sent] = []
        self.failures = failures

    async def send_message(self, chat_id: int, text: str, reply_markup: Any = None) -> None:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("Telegram is down")
        rows = reply_markup.inline_keyboard if reply_markup else []
        buttons = [button.text for row in rows for button in row]
        self.sent.append(Sent(time.monotonic(), chat_id, text, buttons))


@pytest.fixture
def settings(tmp_path: Path, sqlite_template: Path) -> Settings:
    database = tmp_path / "notices.db"
    shutil.copy(sqlite_template, database)
    return Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{database}")  # type: ignore[call-arg]


@pytest.fixture
async def services(settings: Settings) -> AsyncIterator[Services]:
    built = build_services(settings)
    await built.stages.apply_template(SYSTEM, "amis")
    yield built
    await built.close()


async def agents(services: Services, count: int) -> None:
    for n in range(count):
        await services.users.add(SYSTEM, f"Agent {n}", Role.AGENT, telegram_id=5000 + n)


async def new_leads(services: Services, count: int, first: int = 0) -> list[Notice]:
    notices = []
    for n in range(first, first + count):
        draft = EventDraft("form_submitted", phone=f"+8491234{n:04}", name=f"Lead {n}")
        notices += (await services.events.record("web", draft)).notices
    return notices


def notifier(
    services: Services, bot: RecordingBot, *, rate: float = 25, per_chat: float = 1.0
) -> LeadNotifier:
    pacer = Pacer(rate)
    return LeadNotifier(bot, services, build_i18n(), pacer=pacer, per_chat=per_chat)  # type: ignore[arg-type]


async def until_idle(told: LeadNotifier, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not told.idle:
        assert time.monotonic() < deadline, "the notifier did not finish"
        await asyncio.sleep(0.01)


async def test_one_new_lead_comes_as_its_card_with_the_stage_buttons(services: Services) -> None:
    await agents(services, 1)
    bot = RecordingBot()
    told = notifier(services, bot)
    await told.start()
    told.submit(await new_leads(services, 1))
    await until_idle(told)
    await told.stop()
    [message] = bot.sent
    assert message.chat_id == 5000
    assert message.text.startswith("🆕 A new lead for you.")
    assert "Lead 0" in message.text
    assert {"• ▫️ Lead", "▫️ MQL", "🏆 Customer"} <= set(message.buttons)
    assert await services.events.pending_notices() == []


async def test_leads_that_pile_up_for_one_person_go_out_as_one_message(
    services: Services,
) -> None:
    await agents(services, 1)
    bot = RecordingBot()
    told = notifier(services, bot, per_chat=0.3)
    await told.start()
    told.submit(await new_leads(services, 1))
    told.submit(await new_leads(services, 4, first=1))
    await until_idle(told)
    await told.stop()
    assert [m.text.splitlines()[0] for m in bot.sent] == [
        "🆕 A new lead for you.",
        "🆕 4 new leads for you:",
    ]
    assert bot.sent[1].at - bot.sent[0].at >= 0.3
    assert len(bot.sent[1].buttons) == 4


async def test_messages_are_paced_overall(services: Services) -> None:
    await agents(services, 30)
    notices = await new_leads(services, 30)
    assert len({n.user_id for n in notices}) == 30
    bot = RecordingBot()
    told = notifier(services, bot, rate=20)
    await told.start()
    told.submit(notices)
    await until_idle(told)
    await told.stop()
    times = [message.at for message in bot.sent]
    assert len(times) == 30
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= 20 + 1  # one more at most where a late timer let the next one close in
    assert times[-1] - times[0] >= 29 / 20 * 0.9


async def test_what_an_earlier_run_left_is_sent_at_start(services: Services) -> None:
    await agents(services, 1)
    await new_leads(services, 1)
    bot = RecordingBot()
    told = notifier(services, bot)
    await told.start()
    await until_idle(told)
    await told.stop()
    assert len(bot.sent) == 1


async def test_a_notice_whose_message_failed_stays_pending(services: Services) -> None:
    await agents(services, 1)
    told_once = notifier(services, RecordingBot(failures=1))
    await told_once.start()
    told_once.submit(await new_leads(services, 1))
    await until_idle(told_once)
    await told_once.stop()
    assert len(await services.events.pending_notices()) == 1


async def test_of_several_processes_only_the_lease_holder_sends_what_any_of_them_wrote(
    services: Services,
) -> None:
    """Two workers on one database: the one that recorded the events does not hold the
    scheduler lease, so the other sends their notices, once, and one pace holds for both."""
    await agents(services, 2)
    bots = [RecordingBot(), RecordingBot()]
    told = [notifier(services, bot) for bot in bots]
    hosts = [
        SchedulerHost(
            ScheduledMessages(bot, services, build_i18n(), Pacer()),  # type: ignore[arg-type]
            notices,
            tick=0.2,
            check_every=0.2,
        )
        for bot, notices in zip(bots, told, strict=True)
    ]
    for notices, host in zip(told, hosts, strict=True):
        await notices.start()
        host.start()
    try:
        deadline = time.monotonic() + 30
        while not any(host.running for host in hosts):
            assert time.monotonic() < deadline, "no process took the lease"
            await asyncio.sleep(0.05)
        holder = next(n for n, host in enumerate(hosts) if host.running)
        other = 1 - holder
        told[other].submit(await new_leads(services, 2))  # it recorded them, it may not send
        while await services.events.pending_notices():
            assert time.monotonic() < deadline, "the notices were not sent"
            await asyncio.sleep(0.05)
    finally:
        for notices, host in zip(told, hosts, strict=True):
            await host.stop()
            await notices.stop()
    leads = [[m for m in bot.sent if "new lead" in m.text] for bot in bots]
    assert sorted(m.chat_id for m in leads[holder]) == [5000, 5001]
    assert leads[other] == []


async def test_a_reminder_and_a_new_lead_for_one_person_come_a_second_apart(
    services: Services,
) -> None:
    await agents(services, 1)
    [agent] = await services.users.everyone()
    [notice] = await new_leads(services, 1)
    await services.contacts.log_activity(
        agent, notice.contact_id, ActivityKind.TASK, "call back", due_at=utcnow()
    )
    bot = RecordingBot()
    pacer = Pacer()
    told = LeadNotifier(bot, services, build_i18n(), pacer=pacer)  # type: ignore[arg-type]
    scheduled = ScheduledMessages(bot, services, build_i18n(), pacer)  # type: ignore[arg-type]
    await told.start()  # sends the pending notice
    assert await scheduled.send_task_reminders() == 1
    await until_idle(told)
    await told.stop()
    first, second = bot.sent
    assert {first.chat_id, second.chat_id} == {agent.telegram_id}
    assert second.at - first.at >= 1.0 - 0.01  # monotonic clock granularity
