"""/report in chat (ISSUE 6, part 3): one message whose chart and summary change as the buttons
switch report and period; numbers within the reader's scope; forged buttons refused."""

from __future__ import annotations

from typing import Any

from domain.reports import Span
from tests.e2e.conftest import LAN, MANAGER, OTTO, Driver, Team, button, click, press


async def bot_messages(driver: Driver, user: int) -> list[Any]:
    return [m for m in (await driver.chat(user, wait=0))["messages"] if m["from"] == "bot"]


async def test_a_manager_browses_reports_on_one_message(driver: Driver, team: Team) -> None:
    [menu] = await driver.ask(MANAGER, "/report")
    assert "Which report?" in menu["text"]
    assert "your team's leads" in menu["text"]
    sent_before = len(await bot_messages(driver, MANAGER))

    [funnel] = await press(driver, MANAGER, menu, "Funnel")
    assert funnel["message_id"] == menu["message_id"]  # the menu became the chart
    assert funnel["photo"] is not None
    assert funnel["text"] is None
    lines = funnel["caption"].splitlines()
    assert lines[0].startswith("📊 Funnel · 30 days (")
    # Lan's two contacts (the manager's team) got a stage today; Otto's is another team's.
    assert lines[1] == "2 contacts got their first stage in this period."
    assert lines[2] == "Won: 1 (50%) · lost now: 0"

    [today] = await press(driver, MANAGER, funnel, "Today")
    assert today["message_id"] == menu["message_id"]
    assert today["caption"].splitlines()[0].startswith("📊 Funnel · Today (")
    assert today["photo"]["file_id"] != funnel["photo"]["file_id"]
    assert "• Today" in str(today["reply_markup"])

    [snapshot] = await press(driver, MANAGER, today, "Snapshot")
    assert snapshot["caption"].splitlines()[1] == (
        "2 contacts: 1 open, 1 won, 0 lost, 0 without a stage."
    )
    [leaders] = await press(driver, MANAGER, snapshot, "Leaderboard")
    assert leaders["caption"].splitlines()[1] == "1. Lan: 1 won, 0 lost, 2 new · win rate 100%"

    # A button of an earlier state of the message carries its own report and period.
    [stale] = await press(driver, MANAGER, funnel, "Lead sources")
    assert stale["caption"].splitlines()[0].startswith("📊 Lead sources · 30 days (")
    assert stale["caption"].splitlines()[1] == "2 new contacts."
    assert len(await bot_messages(driver, MANAGER)) == sent_before  # nothing new was sent


async def test_forged_buttons_are_refused_and_change_nothing(driver: Driver, team: Team) -> None:
    [menu] = await driver.ask(MANAGER, "/report")
    [chart] = await press(driver, MANAGER, menu, "Conversion")
    for data, alert in (
        ("rp:salaries:30:0:0", "Unknown report."),
        ("rp:fun:365:0:0", "Unknown period."),
        ("rp:fun:c:20250231:20250301", "Unknown period."),
        ("rp:fun:c:20250301:20250201", "Unknown period."),
        ("rp:fun:c:19000101:20250101", "Unknown period."),
    ):
        changed, answer = await click(driver, MANAGER, chart, data)
        assert changed == []
        assert answer is not None
        assert answer["show_alert"] is True
        assert answer["text"] == alert
    [now] = [
        m for m in await bot_messages(driver, MANAGER) if m["message_id"] == chart["message_id"]
    ]
    assert now["caption"] == chart["caption"]


async def test_an_agent_sees_only_their_leads_and_types_a_period(
    driver: Driver, team: Team
) -> None:
    [menu] = await driver.ask(OTTO, "/report")
    assert "your own leads" in menu["text"]
    [snapshot] = await press(driver, OTTO, menu, "Snapshot")
    # Otto owns Trần Thị Bích only (Lead); the manager's team's two are not his.
    assert snapshot["caption"].splitlines()[1] == (
        "1 contacts: 1 open, 0 won, 0 lost, 0 without a stage."
    )

    [prompt] = await press(driver, OTTO, snapshot, "Dates…")
    assert "01/03/2025 – 31/03/2025" in prompt["text"]
    [refused] = await driver.ask(OTTO, "31/03/2025 – 01/03/2025")
    assert refused["text"] == "The period ends before it starts; send it the other way round."
    [refused] = await driver.ask(OTTO, "01/01/2020 – 01/01/2025")
    assert refused["text"] == "That is over three years; send a shorter period."
    [refused] = await driver.ask(OTTO, "last spring")
    assert refused["text"].startswith("I could not read those dates.")

    today = driver.services.reports.span(Span.TODAY).first
    [typed] = await driver.ask(OTTO, today.isoformat())
    assert typed["photo"] is not None
    lines = typed["caption"].splitlines()
    assert lines[0] == "📊 Snapshot · now (the period does not apply)"
    assert "• 📅 Dates…" in str(typed["reply_markup"])
    # Switching to another report keeps the typed period.
    [sources] = await press(driver, OTTO, typed, "Lead sources")
    assert sources["caption"].splitlines()[0] == f"📊 Lead sources · {today:%d/%m/%Y}"
    assert sources["caption"].splitlines()[1] == "1 new contacts."
    assert button(sources, "Funnel").endswith(f":c:{today:%Y%m%d}:{today:%Y%m%d}")


async def test_reports_speak_the_readers_language(driver: Driver, team: Team) -> None:
    await driver.user(LAN, "Lan", language="vi")
    [menu] = await driver.ask(LAN, "/report")
    assert "khách hàng tiềm năng của bạn" in menu["text"]
    [funnel] = await press(driver, LAN, menu, "Phễu")
    lines = funnel["caption"].splitlines()
    assert lines[0].startswith("📊 Phễu · 30 ngày (")
    assert lines[1] == "2 liên hệ được xếp giai đoạn lần đầu trong kỳ này."
    assert "Tháng trước" in str(funnel["reply_markup"])
