"""`stagekeeper report …` (DESIGN §4): every report as JSON for scripts and as a table for
people, over local-day periods, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.report_text import NO_WON_STAGE
from tests.integration.test_cli import Cli

MARCH = ("--from", "2024-03-01", "--to", "2024-03-31")
PIPELINE = (
    "email,stage,source,lost_reason,created_at,stage_changed_at\n"
    "an@x.vn,Lead,Zalo,,2024-03-01,2024-03-01\n"
    "binh@x.vn,SQL,Zalo,,2024-03-02,2024-03-04\n"
    "chi@x.vn,Customer,Web,,2024-03-03,2024-03-13\n"
    "dung@x.vn,Unsubscribed,,Price,2024-03-03,2024-03-05\n"
    "em@x.vn,Customer,Web,,2024-02-10,2024-03-31 23:59\n"
    "gia@x.vn,Customer,Web,,2024-02-10,2024-04-01 00:00\n"
)


@pytest.fixture
def cli(database_url: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Cli:
    cli = Cli(database_url, capsys)
    assert cli("init", "--template", "amis")[0] == 0
    csv = tmp_path / "pipeline.csv"
    csv.write_text(PIPELINE, encoding="utf-8")
    assert cli.json("import", str(csv))["created"] == 6
    return cli


def test_every_report_is_available_as_json_for_a_period_of_local_days(cli: Cli) -> None:
    snapshot = cli.json("report", "snapshot")
    assert snapshot["report"] == "snapshot"
    assert {s["name"]: s["contacts"] for s in snapshot["stages"]}["Customer"] == 3
    assert (snapshot["without_stage"], snapshot["total"]) == (0, 6)

    funnel = cli.json("report", "funnel", *MARCH)
    assert funnel["period"] == {"from": "2024-03-01", "to": "2024-03-31"}
    assert funnel["cohort"] == 5  # gia's first stage came on 1 April, local time
    assert [(s["name"], s["reached"]) for s in funnel["steps"]] == [
        ("Lead", 4),
        ("MQL", 3),
        ("SQL", 3),
        ("Won", 2),
    ]
    assert funnel["lost"] == [{"stage_id": None, "name": None, "contacts": 1}]

    sources = cli.json("report", "sources", *MARCH)
    assert [(s["source"], s["contacts"]) for s in sources["sources"]] == [
        ("Zalo", 2),
        ("Web", 1),
        (None, 1),
    ]

    conversion = cli.json("report", "conversion", *MARCH)
    assert {k: conversion[k] for k in ("new", "active", "idle", "converted", "junk")} == {
        "new": 4,
        "active": 2,
        "idle": 1,
        "converted": 2,
        "junk": 1,
    }
    assert conversion["win_rate"] == pytest.approx(2 / 3)
    assert len(conversion["over_time"]) == 31
    assert conversion["over_time"][12] == {
        "start": "2024-03-13",
        "converted": 1,
        "junk": 0,
        "win_rate": 1.0,
    }

    [nobody] = cli.json("report", "leaderboard", *MARCH)["rows"]
    assert (nobody["name"], nobody["new"], nobody["converted"], nobody["lost"]) == (
        "(no owner)",
        4,
        2,
        1,
    )
    assert nobody["median_days_to_win"] == pytest.approx((10 + 50 + 23 / 24 + 59 / 1440) / 2)

    stays = cli.json("report", "time-in-stage", "--from", "2024-03-01")
    assert [(s["name"], s["stays"]) for s in stays["stages"] if s["stays"]] == []


def test_without_json_a_report_is_a_readable_table(cli: Cli) -> None:
    code, out, _ = cli("report", "funnel", *MARCH)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].endswith(
        "5 contact(s) that got their first stage from 2024-03-01 to 2024-03-31"
    )
    assert lines[1].split() == ["Step", "Reached", "Step", "conv.", "Cumulative"]
    assert lines[2].split() == ["Lead", "4", "80.0%", "80.0%"]
    assert "(no open stage)" in out
    code, out, _ = cli("report", "snapshot")
    assert out.splitlines()[-1].split() == ["Total", "6"]


def test_recategorizing_a_stage_on_the_command_line_changes_past_reports(cli: Cli) -> None:
    assert cli.json("report", "conversion", *MARCH)["converted"] == 2
    cli("stages", "recategorize", "SQL", "--category", "won")
    assert cli.json("report", "conversion", *MARCH)["converted"] == 3


def test_a_report_without_a_won_stage_says_so(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cli = Cli(database_url, capsys)
    cli("init", "--template", "none")
    cli("stages", "add", "Lead", "--category", "open")
    cli("contacts", "add", "An", "--phone", "0912345678", "--stage", "Lead")
    assert cli.json("report", "funnel")["won_stage_defined"] is False
    code, out, _ = cli("report", "conversion")
    assert (code, out.splitlines()[-1]) == (0, NO_WON_STAGE)


def test_odd_periods_are_refused_with_a_one_line_reason(cli: Cli) -> None:
    backwards = cli.refused("report", "funnel", "--from", "2024-04-01", "--to", "2024-03-01")
    assert "after it ends" in backwards
    assert "10 years" in cli.refused("report", "sources", "--from", "2000-01-01")
    code, _, err = cli("report", "funnel", "--from", "2024-02-30")
    assert code == 2
    assert "not a date" in err
