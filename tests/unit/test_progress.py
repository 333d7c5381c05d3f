"""A progress message (handlers/progress.py), with time injected: it appears only once a task has
taken a while, changes at most every interval and never to the text it shows, and ends as the
result, in the same message."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from aiogram.exceptions import TelegramBadRequest
from aiogram.methods import EditMessageText
from aiogram.types import Message

from handlers.progress import ProgressMessage, ProgressPace, Throttle

PACE = ProgressPace(delay=1.0, interval=2.0)


class Seconds:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeMessage:
    """A chat message as the bot sees it: what was sent into its chat, and its edits."""

    def __init__(self, chat: list[FakeMessage], text: str = "") -> None:
        self.chat = chat
        self.first = text  # as it was sent
        self.text = text
        self.caption: str | None = None
        self.edits: list[str] = []
        self.keyboard: Any = None

    async def answer(self, text: str, reply_markup: Any = None) -> FakeMessage:
        sent = FakeMessage(self.chat, text)
        sent.keyboard = reply_markup
        self.chat.append(sent)
        return sent

    async def edit_text(self, text: str, reply_markup: Any = None) -> FakeMessage:
        self.edits.append(text)
        self.text = text
        self.keyboard = reply_markup
        return self


def progress_in_new_chat(clock: Seconds) -> tuple[ProgressMessage, list[FakeMessage]]:
    chat: list[FakeMessage] = []
    document = FakeMessage(chat, "contacts.csv")
    return ProgressMessage(cast(Message, document), PACE, clock=clock), chat


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


def test_nothing_is_due_before_the_delay() -> None:
    clock = Seconds()
    throttle = Throttle(PACE, clock)
    clock.now += 0.9
    assert not throttle.due("Checking… 5,000 rows read")
    clock.now += 0.1
    assert throttle.due("Checking… 5,000 rows read")


def test_after_a_text_is_shown_the_next_waits_for_the_interval() -> None:
    clock = Seconds()
    throttle = Throttle(PACE, clock)
    clock.now += 1.5
    throttle.shown("5,000 rows")
    clock.now += 1.9
    assert not throttle.due("10,000 rows")
    clock.now += 0.1
    assert throttle.due("10,000 rows")


def test_the_text_already_shown_is_never_due_again() -> None:
    clock = Seconds()
    throttle = Throttle(PACE, clock)
    clock.now += 5
    throttle.shown("all 10,000 rows")
    clock.now += 60
    assert not throttle.due("all 10,000 rows")
    assert throttle.due("all 10,001 rows")


def test_a_message_already_showing_something_changes_only_after_the_interval() -> None:
    clock = Seconds()
    throttle = Throttle(PACE, clock, showing="Importing…")
    clock.now += 1.5
    assert not throttle.due("Importing… 5,000 rows")
    clock.now += 0.5
    assert throttle.due("Importing… 5,000 rows")
    assert not throttle.due("Importing…")


async def test_a_quick_task_shows_only_its_result() -> None:
    clock = Seconds()
    progress, chat = progress_in_new_chat(clock)
    for rows in (1000, 2000, 3000):
        clock.now += 0.2
        await progress.report(f"{rows} rows")
    await progress.finish("Dry run: 3000 to create")
    assert [m.text for m in chat] == ["Dry run: 3000 to create"]
    assert chat[0].edits == []


async def test_a_long_task_edits_one_message_at_most_every_interval_then_shows_the_result() -> None:
    clock = Seconds()
    progress, chat = progress_in_new_chat(clock)
    for rows in range(1, 21):  # a report every half second for ten seconds
        clock.now += 0.5
        await progress.report(f"{rows * 1000} rows read")
        await settle()
    buttons = cast(Any, "buttons")
    await progress.finish("Dry run: 20000 to create", buttons)
    [message] = chat
    assert message.first == "2000 rows read"  # once the task has taken a second
    assert message.edits == [  # then every two seconds, and at last the result
        "6000 rows read",
        "10000 rows read",
        "14000 rows read",
        "18000 rows read",
        "Dry run: 20000 to create",
    ]
    assert message.keyboard is buttons


async def test_texts_reported_during_an_edit_are_skipped_and_the_result_comes_last() -> None:
    clock = Seconds()
    chat: list[FakeMessage] = []
    release = asyncio.Event()

    class SlowMessage(FakeMessage):
        async def edit_text(self, text: str, reply_markup: Any = None) -> FakeMessage:
            if text.startswith("rows"):
                await release.wait()  # Telegram is slow to answer this one
            return await super().edit_text(text, reply_markup)

    shown = SlowMessage(chat, "Importing…")
    message = cast(Message, shown)
    progress = ProgressMessage(message, PACE, editing=message, clock=clock)
    clock.now += 2
    await progress.report("rows 1")
    await settle()
    clock.now += 2
    await progress.report("rows 2")  # the edit before is still under way: skipped
    finishing = asyncio.create_task(progress.finish("Imported: 2 created"))
    await settle()
    assert not finishing.done()  # the result waits for the edit under way...
    release.set()
    await finishing
    assert shown.edits == ["rows 1", "Imported: 2 created"]  # ...so that it is not overwritten
    assert chat == []


async def test_a_failing_progress_edit_does_not_stop_the_task_and_the_result_still_arrives() -> (
    None
):
    clock = Seconds()
    chat: list[FakeMessage] = []

    class GoneMessage(FakeMessage):
        async def edit_text(self, text: str, reply_markup: Any = None) -> FakeMessage:
            raise TelegramBadRequest(
                EditMessageText(text=text), "Bad Request: message to edit not found"
            )

    gone = GoneMessage(chat, "Importing…")
    progress = ProgressMessage(cast(Message, gone), PACE, editing=cast(Message, gone), clock=clock)
    clock.now += 3
    await progress.report("rows 1")
    await settle()
    result = await progress.finish("Imported: 1 created")
    assert [m.text for m in chat] == ["Imported: 1 created"]
    assert cast(FakeMessage, result) is chat[0]
