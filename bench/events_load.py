"""Load on the HTTP API: `--rate` events a second for `--seconds`, open loop (each request leaves
on time whether or not the earlier ones were answered).

    python -m bench.events_load                    # starts a sandbox on a fresh SQLite file
    python -m bench.events_load --url http://127.0.0.1:8081 --key sk_…   # one already running

The mix: 70% forms for new phone numbers (new leads, told to their owners), 20% revenue for a
contact made earlier, 10% replays of the previous event's idempotency key. Prints how many were
accepted and how many errored, latency percentiles, how many events the database stored against
how many it should have (own sandbox only), and, from the sandbox's request log, the messages
the bot sent and the most in any one second. Stops by itself; asserts nothing."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from sqlalchemy import func, select

from bot.container import build_services
from bot.settings import Settings
from domain.access import SYSTEM
from domain.model import Role
from storage import migrate
from storage.models import EventRow

AGENTS = 5
FIRST_AGENT_ID = 7001


@dataclass
class Tally:
    statuses: Counter[int | str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    late_starts: int = 0


def event_number(n: int) -> dict[str, Any]:
    """The n-th event of the mix."""
    if n % 10 == 9:
        return event_number(n - 1)  # a replay: the same event with the same key
    if n % 5 == 3:
        return {
            "event": "revenue_booked",
            "phone": _phone(n - 1),
            "value": 1_500_000,
            "idempotency_key": f"load-{n}",
        }
    return {
        "event": "form_submitted",
        "phone": _phone(n),
        "name": f"Khách {n}",
        "source": "Landing page",
        "idempotency_key": f"load-{n}",
    }


def _phone(n: int) -> str:
    return f"+8490{n:07d}"


def total_of(args: argparse.Namespace) -> int:
    return int(args.rate * args.seconds)


def distinct_events(total: int) -> int:
    return len({event_number(n)["idempotency_key"] for n in range(total)})


async def load(url: str, key: str, rate: float, seconds: float) -> Tally:
    tally = Tally()
    total = int(rate * seconds)
    headers = {"Authorization": f"Bearer {key}"}
    connector = aiohttp.TCPConnector(limit=500)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as http:

        async def send(n: int) -> None:
            started = time.perf_counter()
            try:
                async with http.post(f"{url}/api/v1/events", json=event_number(n)) as response:
                    await response.read()
                    tally.statuses[response.status] += 1
            except aiohttp.ClientError as error:
                tally.statuses[type(error).__name__] += 1
            tally.latencies.append(time.perf_counter() - started)

        start = time.perf_counter()
        tasks = []
        for n in range(total):
            delay = start + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.05:
                tally.late_starts += 1
            tasks.append(asyncio.create_task(send(n)))
        await asyncio.gather(*tasks)
    return tally


async def sent_messages(url: str, settle: float = 3.0, limit: float = 120.0) -> list[float]:
    """The times of the bot's sendMessage calls, once no new one came for `settle` seconds."""
    async with aiohttp.ClientSession() as http:
        seen, quiet_since, deadline = -1, time.monotonic(), time.monotonic() + limit
        while time.monotonic() < deadline:
            async with http.get(f"{url}/sandbox/requests", params={"method": "sendMessage"}) as r:
                body = await r.json()
            requests = body["requests"] if isinstance(body, dict) else body
            if len(requests) != seen:
                seen, quiet_since = len(requests), time.monotonic()
            elif time.monotonic() - quiet_since >= settle:
                return sorted(float(request["time"]) for request in requests)
            await asyncio.sleep(0.5)
    return []


def report(tally: Tally, rate: float, seconds: float, elapsed: float) -> None:
    accepted = tally.statuses.get(200, 0)
    errored = sum(tally.statuses.values()) - accepted
    print(f"sent {sum(tally.statuses.values()):,} events at {rate:g}/s for {seconds:g} s")
    print(f"  accepted {accepted:,}, errored {errored:,}  {dict(tally.statuses)}")
    if tally.late_starts:
        print(f"  {tally.late_starts:,} requests left more than 50 ms late (the generator lagged)")
    cuts = statistics.quantiles(tally.latencies, n=100)
    print(
        f"  latency ms: p50 {cuts[49] * 1000:.0f}, p90 {cuts[89] * 1000:.0f}, "
        f"p99 {cuts[98] * 1000:.0f}, max {max(tally.latencies) * 1000:.0f}"
        f"  (all answered {elapsed:.1f} s after the first left)"
    )


def report_messages(times: list[float]) -> None:
    if not times:
        print("  the bot sent no message")
        return
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    print(
        f"  the bot sent {len(times):,} new-lead messages over {times[-1] - times[0]:.1f} s, "
        f"at most {busiest} in any one second"
    )


async def prepare(url: str) -> str:
    """A fresh database: the amis stages, a team of agents in Telegram, and an API key."""
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    await migrate.upgrade(services.engine)
    await services.stages.apply_template(SYSTEM, "amis")
    for n in range(AGENTS):
        await services.users.add(
            SYSTEM, f"Agent {n}", Role.AGENT, team="web", telegram_id=FIRST_AGENT_ID + n
        )
    _, key = await services.api_keys.create(SYSTEM, "load")
    await services.close()
    return key


async def stored_events(url: str) -> int:
    services = build_services(Settings(_env_file=None, database_url=url))  # type: ignore[call-arg]
    async with services.engine.connect() as connection:
        count = await connection.scalar(select(func.count()).select_from(EventRow))
    await services.close()
    return int(count or 0)


async def start_chats(url: str) -> None:
    """The agents open the bot, as Telegram requires before a bot may write to them."""
    async with aiohttp.ClientSession() as http:
        for n in range(AGENTS):
            user = {"id": FIRST_AGENT_ID + n, "first_name": f"Agent{n}"}
            await http.post(f"{url}/sandbox/users", json=user)
            await http.post(f"{url}/sandbox/send", json={"user_id": user["id"], "text": "/start"})


async def wait_healthy(url: str, process: asyncio.subprocess.Process, limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise SystemExit("the sandbox stopped; see its output above")
            try:
                async with http.get(f"{url}/api/v1/healthz") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise SystemExit("the sandbox did not answer in time")


async def own_sandbox(args: argparse.Namespace) -> None:
    folder = Path(tempfile.mkdtemp(prefix="events-load-"))
    database = f"sqlite+aiosqlite:///{folder / 'load.db'}"
    key = await prepare(database)
    url = f"http://127.0.0.1:{args.port}"
    environment = {**os.environ, "LEADS_TEAM": "web", "LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "bot", "sandbox", "--port", str(args.port)]
    command += ["--database-url", database]
    process = await asyncio.create_subprocess_exec(*command, env=environment, cwd=folder)
    try:
        await wait_healthy(url, process)
        await start_chats(url)
        await run(url, key, args)
        stored, distinct = await stored_events(database), distinct_events(total_of(args))
        print(f"  stored {stored:,} events; {distinct:,} distinct were sent")
    finally:
        process.terminate()
        await process.wait()


async def run(url: str, key: str, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    tally = await load(url, key, args.rate, args.seconds)
    report(tally, args.rate, args.seconds, time.perf_counter() - started)
    report_messages(await sent_messages(url))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=200, help="events a second")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--url", help="a running sandbox (default: start one)")
    parser.add_argument("--key", help="an API key of that sandbox")
    parser.add_argument("--port", type=int, default=8091, help="for the sandbox started here")
    args = parser.parse_args()
    if args.url:
        if not args.key:
            parser.error("--url needs --key")
        asyncio.run(run(args.url.rstrip("/"), args.key, args))
    else:
        asyncio.run(own_sandbox(args))


if __name__ == "__main__":
    main()
