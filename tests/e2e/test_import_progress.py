"""A long import in chat shows its progress in one message, edited as it goes and at last into
the result (ISSUE 5, part 7). Made quick to see: the bot reports every 200 rows, shows progress
at once and edits at most every 20 ms, so a file of a few thousand rows is enough."""

from __future__ import annotations

import re
from functools import partial
from itertools import pairwise

import pytest

import bot.container
from bot.settings import Settings
from domain.access import SYSTEM
from domain.services.imports import ImportService
from tests.e2e.conftest import ADMIN_ID, Driver, Team, button, in_this_process, until

ROWS = 3000
pytestmark = in_this_process  # the import service of this process is changed


@pytest.fixture(autouse=True)
def reports_every_200_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        bot.container, "ImportService", partial(ImportService, batch=200, progress_every=200)
    )


@pytest.fixture
def e2e_settings(e2e_settings: Settings) -> Settings:
    return e2e_settings.model_copy(update={"progress_delay": 0.0, "progress_interval": 0.02})


async def texts_of(driver: Driver, message_id: int, edits_before: int) -> list[str]:
    """The texts the bot edited into one message, in order, since its `edits_before`th edit."""
    edits = (await driver.requests("editMessageText"))[edits_before:]
    assert all("error_code" not in e for e in edits), edits  # never "message is not modified"
    return [e["params"]["text"] for e in edits if int(e["params"]["message_id"]) == message_id]


def rows_read(text: str) -> int:
    return int(re.findall(r"\d[\d,]*", text)[0].replace(",", ""))


async def test_a_long_import_shows_its_progress_in_one_message_then_the_result(
    driver: Driver, team: Team
) -> None:
    file = "phone,name,stage\n" + "".join(f"0912{n:06d},Khách {n},Lead\n" for n in range(ROWS))
    sent_before = len(await driver.requests("sendMessage"))
    edits_before = len(await driver.requests("editMessageText"))
    since = await driver.cursor(ADMIN_ID)
    await driver.upload(ADMIN_ID, "many.csv", file.encode())

    # One message: the progress, then the dry run's counts.
    [summary] = await until(driver, ADMIN_ID, since, "Dry run")
    assert "3,000 to create, 0 to update, 0 unchanged, 0 rejected" in summary["text"]
    [progress] = (await driver.requests("sendMessage"))[sent_before:]
    assert progress["result"]["message_id"] == summary["message_id"]
    edited = await texts_of(driver, summary["message_id"], edits_before)
    shown = [progress["params"]["text"], *edited]
    checking, result = shown[:-1], shown[-1]
    assert result == summary["text"]
    assert len(checking) >= 2
    assert all(text.startswith("Checking…") for text in checking)
    assert all(earlier != later for earlier, later in pairwise(shown))
    read = [rows_read(text) for text in checking]
    assert read == sorted(read)
    assert 0 < read[-1] <= ROWS
    assert await driver.services.contacts.find(SYSTEM, "0912000001") == []  # a dry run

    edits_before = len(await driver.requests("editMessageText"))
    since = await driver.cursor(ADMIN_ID)
    await driver.click(ADMIN_ID, summary["message_id"], button(summary, "Import"))
    [done] = await until(driver, ADMIN_ID, since, "Imported")
    assert done["message_id"] == summary["message_id"]
    assert "Imported: 3,000 created, 0 updated" in done["text"]
    shown = await texts_of(driver, summary["message_id"], edits_before)
    importing, result = shown[:-1], shown[-1]
    assert result == done["text"]
    assert importing[0] == "Importing…"
    assert any("applied" in text for text in importing)
    assert all(text.startswith("Importing…") for text in importing)
    assert all(earlier != later for earlier, later in pairwise(shown))
    [found] = await driver.services.contacts.find(SYSTEM, "0912000001")
    assert found.contact.name == "Khách 1"
