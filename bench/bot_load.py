"""Load on the update path: people tapping and typing, through the sandbox, to bot workers.

    python -m bench.bot_load                       # one worker on SQLite
    python -m bench.bot_load --postgres-url postgresql+asyncpg://…   # and two on PostgreSQL + Redis

Starts the sandbox's Bot API in this process and `stagekeeper webhook` workers in processes of
their own behind a proxy that alternates between them (tests/e2e/workers.py), on a database of
`--contacts` synthetic leads shared among `--users` agents (bench.search.fill). Each agent works
through leads of their own, a round at a time: search by name, open a card, search by phone, the
stage list, a move, a note, a loss with a typed reason, and (one agent in four) /report and a
chart. It drives them through the user-side API (/sandbox/send, /sandbox/click, /sandbox/chat) and
measures:

- bot CPU per update by kind: every agent takes the same step at once, and the workers' CPU time
  (user + system, from /proc; SQLite's work included, PostgreSQL's server not) is divided by the
  updates of the step;
- the floor, in the same run: the same updates, replayed to `bench.bot_floor` (aiogram dispatching
  to a handler that answers at once) at the same concurrency;
- updates/s with every agent working freely, and p50/p99 latency from send to the worker's answer
  of the webhook (the update fully handled) at `--rate` updates/s, open loop;
- lost updates (no reply from the bot) and doubled ones (handled twice).

The database given by --postgres-url is emptied first. Prints figures; asserts nothing."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from redis.asyncio import Redis
from sqlalchemy import select, text, update

from bench.search import all_in_one_stage
from domain.model import Category
from storage.db import make_engine
from storage.models import ContactRow, StageRow, UserRow
from tests.e2e.workers import (
    SECRET,
    TOKEN,
    WEBHOOK_PATH,
    AlternatingProxy,
    TelegramHere,
    Worker,
    worker_settings,
)

FIRST_TELEGRAM_ID = 500_000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


# --- the database ----------------------------------------------------------------------------


@dataclass
class Agent:
    telegram_id: int
    leads: Iterator[tuple[str, str]]  # (name, phone) of leads of their own, in the first stage
    lead: tuple[str, str] = ("", "")
    cursor: int = 0  # the chat's event number read up to
    card: dict[str, Any] | None = None  # the last message with a contact's buttons
    last: list[dict[str, Any]] = field(default_factory=list)  # the bot's last reply


@dataclass(frozen=True)
class Stages:
    moves_to: int  # an open stage other than the first
    lost: int


async def prepare(url: str, contacts: int, users: int) -> tuple[list[Agent], Stages]:
    """A database of synthetic leads, every one in "Lead", owned by 50 agents, `users` of whom
    get Telegram ids."""
    services = await all_in_one_stage(url, contacts, seed=11, stage="Lead")
    await services.close()
    engine = make_engine(url)
    async with engine.begin() as connection:
        agent_ids = list(
            (
                await connection.scalars(
                    select(UserRow.id).where(UserRow.role == "agent").order_by(UserRow.id)
                )
            ).all()
        )[:users]
        for number, agent_id in enumerate(agent_ids):
            await connection.execute(
                update(UserRow)
                .where(UserRow.id == agent_id)
                .values(telegram_id=FIRST_TELEGRAM_ID + number, language="en")
            )
        leads: dict[int, list[tuple[str, str]]] = defaultdict(list)
        rows = await connection.execute(
            select(ContactRow.owner_id, ContactRow.name, ContactRow.phone).where(
                ContactRow.owner_id.in_(agent_ids)
            )
        )
        for owner, name, phone in rows:
            if owner is not None and name and phone:
                leads[owner].append((name, phone))
        stage_rows = (
            await connection.execute(
                select(StageRow.id, StageRow.category).order_by(StageRow.position)
            )
        ).all()
    await engine.dispose()
    open_ids = [i for i, category in stage_rows if category == Category.OPEN.value]
    lost_ids = [i for i, category in stage_rows if category == Category.LOST.value]
    agents = [
        Agent(FIRST_TELEGRAM_ID + n, iter(leads[agent_id])) for n, agent_id in enumerate(agent_ids)
    ]
    return agents, Stages(moves_to=open_ids[1], lost=lost_ids[-1])


async def empty_redis(url: str) -> None:
    client = Redis.from_url(url)
    await client.flushdb()
    await client.aclose()


async def empty_postgres(url: str) -> None:
    engine = make_engine(url)
    async with engine.begin() as connection:
        await connection.execute(text("DROP SCHEMA public CASCADE"))
        await connection.execute(text("CREATE SCHEMA public"))
    await engine.dispose()


# --- driving people through the user-side API ------------------------------------------------


class Lost(Exception):
    """An update that got no reply."""


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    sent: Counter[str] = field(default_factory=Counter)
    lost: Counter[str] = field(default_factory=Counter)


class People:
    def __init__(self, telegram: TelegramHere, proxy: AlternatingProxy) -> None:
        self.telegram = telegram
        self.bot = telegram.emulator.bot_for_token(TOKEN)
        self.handled: dict[int, float] = {}
        self.handled_twice = 0
        self.changed = asyncio.Event()
        self.recorded: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.tally = Tally()
        self.ticket: Callable[[], Awaitable[None]] | None = None  # paces sends when set
        proxy.on_handled = self._handled

    async def start(self) -> None:
        self.http = aiohttp.ClientSession(self.telegram.url)

    async def stop(self) -> None:
        await self.http.close()

    def _handled(self, update_id: int) -> None:
        if update_id in self.handled:
            self.handled_twice += 1
        self.handled[update_id] = time.perf_counter()
        self.changed.set()

    async def _until_handled(self, update_id: int, limit: float = 120) -> float:
        deadline = time.perf_counter() + limit
        while update_id not in self.handled:
            self.changed.clear()
            left = deadline - time.perf_counter()
            if left <= 0:
                raise Lost(f"update {update_id} not handled in {limit} s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)
        return self.handled[update_id]

    async def _post(self, path: str, body: dict[str, Any]) -> int:
        async with self.http.post(path, json=body) as response:
            response.raise_for_status()
            return int((await response.json())["update_id"])

    async def act(
        self, agent: Agent, kind: str, *, text: str = "", data: str = "", suffix: str = ""
    ) -> None:
        """One message (`text`) or a tap on the first button whose data starts with `data` and
        ends with `suffix` (of the last reply or card), timed from send to handled; afterwards
        `agent.last` is the bot's reply."""
        if self.ticket is not None:
            await self.ticket()
        started = time.perf_counter()
        if text:
            update_id = await self._post(
                "/sandbox/send", {"user_id": agent.telegram_id, "text": text}
            )
        else:
            message = next(
                (m for m in [*agent.last, agent.card] if m and _button(m, data, suffix)), None
            )
            if message is None:
                self.tally.lost[kind] += 1  # the reply before had no such button
                return
            update_id = await self._post(
                "/sandbox/click",
                {
                    "user_id": agent.telegram_id,
                    "message_id": message["message_id"],
                    "data": _button(message, data, suffix),
                },
            )
        self.recorded[kind].append(self.bot.recent_updates[update_id])
        self.tally.sent[kind] += 1
        handled_at = await self._until_handled(update_id)
        self.tally.latencies[kind].append(handled_at - started)
        async with self.http.get(
            f"/sandbox/chat/{agent.telegram_id}", params={"since": agent.cursor}
        ) as response:
            chat = await response.json()
        agent.cursor = chat["cursor"]
        agent.last = [m for m in chat["messages"] if m["from"] == "bot"]
        if not agent.last and not chat["callback_answers"]:
            self.tally.lost[kind] += 1
        for message in agent.last:
            if _button(message, "stg:") is not None:
                agent.card = message


def _button(message: dict[str, Any], prefix: str, suffix: str = "") -> str | None:
    """The callback data of the message's first button that starts with `prefix` and ends
    with `suffix`."""
    for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
        for key in row:
            data = str(key.get("callback_data", ""))
            if data.startswith(prefix) and data.endswith(suffix):
                return data
    return None


Step = tuple[str, Callable[[People, Agent, Stages, int], Awaitable[None]]]


async def _next_lead(people: People, agent: Agent, stages: Stages, number: int) -> None:
    agent.lead = next(agent.leads)
    agent.card = None
    await people.act(agent, "search by name", text=agent.lead[0])


STEPS: list[Step] = [
    ("search by name", _next_lead),
    ("open a card", lambda p, a, s, n: p.act(a, "open a card", data="card:")),
    ("search by phone", lambda p, a, s, n: p.act(a, "search by phone", text=a.lead[1])),
    ("stage list", lambda p, a, s, n: p.act(a, "stage list", data="stg:")),
    ("move", lambda p, a, s, n: p.act(a, "move", data=f"mv:{_contact(a)}:{s.moves_to}:")),
    ("note: tap", lambda p, a, s, n: p.act(a, "note: tap", data="log:")),
    ("note: text", lambda p, a, s, n: p.act(a, "note: text", text="Gọi lại, khách hẹn tuần sau")),
    ("stage list again", lambda p, a, s, n: p.act(a, "stage list", data="stg:")),
    ("lost: stage", lambda p, a, s, n: p.act(a, "lost: stage", data=f"mv:{_contact(a)}:{s.lost}:")),
    ("lost: other", lambda p, a, s, n: p.act(a, "lost: other", data="lost:", suffix=":-1")),
    ("lost: reason", lambda p, a, s, n: p.act(a, "lost: reason", text="Khách chọn bên khác")),
    ("/report", lambda p, a, s, n: _sometimes(n, p.act(a, "/report", text="/report"))),
    ("report chart", lambda p, a, s, n: _sometimes(n, p.act(a, "report chart", data="rp:"))),
]


def _contact(agent: Agent) -> str:
    data = _button(agent.card or {}, "stg:") or "stg:0"
    return data.split(":")[1]


async def _sometimes(number: int, action: Awaitable[None]) -> None:
    """One agent in four."""
    if number % 4 == 0:
        await action
    elif asyncio.iscoroutine(action):
        action.close()


# --- the runs --------------------------------------------------------------------------------


@dataclass
class Deployment:
    name: str
    telegram: TelegramHere
    workers: list[Worker]
    proxy: AlternatingProxy
    people: People

    def cpu(self) -> float:
        return sum(cpu_seconds(w.process.pid) for w in self.workers if w.process is not None)


async def deploy(
    name: str,
    count: int,
    settings: dict[str, str],
    module: tuple[str, ...],
    log_dir: Path,
    telegram: TelegramHere,
) -> Deployment:
    workers = [Worker(f"{name}-{n}", settings, log_dir, module=module) for n in range(1, count + 1)]
    proxy = AlternatingProxy(workers)
    await proxy.start()
    for worker in workers:
        worker.env["WEBHOOK_URL"] = proxy.url
    await asyncio.gather(*(worker.start() for worker in workers))
    people = People(telegram, proxy)
    await people.start()
    return Deployment(name, telegram, workers, proxy, people)


async def undeploy(deployment: Deployment) -> None:
    await deployment.people.stop()
    await asyncio.gather(*(worker.stop() for worker in deployment.workers))
    await deployment.proxy.stop()


async def lockstep(
    deployment: Deployment, agents: list[Agent], stages: Stages, rounds: int
) -> dict[str, tuple[int, float]]:
    """Every agent takes each step at once; the workers' CPU per step kind: (updates, seconds)."""
    cpu: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    people = deployment.people
    for _ in range(rounds):
        for label, step in STEPS:
            before_sent = sum(people.tally.sent.values())
            before = deployment.cpu()
            await asyncio.gather(*(step(people, a, stages, n) for n, a in enumerate(agents)))
            cpu[_kind_of(label)][0] += sum(people.tally.sent.values()) - before_sent
            cpu[_kind_of(label)][1] += deployment.cpu() - before
    return {kind: (int(n), seconds) for kind, (n, seconds) in cpu.items()}


def _kind_of(label: str) -> str:
    return "stage list" if label == "stage list again" else label


async def freely(
    deployment: Deployment, agents: list[Agent], stages: Stages, rounds: int
) -> tuple[int, float]:
    """Every agent works through `rounds` rounds at their own pace: (updates, seconds)."""
    people = deployment.people
    before = sum(people.tally.sent.values())
    started = time.perf_counter()

    async def work(number: int, agent: Agent) -> None:
        for _ in range(rounds):
            for _label, step in STEPS:
                await step(people, agent, stages, number)

    await asyncio.gather(*(work(n, a) for n, a in enumerate(agents)))
    return sum(people.tally.sent.values()) - before, time.perf_counter() - started


class Pace:
    """Tickets at `rate` a second: a send waits for its ticket (open loop across agents)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate
        self.next = time.perf_counter()

    async def ticket(self) -> None:
        now = time.perf_counter()
        self.next = max(self.next + self.interval, now - 1)  # no burst after a stall
        if self.next > now:
            await asyncio.sleep(self.next - now)


async def replay_to_floor(
    floor: Deployment, recorded: dict[str, list[dict[str, Any]]], concurrency: int
) -> dict[str, tuple[int, float]]:
    """The same updates, kind by kind, posted to the floor's webhook `concurrency` at a time."""
    url = floor.workers[0].url + WEBHOOK_PATH
    headers = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
    result = {}
    async with aiohttp.ClientSession() as http:
        for kind, updates in recorded.items():
            queue = list(updates)
            before = floor.cpu()

            async def post(queue: list[dict[str, Any]] = queue) -> None:
                while queue:
                    update = queue.pop()
                    async with http.post(url, json=update, headers=headers) as response:
                        await response.read()

            await asyncio.gather(*(post() for _ in range(concurrency)))
            result[_kind_of(kind)] = (len(updates), floor.cpu() - before)
    return result


def print_cpu(bot: dict[str, tuple[int, float]], floor: dict[str, tuple[int, float]]) -> None:
    print(f"  {'update':<18}{'updates':>8}{'bot ms CPU':>12}{'floor ms':>10}")
    for kind, (count, seconds) in bot.items():
        floor_count, floor_seconds = floor.get(kind, (0, 0.0))
        per = seconds / count * 1000 if count else float("nan")
        floor_per = floor_seconds / floor_count * 1000 if floor_count else float("nan")
        print(f"  {kind:<18}{count:>8}{per:>12.1f}{floor_per:>10.1f}")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else float("nan")


async def run(args: argparse.Namespace, count: int, url: str, redis_url: str | None) -> None:
    label = f"{count} worker{'s' if count > 1 else ''} on {url.split(':')[0]}"
    label += " + Redis" if redis_url else ""
    print(f"\n== {label}: {args.users} agents, {args.contacts:,} leads")
    started = time.perf_counter()
    agents, stages = await prepare(url, args.contacts, args.users)
    print(f"  (database ready in {time.perf_counter() - started:.0f} s)")
    log_dir = Path(tempfile.mkdtemp(prefix="bot-load-"))
    telegram = TelegramHere()
    await telegram.start()
    settings = worker_settings(
        telegram,
        url,
        redis_url=redis_url,
        LOG_LEVEL="WARNING",
    )
    async with aiohttp.ClientSession(telegram.url) as http:
        for agent in agents:
            person = {"id": agent.telegram_id, "first_name": "Agent", "language_code": "en"}
            async with http.post("/sandbox/users", json=person) as response:
                response.raise_for_status()
    bot_module: tuple[str, ...] = ("bot", "webhook")
    if args.profile and count == 1:  # written when the worker stops
        bot_module = ("cProfile", "-o", args.profile, "-m", *bot_module)
    bot = await deploy("bot", count, settings, bot_module, log_dir, telegram)
    try:
        await freely(bot, agents[:4], stages, 1)  # warm: first calls import and compile
        cpu = await lockstep(bot, agents, stages, args.rounds)
        updates, seconds = await freely(bot, agents, stages, args.rounds)
        throughput = updates / seconds
        paced = Pace(args.rate)
        bot.people.ticket = paced.ticket
        bot.people.tally.latencies.clear()
        await freely(bot, agents, stages, args.rounds)
        bot.people.ticket = None
    finally:
        await undeploy(bot)
    floor = await deploy("floor", 1, settings, ("bench.bot_floor",), log_dir, telegram)
    try:
        floor_cpu = await replay_to_floor(floor, bot.people.recorded, len(agents))
    finally:
        await undeploy(floor)
        await telegram.stop()
    tally = bot.people.tally
    print("  CPU per update (all workers; the floor is one aiogram worker answering at once):")
    print_cpu(cpu, floor_cpu)
    print(f"  updates/s, every agent working freely: {throughput:.0f}")
    latencies = [ms for values in tally.latencies.values() for ms in values]
    print(
        f"  latency at {args.rate:.0f} updates/s: p50 {percentile(latencies, 0.5) * 1000:.0f} ms, "
        f"p99 {percentile(latencies, 0.99) * 1000:.0f} ms ({len(latencies)} updates)"
    )
    lost = sum(tally.lost.values())
    print(
        f"  sent {sum(tally.sent.values())}, without a reply {lost}"
        f"{' ' + str(dict(tally.lost)) if lost else ''}, handled twice {bot.people.handled_twice}"
    )
    print(f"  (worker logs in {log_dir})")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=40, help="agents working at once (≤ 50)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each run")
    parser.add_argument("--rate", type=float, default=100, help="updates/s of the latency run")
    parser.add_argument("--postgres-url", help="also two workers on this database (emptied)")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/14")
    parser.add_argument(
        "--profile", metavar="PATH", help="run the one worker on SQLite under cProfile, into PATH"
    )
    args = parser.parse_args()
    sqlite = f"sqlite+aiosqlite:///{tempfile.mkdtemp()}/bench.db"
    asyncio.run(run(args, 1, sqlite, None))
    if args.postgres_url:
        asyncio.run(empty_postgres(args.postgres_url))
        asyncio.run(empty_redis(args.redis_url))
        asyncio.run(run(args, 2, args.postgres_url, args.redis_url))
    else:
        print("\n(two workers: give --postgres-url, and Redis at --redis-url)", file=sys.stderr)


if __name__ == "__main__":
    main()
