"""The reports as chat shows them: a short summary (a photo's caption, at most 1,024
characters) and a chart, both in the reader's language. The numbers are docs/reports.md's; this
only chooses which to tell and lays them out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import lazy_gettext as __

from domain.model import Category
from domain.reports import (
    DAILY_UP_TO,
    NO_OWNER,
    Conversion,
    Funnel,
    Leaderboard,
    Period,
    Report,
    Snapshot,
    Sources,
    Span,
    TimeInStage,
)
from handlers import charts
from handlers.render import e

# Keys travel in callback data: short, and never renamed (old buttons still carry them).
REPORTS = {
    "snap": __("Snapshot"),
    "fun": __("Funnel"),
    "src": __("Lead sources"),
    "conv": __("Conversion"),
    "lead": __("Leaderboard"),
    "time": __("Time in stage"),
}
SPANS = {
    Span.TODAY: __("Today"),
    Span.WEEK: __("7 days"),
    Span.DAYS_30: __("30 days"),
    Span.THIS_MONTH: __("This month"),
    Span.LAST_MONTH: __("Last month"),
    Span.THIS_QUARTER: __("This quarter"),
}
CATEGORY_COLOUR = {
    Category.OPEN: charts.NEUTRAL,
    Category.WON: charts.WON,
    Category.LOST: charts.LOST,
}
NO_STAGE_COLOUR = "#90A4AE"
LINES_SHOWN = 6  # per list in a summary; the chart shows the rest


@dataclass(frozen=True, slots=True)
class Rendered:
    caption: str  # HTML
    chart: bytes  # PNG


def day(value: date) -> str:
    return value.strftime("%d/%m/%Y")


def period_label(period: Period, span: Span | None) -> str:
    """ "30 days (01/03/2025 – 30/03/2025)", or just the dates of a typed period."""
    dates = (
        day(period.first)
        if period.first == period.last
        else (f"{day(period.first)} – {day(period.last)}")
    )
    return f"{SPANS[span]} ({dates})" if span is not None else dates


def percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate:.0%}"


def days_figure(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"


def render(key: str, report: Report, span: Span | None) -> Rendered:
    """The caption and chart of report `key`; `span` names the period, if it has a name."""
    title = str(REPORTS[key])
    if isinstance(report, Snapshot):
        when = _("now (the period does not apply)")
        lines, chart = _snapshot(report, title)
    else:
        when = period_label(report.period, span)
        match report:
            case Funnel():
                lines, chart = _funnel(report, title)
            case Sources():
                lines, chart = _sources(report, title)
            case Conversion():
                lines, chart = _conversion(report, title)
            case Leaderboard():
                lines, chart = _leaderboard(report, title)
            case TimeInStage():
                lines, chart = _time_in_stage(report, title)
    if not getattr(report, "won_stage_defined", True):
        lines.append(_("⚠️ No stage is won yet, so there are no conversions to count."))
    caption = "\n".join([f"📊 <b>{e(title)}</b> · {e(when)}", *lines])
    return Rendered(caption, chart)


def _chart_title(title: str, period: Period) -> str:
    """The title with the period's dates, short enough for a phone's width."""
    if period.first == period.last:
        return f"{title} · {day(period.first)}"
    return f"{title} · {period.first:%d/%m} – {day(period.last)}"


def _nothing(title: str) -> bytes:
    return charts.empty(title, _("Nothing in this period."))


def _snapshot(report: Snapshot, title: str) -> tuple[list[str], bytes]:
    per_category = dict.fromkeys(Category, 0)
    for row in report.stages:
        per_category[row.category] += row.contacts
    lines = [
        _("{total} contacts: {open} open, {won} won, {lost} lost, {none} without a stage.").format(
            total=report.total,
            open=per_category[Category.OPEN],
            won=per_category[Category.WON],
            lost=per_category[Category.LOST],
            none=report.without_stage,
        )
    ]
    rows = [(row.name, row.contacts) for row in report.stages]
    colours = [CATEGORY_COLOUR[row.category] for row in report.stages]
    if report.without_stage:
        rows.append((_("No stage"), report.without_stage))
        colours.append(NO_STAGE_COLOUR)
    if not report.total:
        return lines, charts.empty(title, _("No contacts yet."))
    return lines, charts.bars(_("Contacts by stage, now"), rows, colours=colours)


def _funnel(report: Funnel, title: str) -> tuple[list[str], bytes]:
    chart_title = _chart_title(title, report.period)
    lines = [
        _("{cohort} contacts got their first stage in this period.").format(cohort=report.cohort)
    ]
    if not report.cohort:
        return lines, _nothing(chart_title)
    won = report.steps[-1]
    lines.append(
        _("Won: {won} ({rate}) · lost now: {lost}").format(
            won=won.reached, rate=percent(won.cumulative_conversion), lost=report.lost_total
        )
    )
    # The step that loses most people is what a manager looks at first.
    drops = [s for s in report.steps[1:] if s.step_conversion is not None]
    if drops:
        worst = min(drops, key=lambda s: s.step_conversion or 0)
        lines.append(
            _("Weakest step: {stage} ({rate} of the step before)").format(
                stage=e(_step_name(worst.name, worst.stage_id)),
                rate=percent(worst.step_conversion),
            )
        )
    return lines, funnel_chart(report, chart_title)


def funnel_chart(report: Funnel, title: str) -> bytes:
    steps = [(_step_name(s.name, s.stage_id), s.reached) for s in report.steps]
    lost = [(row.name or _("no open stage"), row.contacts) for row in report.lost]
    return charts.funnel(title, steps, lost, _("Lost"))


def _step_name(name: str, stage_id: int | None) -> str:
    return _("Won") if stage_id is None else name


def _sources(report: Sources, title: str) -> tuple[list[str], bytes]:
    chart_title = _chart_title(title, report.period)
    lines = [_("{new} new contacts.").format(new=report.new)]
    if not report.new:
        return lines, _nothing(chart_title)
    for row in report.sources[:LINES_SHOWN]:
        lines.append(
            f"• {e(row.source or _('No source'))}: {row.contacts} "
            f"({percent(row.contacts / report.new)})"
        )
    slices = [(row.source or _("No source"), row.contacts) for row in report.sources]
    return lines, charts.pie(chart_title, slices, _("Other"))


def _conversion(report: Conversion, title: str) -> tuple[list[str], bytes]:
    chart_title = _chart_title(title, report.period)
    lines = [
        _("New {new} · active now {active} · idle {idle}").format(
            new=report.new, active=report.active, idle=report.idle
        ),
        _("Converted {converted} · junk {junk}").format(
            converted=report.converted, junk=report.junk
        ),
        _("Win rate {win} · failure rate {failure}").format(
            win=percent(report.win_rate), failure=percent(report.failure_rate)
        ),
    ]
    if not report.converted and not report.junk:
        return lines, charts.empty(chart_title, _("Nobody was won or lost in this period."))
    period = report.period
    chart = charts.lines(
        chart_title,
        [point.start for point in report.over_time],
        [
            (_("Converted"), [p.converted for p in report.over_time], charts.WON),
            (_("Junk"), [p.junk for p in report.over_time], charts.LOST),
        ],
        monthly=(period.last - period.first).days >= DAILY_UP_TO,
    )
    return lines, chart


def _leaderboard(report: Leaderboard, title: str) -> tuple[list[str], bytes]:
    chart_title = _chart_title(title, report.period)
    if not report.rows:
        return [_("Nothing happened in this period.")], _nothing(chart_title)
    lines = []
    for place, row in enumerate(report.rows[:LINES_SHOWN], start=1):
        lines.append(
            _("{place}. {name}: {converted} won, {lost} lost, {new} new · win rate {rate}").format(
                place=place,
                name=e(_owner(row.name, row.owner_id)),
                converted=row.converted,
                lost=row.lost,
                new=row.new,
                rate=percent(row.win_rate),
            )
        )
    if len(report.rows) > LINES_SHOWN:
        lines.append(
            _("…and {more} more on the chart.").format(more=len(report.rows) - LINES_SHOWN)
        )
    # A phone shows about a dozen bars legibly.
    rows = [(_owner(row.name, row.owner_id), row.converted) for row in report.rows[:12]]
    return lines, charts.bars(_chart_title(_("Won per person"), report.period), rows)


def _owner(name: str, owner_id: int | None) -> str:
    return _("(no owner)") if owner_id is None and name == NO_OWNER else name


def _time_in_stage(report: TimeInStage, title: str) -> tuple[list[str], bytes]:
    chart_title = _chart_title(title, report.period)
    stayed = [row for row in report.stages if row.stays]
    if not stayed:
        return [_("No stay in a stage ended in this period.")], _nothing(chart_title)
    lines = [_("Median (mean) days, over the stays that ended in the period:")]
    for row in stayed[: LINES_SHOWN + 2]:
        lines.append(
            _("• {stage}: {median} ({mean}) days, {stays} stays").format(
                stage=e(row.name),
                median=days_figure(row.median_days),
                mean=days_figure(row.mean_days),
                stays=row.stays,
            )
        )
    rows = [(row.name, row.median_days or 0.0) for row in stayed]
    colours = [CATEGORY_COLOUR[row.category] for row in stayed]
    chart = charts.bars(
        _chart_title(_("Median days in stage"), report.period),
        rows,
        colours=colours,
        decimals=1,
    )
    return lines, chart
