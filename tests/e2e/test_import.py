"""Importing a file in chat: dry run, confirmation, undo (ISSUE 5, part 7)."""

from __future__ import annotations

import re

import pytest

from bot.settings import Settings
from domain.access import SYSTEM
from domain.model import FieldKind
from tests.e2e.conftest import (
    ADMIN_ID,
    LAN,
    PATIENCE,
    Driver,
    Team,
    bot_messages,
    button,
    press,
    press_until,
    stage_of,
    until,
)
from tests.hostile import declaring, rewritten, workbook


@pytest.fixture
def e2e_settings(e2e_settings: Settings) -> Settings:
    """No progress message before PATIENCE: these files are small, but a loaded machine may
    take the bot's one second over them."""
    return e2e_settings.model_copy(update={"progress_delay": PATIENCE})


FILE = (
    "phone,name,stage,source\n"
    "0912 345 678,Nguyễn Văn An,MQL,Zalo\n"  # an update: Lan's lead, written another way
    "0988 777 666,Hoàng Yến,Lead,Website\n"  # new
    "0977 111 222,Sai Giai Đoạn,Nowhere,\n"  # an unknown stage
).encode()


async def test_an_admin_imports_a_file_after_a_dry_run_and_can_undo_it(
    driver: Driver, team: Team
) -> None:
    since = await driver.cursor(ADMIN_ID)
    await driver.handled(await driver.upload(ADMIN_ID, "contacts.csv", FILE))
    [summary, rejected] = bot_messages(await driver.changes(ADMIN_ID, since))
    assert "1 to create, 1 to update, 0 unchanged, 1 rejected" in summary["text"]
    assert rejected["document"]["file_name"] == "rejected-rows.csv"
    assert await stage_of(driver, team.an) == "Lead"  # a dry run changes nothing
    assert await driver.services.contacts.find(SYSTEM, "0988777666") == []

    [done] = await press_until(driver, ADMIN_ID, summary, "Import, adding", "Imported")
    assert "2 created, 1 updated" in done["text"]
    assert await stage_of(driver, team.an) == "MQL"
    [undone] = await press(driver, ADMIN_ID, done, "Undo")
    assert "back as they were" in undone["text"]
    assert await stage_of(driver, team.an) == "Lead"
    assert await driver.services.contacts.find(SYSTEM, "0988777666") == []


async def test_a_broken_file_is_refused_with_a_reason(driver: Driver, team: Team) -> None:
    since = await driver.cursor(ADMIN_ID)
    await driver.handled(await driver.upload(ADMIN_ID, "junk.csv", b"\x00\x01binary\xff" * 100))
    [reply] = bot_messages(await driver.changes(ADMIN_ID, since))
    assert "cannot import junk.csv" in reply["text"]


async def test_a_workbook_is_read_whole_and_one_past_the_limits_refused_in_one_line(
    driver: Driver, team: Team
) -> None:
    people = [["Số điện thoại", "Họ và tên"], *([f"097654321{n}", f"Khách {n}"] for n in range(3))]
    stale = rewritten(
        workbook(people, "Đã mất"),
        lambda xml: re.sub(r"<dimension [^>]*/>", '<dimension ref="A1:B2"/>', xml),
    )
    since = await driver.cursor(ADMIN_ID)
    await driver.handled(await driver.upload(ADMIN_ID, "khach-hang.xlsx", stale))
    [summary] = bot_messages(await driver.changes(ADMIN_ID, since))
    assert "3 to create, 0 to update, 0 unchanged, 0 rejected" in summary["text"]
    assert "Read the first sheet, “Khách hàng”; not read: Đã mất." in summary["text"]

    since = await driver.cursor(ADMIN_ID)
    huge = declaring(workbook(people), 3 << 30)
    await driver.handled(await driver.upload(ADMIN_ID, "huge.xlsx", huge))
    [refusal] = bot_messages(await driver.changes(ADMIN_ID, since))
    assert "cannot import huge.xlsx" in refusal["text"]
    assert "unpacks to 3,072 MB, more than the 1,024 MB" in refusal["text"]
    assert await driver.services.contacts.find(SYSTEM, "0976543210") == []


async def test_agents_cannot_import(driver: Driver, team: Team) -> None:
    since = await driver.cursor(LAN)
    await driver.handled(await driver.upload(LAN, "contacts.csv", FILE))
    [reply] = bot_messages(await driver.changes(LAN, since))
    assert "Only admins" in reply["text"]
    assert await driver.services.contacts.find(SYSTEM, "0988777666") == []


async def test_columns_the_bot_does_not_know_are_mapped_with_buttons(
    driver: Driver, team: Team
) -> None:
    await driver.services.fields.add(SYSTEM, "Hạng", FieldKind.CHOICE, ["Vàng", "Bạc"])
    file = "ĐT liên lạc;Họ tên;Hạng KH;Ghi chú riêng\n0988 777 666;Hoàng Yến;vang;gọi sau 5h\n"
    since = await driver.cursor(ADMIN_ID)
    await driver.handled(await driver.upload(ADMIN_ID, "khach.csv", file.encode()))
    [asked] = bot_messages(await driver.changes(ADMIN_ID, since))
    assert "no phone, email or external id column" in asked["text"]
    [column] = await press(driver, ADMIN_ID, asked, "Map the columns")
    assert "Column 1 of 3: “ĐT liên lạc”" in column["text"]
    [column] = await press(driver, ADMIN_ID, column, "Phone")
    assert "Column 2 of 3: “Hạng KH”" in column["text"]
    [column] = await press(driver, ADMIN_ID, column, "🗂 Hạng")
    since = await driver.cursor(ADMIN_ID)
    await driver.handled(
        await driver.click(ADMIN_ID, column["message_id"], button(column, "New custom field"))
    )
    summary = bot_messages(await driver.changes(ADMIN_ID, since))[-1]
    assert "1 to create, 0 to update" in summary["text"]
    assert "Ignored columns" not in summary["text"]
    [done] = await press_until(driver, ADMIN_ID, summary, "Import", "Imported")
    assert "1 created" in done["text"]
    [created] = await driver.services.contacts.find(SYSTEM, "0988777666")
    assert created.contact.name == "Hoàng Yến"
    assert created.contact.custom_fields == {"Hạng": "Vàng", "Ghi chú riêng": "gọi sau 5h"}


async def test_a_column_named_like_a_custom_field_fills_it_without_mapping(
    driver: Driver, team: Team
) -> None:
    await driver.services.fields.add(SYSTEM, "Ngân sách", FieldKind.NUMBER)
    await driver.services.fields.add(SYSTEM, "Nguồn", FieldKind.TEXT)
    file = "SĐT,Họ tên,Ngân sách,Nguồn\n0988 777 666,Hoàng Yến,15.000.000,Hội chợ\n"
    since = await driver.cursor(ADMIN_ID)
    await driver.handled(await driver.upload(ADMIN_ID, "khach.csv", file.encode()))
    [summary] = await until(driver, ADMIN_ID, since, "Dry run")
    assert "1 to create" in summary["text"]
    assert "Read as custom fields: Ngân sách" in summary["text"]
    assert (
        "“Nguồn” was read as the built-in field Source, not as the custom field" in summary["text"]
    )
    assert "Map the ignored columns" not in str(summary["reply_markup"])
    [done] = await press_until(driver, ADMIN_ID, summary, "Import", "Imported")
    assert "1 created" in done["text"]
    [created] = await driver.services.contacts.find(SYSTEM, "0988777666")
    assert created.contact.custom_fields == {"Ngân sách": "15000000"}
    assert created.contact.source == "Hội chợ"


async def test_a_small_import_shows_no_progress_message(driver: Driver, team: Team) -> None:
    """A dry run done before the progress delay is one message: its result. The bot's delay is a
    second, which a loaded machine may take even for a small file: here it is PATIENCE."""
    sent_before = len(await driver.requests("sendMessage"))
    await driver.handled(await driver.upload(ADMIN_ID, "contacts.csv", FILE))
    sent = [r["params"]["text"] for r in (await driver.requests("sendMessage"))[sent_before:]]
    assert len(sent) == 1
    assert sent[0].startswith("Dry run")
