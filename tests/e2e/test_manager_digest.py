"""The managers' and admins' morning digest (ISSUE 6, parts 7 and 9) through the sandbox:
yesterday's figures of each one's scope, the funnel chart as a photo, exactly once however
often the job runs, and `stagekeeper digest --now` for operators."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.cli import main
from domain.access import SYSTEM
from domain.model import Role, utcnow
from domain.services.contacts import ContactDraft
from tests.e2e.conftest import ADMIN_ID, LAN, MANAGER, OTTO, Driver, bot_messages

VN = ZoneInfo("Asia/Ho_Chi_Minh")  # everyone's digest zone here (the default)


def yesterday_at(hour: int) -> datetime:
    today = utcnow().astimezone(VN).date()
    return datetime.combine(today - timedelta(days=1), time(hour), tzinfo=VN)


@pytest.fixture
async def yesterday(driver: Driver) -> None:
    """North (manager Minh, agent Lan): two leads came in yesterday, one of them moved twice
    and was won; Lan also has a lead idle for ten days. South (Otto): an older lead was lost
    yesterday. Everyone's morning is due (their time is midnight)."""
    services = driver.services
    await services.stages.apply_template(SYSTEM, "amis")
    [admin] = await services.users.ensure_admins([ADMIN_ID])
    boss = await services.users.add(SYSTEM, "Minh", Role.MANAGER, team="north", telegram_id=MANAGER)
    lan = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north", telegram_id=LAN)
    otto = await services.users.add(SYSTEM, "Otto", Role.AGENT, team="south", telegram_id=OTTO)
    contacts = services.contacts
    an = await contacts.add(lan, ContactDraft(name="An", stage="Lead", created_at=yesterday_at(9)))
    await contacts.add(lan, ContactDraft(name="Bình", stage="Lead", created_at=yesterday_at(10)))
    assert an.id is not None
    for stage, hour in (("MQL", 11), ("Customer", 15)):
        target = await contacts.stage_by_name(stage)
        await contacts.set_stage(lan, an.id, target.id, at=yesterday_at(hour))
    three_days_ago = utcnow() - timedelta(days=3)
    chi = await contacts.add(
        otto, ContactDraft(name="Chi", stage="Lead", created_at=three_days_ago)
    )
    assert chi.id is not None
    lost = await contacts.stage_by_name("Disqualified")
    await contacts.set_stage(otto, chi.id, lost.id, reason="Price", at=yesterday_at(16))
    await contacts.add(
        lan, ContactDraft(name="Idle Ivy", stage="Lead", created_at=utcnow() - timedelta(days=10))
    )
    await contacts.add(lan, ContactDraft(name="Today's Tam", stage="Lead"))  # not yesterday
    for person in (admin, boss, lan, otto):
        await services.digests.update(person, send_at="00:00")
    for telegram_id, name in ((ADMIN_ID, "Ada"), (MANAGER, "Minh"), (LAN, "Lan"), (OTTO, "Otto")):
        await driver.user(telegram_id, name)
        await driver.ask(telegram_id, "/help")  # a bot can only write to who wrote to it


async def cursors(driver: Driver) -> dict[int, int]:
    return {who: await driver.cursor(who) for who in (ADMIN_ID, MANAGER, LAN, OTTO)}


async def test_each_manager_and_admin_gets_yesterday_of_their_scope_once(
    driver: Driver, yesterday: None
) -> None:
    notifier = driver.runtime.scheduled
    since = await cursors(driver)
    sent = await asyncio.gather(notifier.send_morning_messages(), notifier.send_morning_messages())
    assert sum(sent) == 3  # the manager, the admin, and Lan's idle leads; Otto has none idle
    assert await notifier.send_morning_messages() == 0

    text, photo = bot_messages(await driver.changes(MANAGER, since[MANAGER]))
    day = yesterday_at(12).strftime("%d/%m")
    assert f"Your team's yesterday ({day})" in text["text"]
    for figure in ("New leads: 2", "Stage moves: 2", "Converted: 1"):
        assert figure in text["text"], text["text"]
    assert "Lost: 0" in text["text"]
    assert "1. Lan: 1 won, 2 new" in text["text"]
    assert "Otto" not in text["text"]  # another team's
    keys = str(text["reply_markup"])
    assert "Idle Ivy" in keys
    assert "Today's Tam" not in keys
    assert photo["photo"]
    assert not photo["text"]

    text, photo = bot_messages(await driver.changes(ADMIN_ID, since[ADMIN_ID]))
    assert "across all teams" in text["text"]
    for figure in ("New leads: 2", "Stage moves: 3", "Lost: 1"):
        assert figure in text["text"], text["text"]
    assert text["text"].index("1. Lan") < text["text"].index("2. Otto: 0 won, 0 new")
    assert photo["photo"]

    [agent] = bot_messages(await driver.changes(LAN, since[LAN]))
    assert "leads of yours are waiting" in agent["text"]
    assert "Idle Ivy" in str(agent["reply_markup"])
    assert bot_messages(await driver.changes(OTTO, since[OTTO])) == []


async def test_the_sections_a_manager_chose_and_a_quiet_day(driver: Driver) -> None:
    services = driver.services
    await services.stages.apply_template(SYSTEM, "amis")
    boss = await services.users.add(SYSTEM, "Minh", Role.MANAGER, team="north", telegram_id=MANAGER)
    await services.digests.update(boss, send_at="00:00")
    for section in ("moves", "idle", "chart"):
        await services.digests.update(boss, toggle=section)  # type: ignore[arg-type]
    await services.users.set_language(boss, "vi")
    await driver.user(MANAGER, "Minh", language="vi")
    await driver.ask(MANAGER, "/help")
    since = await driver.cursor(MANAGER)
    assert await driver.runtime.scheduled.send_morning_messages() == 1
    [quiet] = bot_messages(await driver.changes(MANAGER, since))
    assert "Một ngày yên ắng" in quiet["text"]
    assert not quiet["photo"]


@pytest.mark.parametrize("bot_mode", ["polling"])
async def test_digest_now_prints_with_dry_run_then_sends_once(
    driver: Driver,
    yesterday: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = driver.services.settings
    token = driver.runtime.bot.token
    monkeypatch.setenv("BOT_TOKEN", token)
    monkeypatch.setenv("TELEGRAM_API_BASE", driver.base_url)
    for person in await driver.services.users.everyone():
        await driver.services.digests.update(person, send_at="23:59")  # not yet due by time
    url = ["--database-url", settings.database_url]
    since = await cursors(driver)
    capsys.readouterr()

    assert await asyncio.to_thread(main, ["digest", "--now", "--dry-run", *url]) == 0
    printed = capsys.readouterr().out
    assert "Would send 3 morning messages" in printed
    assert "To Minh (manager" in printed
    assert "Stage moves: 2" in printed
    assert "[funnel chart]" in printed
    assert "[Idle Ivy" in printed
    assert await asyncio.to_thread(main, ["digest", "--now", "--dry-run", "--json", *url]) == 0
    previewed = json.loads(capsys.readouterr().out)
    assert {m["name"]: m["kind"] for m in previewed["messages"]} == {
        "Admin 1001": "digest",
        "Minh": "digest",
        "Lan": "idle",
    }
    for who, cursor in since.items():
        assert bot_messages(await driver.changes(who, cursor)) == [], who

    assert await asyncio.to_thread(main, ["digest", "--now", "--json", *url]) == 0
    assert json.loads(capsys.readouterr().out) == {"sent": 3}
    assert await asyncio.to_thread(main, ["digest", "--now", *url]) == 0
    assert "Sent 0 morning messages." in capsys.readouterr().out
    assert await driver.runtime.scheduled.send_morning_messages() == 0  # nor does the job
    assert len(bot_messages(await driver.changes(MANAGER, since[MANAGER]))) == 2  # text, chart
    assert len(bot_messages(await driver.changes(LAN, since[LAN]))) == 1


@pytest.mark.parametrize("bot_mode", ["polling"])
async def test_digest_now_without_a_reachable_telegram_fails_politely_and_claims_nothing(
    driver: Driver,
    yesterday: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("BOT_TOKEN", driver.runtime.bot.token)
    monkeypatch.setenv("TELEGRAM_API_BASE", "http://127.0.0.1:9")  # nothing listens there
    url = ["--database-url", driver.services.settings.database_url]
    capsys.readouterr()
    assert await asyncio.to_thread(main, ["digest", "--now", *url]) == 1
    assert "cannot reach the Telegram Bot API" in capsys.readouterr().err
    assert len(await driver.services.digests.due()) == 4  # nothing was claimed


async def test_a_chart_that_cannot_be_sent_does_not_send_the_text_again(
    driver: Driver, yesterday: None
) -> None:
    await driver.fault(
        "sendPhoto", 400, count=5, description="Bad Request: PHOTO_INVALID_DIMENSIONS"
    )
    notifier = driver.runtime.scheduled
    since = await driver.cursor(MANAGER)
    assert await notifier.send_morning_messages() == 3  # the texts went out
    assert await notifier.send_morning_messages() == 0
    [text] = bot_messages(await driver.changes(MANAGER, since))
    assert "Stage moves: 2" in text["text"]
    assert await driver.services.digests.due() == []
