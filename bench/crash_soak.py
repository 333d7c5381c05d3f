"""The crash tests' harness (tests/crash/harness.py) for hundreds of kills:
`python -m bench.crash_soak --kills 300 --seed N`. Real commands on a seeded database (50,000
contacts by default) killed with SIGKILL at random points, round-robin over the scenarios, each
kill followed by the checks of tests/crash (integrity, all or nothing, reports against a
recount, the next command, no digest twice). Prints each kill, then the figures per scenario,
the failures and the seed; asserts nothing.

SQLite in a temporary directory by default; `--postgres-url URL` runs on that server instead
(databases named after URL's, dropped at the end)."""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.crash.harness import (
    SCENARIOS,
    Harness,
    PostgresStore,
    SqliteStore,
    Store,
    Tally,
    Zygote,
    pick_seed,
)


async def soak(args: argparse.Namespace, seed: int, workdir: Path) -> dict[str, Tally]:
    store: Store = (
        PostgresStore(args.postgres_url) if args.postgres_url else SqliteStore(workdir / "db")
    )
    zygote = None if args.exec else Zygote()
    harness = Harness(
        store,
        workdir / "work",
        args.contacts,
        log=lambda line: print(line, flush=True),
        zygote=zygote,
    )
    tallies = {name: Tally(seed) for name in args.scenarios}
    rngs = {name: random.Random(f"{seed}:{store.kind}:{name}") for name in args.scenarios}
    try:
        async with harness.running():
            kills = 0
            while kills < args.kills:
                for name in args.scenarios:
                    if kills >= args.kills:
                        break
                    tally = tallies[name]
                    before = tally.kills
                    await harness.kill(SCENARIOS[name], rngs[name], tally)
                    kills += tally.kills - before
    finally:
        if isinstance(store, PostgresStore):
            cleaner = PostgresStore(args.postgres_url)
            await cleaner.drop_all()
            await cleaner.close()
        if zygote is not None:
            zygote.close()
    return tallies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--kills", type=int, default=300, help="kills that land, in all")
    parser.add_argument("--seed", type=int, help="default: a new one (printed)")
    parser.add_argument("--contacts", type=int, default=50_000)
    parser.add_argument(
        "--scenario",
        dest="scenarios",
        action="append",
        choices=list(SCENARIOS),
        help="repeatable; default: all of them",
    )
    parser.add_argument("--postgres-url", help="a PostgreSQL server instead of SQLite")
    parser.add_argument(
        "--exec", action="store_true", help="run the installed script, not forked children"
    )
    args = parser.parse_args()
    args.scenarios = args.scenarios or list(SCENARIOS)
    seed = args.seed if args.seed is not None else pick_seed()
    print(f"seed {seed}", flush=True)
    started = time.monotonic()
    directory = Path(tempfile.mkdtemp(prefix="crash-soak-"))
    tallies = asyncio.run(soak(args, seed, directory))
    total = Tally(seed)
    print(
        f"\n{'scenario':<22}{'kills':>6}{'in writes':>10}{'ended first':>12}{'failures':>9}  after"
    )
    for name, tally in tallies.items():
        total.add(tally)
        outcomes = ", ".join(f"{what} {n}" for what, n in sorted(tally.outcomes.items()))
        print(
            f"{name:<22}{tally.kills:>6}{tally.in_writes:>10}{tally.finished_first:>12}"
            f"{len(tally.failures):>9}  {outcomes}"
        )
    for failure in total.failures:
        print(f"FAILURE: {failure}")
    if total.failures:
        print(f"(what the failed runs left on SQLite is kept in {directory})")
    else:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"\n{total.summary()}; {time.monotonic() - started:.0f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
