"""Morning messages and reminders (ISSUE 6, parts 7–9) through the sandbox: exactly once, even
when the job runs twice or the scheduler restarts; blocked people are paused, not retried."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import update

from bot.scheduler import SchedulerHost
from domain.access import SYSTEM
from domain.model import ActivityKind, DigestSection, Role, utcnow
from domain.services.contacts import ContactDraft
from domain.services.digests import Due
from handlers.digest import Composed
from storage.models import ContactRow
from tests.e2e.conftest import (
    ADMIN_ID,
    LAN,
    MANAGER,
    OTTO,
    PATIENCE,
    Driver,
    bot_messages,
    press,
    until_count,
)


@pytest.fixture
async def morning(driver: Driver) -> dict[str, int]:
    """Lan's leads: one idle for ten days, one fresh, one idle but with a task due tomorrow, one
    idle in a stage allowing 30 days. Everyone's morning is due (their time is midnight)."""
    services = driver.services
    await services.stages.apply_template(SYSTEM, "amis")
    await services.stages.set_idle_days(SYSTEM, "MQL", 30)
    lan = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north", telegram_id=LAN)
    boss = await services.users.add(SYSTEM, "Minh", Role.MANAGER, team="north", telegram_id=MANAGER)
    ten_days_ago = utcnow() - timedelta(days=10)
    ids = {}
    for name, stage, created in (
        ("Idle Ivy", "Lead", ten_days_ago),
        ("Fresh Fred", "Lead", None),
        ("Planned Paula", "Lead", ten_days_ago),
        ("Patient Pete", "MQL", ten_days_ago),
    ):
        contact = await services.contacts.add(
            lan, ContactDraft(name=name, stage=stage, created_at=created)
        )
        assert contact.id is not None
        ids[name] = contact.id
    tomorrow = utcnow() + timedelta(days=1)
    await services.contacts.log_activity(
        lan, ids["Planned Paula"], ActivityKind.TASK, "call back", due_at=tomorrow
    )
    async with services.engine.begin() as connection:  # the task was planned ten days ago
        await connection.execute(
            update(ContactRow)
            .where(ContactRow.id == ids["Planned Paula"])
            .values(last_activity_at=ten_days_ago)
        )
    for user in (lan, boss):
        await services.digests.update(user, send_at="00:00")
    await services.digests.update(boss, enabled=False)  # the manager digest has its own test
    for telegram_id, name in ((LAN, "Lan"), (MANAGER, "Minh")):
        await driver.user(telegram_id, name)
        await driver.ask(telegram_id, "/help")  # a bot can only write to who wrote to it
    return ids


async def test_an_agent_gets_the_idle_leads_once_however_often_the_job_runs(
    driver: Driver, morning: dict[str, int]
) -> None:
    notifier = driver.runtime.scheduled
    since = await driver.cursor(LAN)
    sent = await asyncio.gather(*(notifier.send_morning_messages() for _ in range(3)))
    assert sum(sent) == 1
    assert await notifier.send_morning_messages() == 0
    [message] = bot_messages(await driver.changes(LAN, since))
    assert "leads of yours are waiting" in message["text"]
    keys = str(message["reply_markup"])
    assert "Idle Ivy" in keys
    assert "Fresh Fred" not in keys  # touched today
    assert "Planned Paula" not in keys  # a task is due ahead
    assert "Patient Pete" not in keys  # MQL allows 30 days


async def test_a_person_who_blocked_the_bot_is_paused_until_they_write_again(
    driver: Driver, morning: dict[str, int]
) -> None:
    notifier = driver.runtime.scheduled
    await driver.post("/sandbox/users", id=LAN, first_name="Lan", blocked=True)
    assert await notifier.send_morning_messages() == 0
    lan = await driver.services.users.by_telegram_id(LAN)
    assert lan is not None
    settings = await driver.services.digests.settings_of(lan)
    assert settings.blocked_at is not None
    await driver.ask(LAN, "/help")  # writing again unblocks the bot, and resumes the messages
    [reply] = await driver.ask(LAN, "/digest")
    assert "Status: on" in reply["text"]
    assert (await driver.services.digests.settings_of(lan)).blocked_at is None


async def test_someone_who_never_opened_the_bot_is_not_paused_and_is_reminded_once_they_do(
    driver: Driver, morning: dict[str, int]
) -> None:
    """Like the demo's people: known (an admin from the settings, an import) before they
    ever wrote to the bot, which cannot write to them first."""
    services = driver.services
    otto = await services.users.add(SYSTEM, "Otto", Role.AGENT, team="north", telegram_id=OTTO)
    await driver.user(OTTO, "Otto")  # a Telegram user who has not started the bot
    notifier = driver.runtime.scheduled

    async def task_due(text: str) -> None:
        contact = await services.contacts.add(otto, ContactDraft(name=f"Lead for {text}"))
        assert contact.id is not None
        due = utcnow() - timedelta(minutes=1)
        await services.contacts.log_activity(otto, contact.id, ActivityKind.TASK, text, due_at=due)

    await task_due("first call")
    assert await notifier.send_task_reminders() == 0
    assert (await services.digests.settings_of(otto)).blocked_at is None
    await driver.ask(OTTO, "/start")
    since = await driver.cursor(OTTO)
    await task_due("second call")
    assert await notifier.send_task_reminders() == 1
    [reminder] = bot_messages(await driver.changes(OTTO, since))
    assert "second call" in reminder["text"]


async def test_a_task_that_falls_due_is_reminded_once(
    driver: Driver, morning: dict[str, int]
) -> None:
    services = driver.services
    lan = await services.users.by_telegram_id(LAN)
    assert lan is not None
    await services.contacts.log_activity(
        lan,
        morning["Fresh Fred"],
        ActivityKind.TASK,
        "gửi báo giá",
        due_at=utcnow() - timedelta(minutes=1),
    )
    notifier = driver.runtime.scheduled
    since = await driver.cursor(LAN)
    twice = await asyncio.gather(notifier.send_task_reminders(), notifier.send_task_reminders())
    assert sum(twice) == 1
    [reminder] = bot_messages(await driver.changes(LAN, since))
    assert "gửi báo giá" in reminder["text"]
    assert "Fresh Fred" in reminder["text"]


async def test_the_scheduler_runs_in_one_process_and_a_restart_sends_nothing_twice(
    driver: Driver, morning: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = driver.runtime
    since = await driver.cursor(LAN)
    first, second = SchedulerHost(runtime.scheduled), SchedulerHost(runtime.scheduled)
    first.start()
    second.start()
    [message] = await until_count(driver, LAN, since, 1)
    assert "waiting for you" in message["text"]
    assert [first.running, second.running].count(True) == 1
    await first.stop()
    await second.stop()
    ran = asyncio.Event()
    send_morning_messages = runtime.scheduled.send_morning_messages

    async def morning_run() -> int:
        sent = await send_morning_messages()
        ran.set()
        return sent

    monkeypatch.setattr(runtime.scheduled, "send_morning_messages", morning_run)
    restarted = SchedulerHost(runtime.scheduled)
    restarted.start()
    await asyncio.wait_for(ran.wait(), PATIENCE)  # its first run happens at once
    assert restarted.running
    await restarted.stop()
    assert bot_messages(await driver.changes(LAN, since)) == [message]


async def test_an_admin_sets_how_long_a_stage_may_sit_untouched(driver: Driver) -> None:
    await driver.services.stages.apply_template(SYSTEM, "amis")
    await driver.user(ADMIN_ID, "Ada")
    [overview] = await driver.ask(ADMIN_ID, "/stages")
    [stage] = await press(driver, ADMIN_ID, overview, "SQL")
    [choices] = await press(driver, ADMIN_ID, stage, "Idle after")
    [stage] = await press(driver, ADMIN_ID, choices, "14 days")
    assert "idle after 14 days" in stage["text"]
    assert (await driver.services.contacts.stage_by_name("SQL")).idle_days == 14
    [choices] = await press(driver, ADMIN_ID, stage, "Idle after")
    [stage] = await press(driver, ADMIN_ID, choices, "The default")
    assert (await driver.services.contacts.stage_by_name("SQL")).idle_days is None


async def test_digest_settings_in_chat(driver: Driver, morning: dict[str, int]) -> None:
    [settings] = await driver.ask(MANAGER, "/digest")
    assert "digest of your team's funnel" in settings["text"]
    [times] = await press(driver, MANAGER, settings, "Time")
    [settings] = await press(driver, MANAGER, times, "07:30")
    assert "07:30" in settings["text"]
    [zones] = await press(driver, MANAGER, settings, "Time zone")
    [ask] = await press(driver, MANAGER, zones, "Another time zone")
    assert "Send the time zone" in ask["text"]
    [refused] = await driver.ask(MANAGER, "Mars/Olympus")
    assert "not a time zone" in refused["text"]
    [settings] = await driver.ask(MANAGER, "Europe/Berlin")
    assert "Europe/Berlin" in settings["text"]
    [settings] = await press(driver, MANAGER, settings, "Funnel chart")
    boss = await driver.services.users.by_telegram_id(MANAGER)
    assert boss is not None
    stored = await driver.services.digests.settings_of(boss)
    assert (stored.send_at.isoformat(), stored.timezone) == ("07:30:00", "Europe/Berlin")
    assert DigestSection.CHART not in stored.sections
    [lan] = await driver.ask(LAN, "/digest")
    assert "Funnel chart" not in str(lan["reply_markup"])  # agents get their idle leads only


async def test_a_morning_message_that_failed_before_sending_goes_out_at_the_next_tick(
    driver: Driver, morning: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    notifier = driver.runtime.scheduled
    compose = notifier.compose
    failed = []

    async def fails_once(due: Due) -> Composed | None:
        if due.user.telegram_id == LAN and not failed:
            failed.append(due)
            raise RuntimeError("database is locked")  # what a tick meets while SQLite is busy
        return await compose(due)

    monkeypatch.setattr(notifier, "compose", fails_once)
    since = await driver.cursor(LAN)
    await notifier.send_morning_messages()
    assert failed
    assert await notifier.send_morning_messages() == 1
    [message] = bot_messages(await driver.changes(LAN, since))
    assert "leads of yours are waiting" in message["text"]


async def test_one_reminder_that_fails_does_not_hold_back_the_others(
    driver: Driver, morning: dict[str, int]
) -> None:
    services = driver.services
    lan = await services.users.by_telegram_id(LAN)
    boss = await services.users.by_telegram_id(MANAGER)
    assert lan is not None
    assert boss is not None
    mine = await services.contacts.add(boss, ContactDraft(name="Boss's Bao", stage="Lead"))
    assert mine.id is not None
    for who, contact_id, text, minutes in (
        (lan, morning["Fresh Fred"], "call Fred", 2),  # due first, reminded first
        (boss, mine.id, "call Bao", 1),
    ):
        due = utcnow() - timedelta(minutes=minutes)
        await services.contacts.log_activity(who, contact_id, ActivityKind.TASK, text, due_at=due)
    since = await driver.cursor(MANAGER)
    await driver.fault("sendMessage", 409, count=1)  # an answer nothing expects
    assert await driver.runtime.scheduled.send_task_reminders() == 1
    [reminder] = bot_messages(await driver.changes(MANAGER, since))
    assert "call Bao" in reminder["text"]
