"""What a tap costs the database: a stage button or a note reads and writes in one transaction
(the update ledger's record included) after the one read that tells who is asking, a search
reads its card with its matches, and what only reads never takes SQLite's write lock, so that it
waits for no import or bulk move."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from aiogram import Bot
from aiogram.types import Update
from sqlalchemy import event

from tests.e2e.conftest import LAN, Driver, Team, press, stage_of, text_of


class Transactions:
    """The transactions SQLite began while the bot handled each update: "BEGIN" (deferred, a
    reader) or "BEGIN IMMEDIATE" (a writer), by update id."""

    def __init__(self, driver: Driver) -> None:
        self.begun: dict[int, list[str]] = defaultdict(list)
        self._handling: dict[asyncio.Task[Any], int] = {}
        dispatcher = driver.runtime.dispatcher
        feed_update = dispatcher.feed_update

        async def watched(bot: Bot, update: Update, **kwargs: Any) -> Any:
            task = asyncio.current_task()
            assert task is not None
            self._handling[task] = update.update_id
            try:
                return await feed_update(bot, update, **kwargs)
            finally:
                del self._handling[task]

        dispatcher.feed_update = watched  # type: ignore[method-assign]
        event.listen(driver.services.engine.sync_engine, "before_cursor_execute", self._statement)

    def _statement(self, *args: Any) -> None:
        statement = str(args[2])
        update_id = self._handling.get(asyncio.current_task())  # type: ignore[arg-type]
        if update_id is not None and statement.startswith("BEGIN"):
            self.begun[update_id].append(statement)

    def of(self, sent: dict[str, Any]) -> list[str]:
        return self.begun[int(sent["update_id"])]


@pytest.mark.parametrize("bot_mode", ["polling"], indirect=True)
async def test_a_stage_button_costs_two_transactions_and_reading_takes_no_write_lock(
    driver: Driver, team: Team
) -> None:
    transactions = Transactions(driver)

    searched = await driver.send(LAN, "+84912345678")
    await driver.handled(searched)
    [card] = await driver.replies(LAN, 0)
    assert "Nguyễn Văn An" in text_of(card)
    assert transactions.of(searched) == ["BEGIN", "BEGIN"]  # who is asking; search and card

    [stages] = await press(driver, LAN, card, "Stage")
    [listed] = list(transactions.begun.values())[-1:]
    assert "BEGIN IMMEDIATE" not in listed

    [moved] = await press(driver, LAN, stages, "MQL")
    [move] = list(transactions.begun.values())[-1:]
    assert move == ["BEGIN", "BEGIN IMMEDIATE"]  # who is asking; the move, its ledger, the card
    assert await stage_of(driver, team.an) == "MQL"
    assert "MQL" in text_of(moved)

    await press(driver, LAN, moved, "Note")
    noted = await driver.send(LAN, "gọi lại thứ Hai")
    await driver.handled(noted)
    [saved, card] = await driver.replies(LAN, noted["message_id"])
    assert "saved" in text_of(saved)
    assert "gọi lại thứ Hai" in text_of(card)
    # Who is asking; the note, its ledger and the card after it.
    assert transactions.of(noted) == ["BEGIN", "BEGIN IMMEDIATE"]
