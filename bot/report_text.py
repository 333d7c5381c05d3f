"""Reports as the command line prints them: plain tables, or JSON (`--json`). The numbers are the
ones docs/reports.md defines; this only lays them out."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from domain.reports import (
    Conversion,
    Funnel,
    Leaderboard,
    Period,
    Report,
    Snapshot,
    Sources,
    TimeInStage,
)

NO_WON_STAGE = "Note: no stage is won yet, so reports cannot count conversions."


def report_json(kind: str, report: Report) -> dict[str, Any]:
    data = {"report": kind, **dataclasses.asdict(report)}
    if isinstance(report, Snapshot):
        data["total"] = report.total
    else:
        data["period"] = report.period.to_json()
    if isinstance(report, Funnel):
        data["lost_total"] = report.lost_total
    return data


def report_text(report: Report) -> str:
    match report:
        case Snapshot():
            lines = _snapshot(report)
        case Funnel():
            lines = _funnel(report)
        case Sources():
            lines = _sources(report)
        case Conversion():
            lines = _conversion(report)
        case Leaderboard():
            lines = _leaderboard(report)
        case TimeInStage():
            lines = _time_in_stage(report)
    if not getattr(report, "won_stage_defined", True):
        lines.append(NO_WON_STAGE)
    return "\n".join(lines)


def _snapshot(report: Snapshot) -> list[str]:
    rows = [
        [s.name + (" (deleted)" if s.archived else ""), s.category.value, str(s.contacts)]
        for s in report.stages
    ]
    rows += [["(no stage)", "", str(report.without_stage)], ["Total", "", str(report.total)]]
    return ["Contacts by stage, now", *table(["Stage", "Category", "Contacts"], rows, text=2)]


def _funnel(report: Funnel) -> list[str]:
    head = (
        f"Funnel of the {report.cohort} contact(s) that got their first stage "
        f"{_period(report.period)}"
    )
    rows = [
        [s.name, str(s.reached), percent(s.step_conversion), percent(s.cumulative_conversion)]
        for s in report.steps
    ]
    lines = [head, *table(["Step", "Reached", "Step conv.", "Cumulative"], rows)]
    if report.lost:
        lines.append(f"Lost now: {report.lost_total}, by the last open stage before the loss")
        lost = [[row.name or "(no open stage)", str(row.contacts)] for row in report.lost]
        lines += table(["Stage", "Lost"], lost)
    return lines


def _sources(report: Sources) -> list[str]:
    rows = [
        [s.source or "(no source)", str(s.contacts), percent(s.contacts / report.new)]
        for s in report.sources
    ]
    head = f"New contacts by source {_period(report.period)}: {report.new}"
    return [head, *table(["Source", "Contacts", "Share"], rows)]


def _conversion(report: Conversion) -> list[str]:
    lines = [
        f"Conversion {_period(report.period)}",
        f"New {report.new} · Active now {report.active} · Idle {report.idle} · "
        f"Converted {report.converted} · Junk {report.junk}",
        f"Win rate {percent(report.win_rate)} · Failure rate {percent(report.failure_rate)}",
    ]
    rows = [
        [p.start.isoformat(), str(p.converted), str(p.junk), percent(p.win_rate)]
        for p in report.over_time
    ]
    return lines + table(["From", "Converted", "Junk", "Win rate"], rows)


def _leaderboard(report: Leaderboard) -> list[str]:
    rows = [
        [
            r.name,
            str(r.new),
            str(r.converted),
            str(r.lost),
            percent(r.win_rate),
            number(r.median_days_to_win),
            number(r.median_first_response_hours),
        ]
        for r in report.rows
    ]
    headers = ["Owner", "New", "Converted", "Lost", "Win rate", "Days to win", "1st response h"]
    body = table(headers, rows) if rows else ["Nothing happened in this period."]
    return [f"Leaderboard {_period(report.period)} (medians)", *body]


def _time_in_stage(report: TimeInStage) -> list[str]:
    rows = [
        [
            s.name + (" (deleted)" if s.archived else ""),
            s.category.value,
            str(s.stays),
            number(s.mean_days),
            number(s.median_days),
        ]
        for s in report.stages
    ]
    head = f"Time in stage, for the stays that ended {_period(report.period)}"
    headers = ["Stage", "Category", "Stays", "Mean days", "Median days"]
    return [head, *table(headers, rows, text=2)]


def _period(period: Period) -> str:
    return f"from {period.first} to {period.last}"


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.1%}"


def number(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, text: int = 1) -> list[str]:
    """Columns padded to their widest cell: the first `text` ones to the left, numbers to the
    right."""
    widths = [max(len(row[n]) for row in [headers, *rows]) for n in range(len(headers))]
    return [
        "  ".join(
            cell.ljust(width) if n < text else cell.rjust(width)
            for n, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in [headers, *rows]
    ]
