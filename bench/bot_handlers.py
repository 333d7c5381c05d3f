"""What Stagekeeper's own code costs per update, without HTTP: the bot's dispatcher, middlewares,
handlers and database, fed updates in this process, its requests to Telegram answered at once by
a stand-in session. Agents take the steps of `bench.bot_load` one after another; the CPU time of
this process (SQLite's thread included) is divided by the updates of each kind.

    python -m bench.bot_handlers                       # SQLite, 20,000 leads
    python -m bench.bot_handlers --profile /tmp/h.prof # and where the time goes

Where `bench.bot_load` measures a deployment (sandbox, proxy, workers), this isolates the part
that is ours, so that a change to it reads clearly. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from itertools import count
from pathlib import Path
from typing import Any

from aiogram import Bot
from aiogram.client.session.base import BaseSession
from aiogram.methods import TelegramMethod
from aiogram.types import CallbackQuery, Chat, InlineKeyboardMarkup, Message, Update, User
from sqlalchemy import event

from bench.bot_load import Agent, Stages, prepare
from bot.container import build_services
from bot.runtime import BotRuntime
from bot.settings import Settings

TOKEN = "42:bench"


class AnsweredAtOnce(BaseSession):
    """Telegram as a dictionary: every message sent is kept by chat, every method succeeds."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: dict[int, list[Message]] = defaultdict(list)
        self._ids = count(1_000)

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[Any],
        timeout: int | None = None,  # noqa: ASYNC109
    ) -> Any:
        chat_id = getattr(method, "chat_id", None)
        if method.__returning__ is bool or not isinstance(chat_id, int):
            return True
        message = Message(
            message_id=getattr(method, "message_id", None) or next(self._ids),
            date=datetime.now(UTC),
            chat=Chat(id=chat_id, type="private"),
            text=getattr(method, "text", None) or getattr(method, "caption", None) or "",
            reply_markup=getattr(method, "reply_markup", None),
        ).as_(bot)
        self.sent[chat_id].append(message)
        return message

    async def close(self) -> None:
        pass

    async def stream_content(self, *args: Any, **kwargs: Any) -> Any:  # pragma: no cover
        raise NotImplementedError


class Person:
    def __init__(self, runtime: BotRuntime, session: AnsweredAtOnce, agent: Agent) -> None:
        self.runtime = runtime
        self.session = session
        self.agent = agent
        self.user = User(id=agent.telegram_id, is_bot=False, first_name="Agent", language_code="en")
        self.chat = Chat(id=agent.telegram_id, type="private")
        self.card: Message | None = None

    def _last(self) -> list[Message]:
        return self.session.sent[self.agent.telegram_id][-3:]

    def button(self, prefix: str, suffix: str = "") -> tuple[Message, str] | None:
        for message in reversed([*self._last(), *([self.card] if self.card else [])]):
            markup = message.reply_markup
            if not isinstance(markup, InlineKeyboardMarkup):
                continue
            for row in markup.inline_keyboard:
                for key in row:
                    data = key.callback_data or ""
                    if data.startswith(prefix) and data.endswith(suffix):
                        return message, data
        return None

    async def feed(self, update: Update) -> None:
        await self.runtime.dispatcher.feed_update(self.runtime.bot, update)
        for message in self._last():
            markup = message.reply_markup
            if isinstance(markup, InlineKeyboardMarkup) and any(
                (key.callback_data or "").startswith("stg:")
                for row in markup.inline_keyboard
                for key in row
            ):
                self.card = message


class Updates:
    def __init__(self) -> None:
        self._ids = count(1)

    def message(self, person: Person, text: str) -> Update:
        number = next(self._ids)
        return Update(
            update_id=number,
            message=Message(
                message_id=number,
                date=datetime.now(UTC),
                chat=person.chat,
                from_user=person.user,
                text=text,
            ),
        )

    def tap(self, person: Person, prefix: str, suffix: str = "") -> Update | None:
        found = person.button(prefix, suffix)
        if found is None:
            return None
        message, data = found
        number = next(self._ids)
        return Update(
            update_id=number,
            callback_query=CallbackQuery(
                id=str(number),
                from_user=person.user,
                chat_instance="bench",
                message=message,
                data=data,
            ),
        )


def steps(stages: Stages) -> list[tuple[str, Any]]:
    """(kind, what to send) in the order of `bench.bot_load`; a str is typed, a tuple tapped."""
    return [
        ("search by name", lambda p: p.agent.lead[0]),
        ("open a card", lambda p: ("card:",)),
        ("search by phone", lambda p: p.agent.lead[1]),
        ("stage list", lambda p: ("stg:",)),
        ("move", lambda p: (f"mv:{_contact(p)}:{stages.moves_to}:",)),
        ("note: tap", lambda p: ("log:",)),
        ("note: text", lambda p: "Gọi lại, khách hẹn tuần sau"),
        ("stage list", lambda p: ("stg:",)),
        ("lost: stage", lambda p: (f"mv:{_contact(p)}:{stages.lost}:",)),
        ("lost: other", lambda p: ("lost:", ":-1")),
        ("lost: reason", lambda p: "Khách chọn bên khác"),
    ]


def _contact(person: Person) -> str:
    found = person.button("stg:")
    return found[1].split(":")[1] if found else "0"


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite+aiosqlite:///{Path(directory) / 'bench.db'}"
        agents, stages = await prepare(url, args.contacts, args.users)
        settings = Settings(  # type: ignore[call-arg]
            _env_file=None, database_url=url, bot_token=TOKEN, scheduler=False
        )
        services = build_services(settings)
        runtime = BotRuntime(settings, services, TOKEN)
        session = AnsweredAtOnce()
        runtime.bot.session = session
        people = [Person(runtime, session, agent) for agent in agents]
        updates = Updates()
        statements: list[str] = []
        event.listen(
            services.engine.sync_engine,
            "before_cursor_execute",
            lambda *args: statements.append(str(args[2])),
        )
        cpu: dict[str, float] = defaultdict(float)
        main_cpu: dict[str, float] = defaultdict(float)
        executed: dict[str, int] = defaultdict(int)
        fed: dict[str, int] = defaultdict(int)
        profiler = cProfile.Profile() if args.profile else None
        for round_number in range(args.rounds + 1):  # the first round warms up
            for person in people:
                person.agent.lead = next(person.agent.leads)
                person.card = None
            for kind, what in steps(stages):
                for person in people:
                    sent = what(person)
                    update = (
                        updates.message(person, sent)
                        if isinstance(sent, str)
                        else updates.tap(person, *sent)
                    )
                    if update is None:
                        print(f"  ({kind}: no such button for {person.agent.telegram_id})")
                        continue
                    profiling = profiler and round_number and kind in (args.only or [kind])
                    if profiling:
                        profiler.enable()
                    statements.clear()
                    started, started_here = time.process_time(), time.thread_time()
                    await person.feed(update)
                    spent = time.process_time() - started
                    spent_here = time.thread_time() - started_here
                    if profiling:
                        profiler.disable()
                    if round_number:
                        cpu[kind] += spent
                        main_cpu[kind] += spent_here
                        executed[kind] += len(statements)
                        if args.statements and fed[kind] == 0:
                            print(f"-- {kind}:", *statements, sep="\n   ")
                        fed[kind] += 1
        await services.close()
    print(f"\n== Stagekeeper's own CPU per update, SQLite, {args.contacts:,} leads (no HTTP)")
    print(f"  {'update':<18} {'updates':>7} {'ms CPU':>8} {'event loop':>10} {'statements':>10}")
    for kind, seconds in cpu.items():
        n = fed[kind]
        print(
            f"  {kind:<18} {n:>7} {1000 * seconds / n:>8.1f} {1000 * main_cpu[kind] / n:>10.1f}"
            f" {executed[kind] / n:>10.1f}"
        )
    if profiler:
        profiler.dump_stats(args.profile)
        print(f"  (profile in {args.profile})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--statements", action="store_true", help="print each kind's SQL once")
    parser.add_argument("--only", action="append", help="profile only updates of this kind")
    parser.add_argument("--profile", help="write a cProfile of the measured updates here")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
