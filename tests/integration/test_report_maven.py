"""The reports on the Maven CRM sales pipeline (8,800 opportunities of 2016–2017), imported with
the command line's mapping and checked against figures computed here from the CSV itself."""

from __future__ import annotations

import csv
import io
import statistics
from collections import Counter, defaultdict
from datetime import date

import pytest

from bot.container import Services
from domain.access import SYSTEM
from domain.model import Category, Role
from domain.services.imports import ImportOptions
from tests.conftest import shared_path

YEAR = (date(2017, 1, 1), date(2017, 12, 31))
MAPPING = {
    "opportunity_id": "external_id",
    "sales_agent": "owner",
    "account": "company",
    "deal_stage": "stage",
    "close_value": "value",
    "product": "source",
    "engage_date": "created_at",
    "close_date": "stage_changed_at",
}


def within(day: str) -> bool:
    return bool(day) and YEAR[0] <= date.fromisoformat(day) <= YEAR[1]


@pytest.fixture
async def maven(services: Services, database_url: str) -> tuple[Services, list[dict[str, str]]]:
    if not database_url.startswith("sqlite"):
        pytest.skip("the 8,800-row file is imported once, on SQLite, to keep the suite short")
    data = shared_path("datasets", "maven-crm", "sales_pipeline.csv").read_bytes()
    report = await services.imports.run(
        SYSTEM, data, ImportOptions(mapping=MAPPING, create_stages=True, create_owners=True)
    )
    assert (report.created, report.rejected) == (8800, 0)
    await services.stages.recategorize(SYSTEM, "Won", Category.WON)
    await services.stages.recategorize(SYSTEM, "Lost", Category.LOST)
    return services, list(csv.DictReader(io.StringIO(data.decode())))


async def test_the_maven_reports_match_figures_computed_from_the_csv_in_every_scope(
    maven: tuple[Services, list[dict[str, str]]],
) -> None:
    services, rows = maven
    reports = services.reports
    year = reports.period(*YEAR)
    new = [r for r in rows if within(r["engage_date"])]
    won = [r for r in rows if r["deal_stage"] == "Won" and within(r["close_date"])]
    lost = [r for r in rows if r["deal_stage"] == "Lost" and within(r["close_date"])]

    snapshot = await reports.snapshot(SYSTEM)
    assert {s.name: s.contacts for s in snapshot.stages} == Counter(r["deal_stage"] for r in rows)

    sources = await reports.sources(SYSTEM, year)
    assert {s.source: s.contacts for s in sources.sources} == Counter(r["product"] for r in new)

    conversion = await reports.conversion(SYSTEM, year)
    open_now = sum(1 for r in rows if r["deal_stage"] in ("Engaging", "Prospecting"))
    # The import's one history row per deal is dated at its close (or its engagement): a deal
    # closed on the day it was engaged, or still engaging, had nothing after its creation.
    idle = sum(1 for r in new if r["close_date"] in ("", r["engage_date"]))
    assert (conversion.new, conversion.active, conversion.idle) == (len(new), open_now, idle)
    assert (conversion.converted, conversion.junk) == (len(won), len(lost))
    assert conversion.win_rate == len(won) / (len(won) + len(lost))
    by_month = Counter(r["close_date"][:7] for r in won)
    assert [p.converted for p in conversion.over_time] == [
        by_month[f"2017-{month:02}"] for month in range(1, 13)
    ]

    funnel = await reports.funnel(SYSTEM, year)
    entered = [r for r in rows if within(r["close_date"] or r["engage_date"])]
    steps = [s.name for s in funnel.steps]
    assert steps[-1] == "Won"
    assert set(steps[:-1]) == {"Engaging", "Prospecting"}
    places = {name: n for n, name in enumerate(steps)}
    for step in funnel.steps:
        expected = sum(
            1
            for r in entered
            if r["deal_stage"] == "Won"
            or (r["deal_stage"] in places and places[r["deal_stage"]] >= places[step.name])
        )
        assert step.reached == expected, step.name
    assert [(row.name, row.contacts) for row in funnel.lost] == [
        (None, sum(1 for r in entered if r["deal_stage"] == "Lost"))
    ]

    board = await reports.leaderboard(SYSTEM, year)
    days_to_win = defaultdict(list)
    for r in won:
        days = date.fromisoformat(r["close_date"]) - date.fromisoformat(r["engage_date"])
        days_to_win[r["sales_agent"]].append(days.days)
    expected_rows = {
        agent: (
            sum(1 for r in new if r["sales_agent"] == agent),
            len(days_to_win[agent]),
            sum(1 for r in lost if r["sales_agent"] == agent),
            statistics.median(days_to_win[agent]) if days_to_win[agent] else None,
        )
        for agent in {r["sales_agent"] for r in rows}
    }
    assert {
        r.name: (r.new, r.converted, r.lost, r.median_days_to_win) for r in board.rows
    } == expected_rows
    assert [r.converted for r in board.rows] == sorted(
        (r.converted for r in board.rows), reverse=True
    )
    assert all(r.median_first_response_hours is None for r in board.rows)  # imports only

    # The one history row of a deal closed after the day it was engaged is a move; that of a
    # deal still engaging, or closed on its first day, records its creation.
    summary = await reports.summary(SYSTEM, year)
    moved = [r for r in rows if within(r["close_date"]) and r["close_date"] > r["engage_date"]]
    assert (summary.new, summary.moves) == (len(new), len(moved))
    assert (summary.converted, summary.lost) == (len(won), len(lost))

    # A manager sees the figures of their team only.
    teams = shared_path("datasets", "maven-crm", "sales_teams.csv").read_text()
    dustin = [t for t in csv.DictReader(io.StringIO(teams)) if t["manager"] == "Dustin Brinkmann"]
    team = {t["sales_agent"] for t in dustin}
    manager = await services.users.add(SYSTEM, "Dustin Brinkmann", Role.MANAGER, team="Central")
    for person in await services.users.everyone():
        if person.name in team:
            assert person.id is not None
            await services.users.set_team(SYSTEM, person.id, "Central")
    board = await services.reports.leaderboard(manager, year)
    assert {r.name for r in board.rows} == team
    snapshot = await services.reports.snapshot(manager)
    assert snapshot.total == sum(1 for r in rows if r["sales_agent"] in team)
