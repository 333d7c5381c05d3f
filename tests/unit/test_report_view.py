"""Reports as chat shows them: the summary under the chart, in the reader's language, and
typed periods read as people write them."""

from __future__ import annotations

from datetime import date

import pytest

from domain.model import Category
from domain.reports import (
    Conversion,
    ConversionPoint,
    Funnel,
    FunnelStep,
    Leaderboard,
    LeaderRow,
    LostAt,
    Period,
    Snapshot,
    Span,
    StageCount,
)
from handlers.dates import parse_range
from handlers.i18n import build_i18n
from handlers.report_view import render

I18N = build_i18n()
MARCH = Period(date(2025, 3, 1), date(2025, 3, 31))
PNG = b"\x89PNG\r\n\x1a\n"

FUNNEL = Funnel(
    MARCH,
    cohort=40,
    steps=(
        FunnelStep(1, "Lead", 40, 1.0, 1.0),
        FunnelStep(2, "MQL", 30, 0.75, 0.75),
        FunnelStep(3, "SQL", 12, 0.4, 0.3),
        FunnelStep(None, "Won", 9, 0.75, 0.225),
    ),
    lost=(LostAt(2, "MQL", 5), LostAt(None, None, 1)),
    won_stage_defined=True,
)


def shown(language: str, key: str, report, span: Span | None = Span.LAST_MONTH):  # type: ignore[no-untyped-def]
    with I18N.context(), I18N.use_locale(language):
        return render(key, report, span)


def test_the_funnel_summary_tells_cohort_wins_losses_and_the_weakest_step_in_english():
    rendered = shown("en", "fun", FUNNEL)
    assert rendered.caption.splitlines() == [
        "📊 <b>Funnel</b> · Last month (01/03/2025 – 31/03/2025)",
        "40 contacts got their first stage in this period.",
        "Won: 9 (22%) · lost now: 6",
        "Weakest step: SQL (40% of the step before)",
    ]
    assert rendered.chart.startswith(PNG)


def test_the_funnel_summary_in_vietnamese():
    caption = shown("vi", "fun", FUNNEL).caption
    assert caption.splitlines() == [
        "📊 <b>Phễu</b> · Tháng trước (01/03/2025 – 31/03/2025)",
        "40 liên hệ được xếp giai đoạn lần đầu trong kỳ này.",
        "Thắng: 9 (22%) · đang thua: 6",
        "Bước yếu nhất: SQL (40% so với bước trước)",
    ]


def test_a_typed_period_is_shown_by_its_dates():
    caption = shown("en", "fun", FUNNEL, span=None).caption
    assert caption.splitlines()[0] == "📊 <b>Funnel</b> · 01/03/2025 – 31/03/2025"


def test_the_snapshot_sums_stages_by_category_and_says_the_period_does_not_apply():
    snapshot = Snapshot(
        (
            StageCount(1, "Khách <mới>", Category.OPEN, False, 7),
            StageCount(2, "SQL", Category.OPEN, False, 3),
            StageCount(3, "Customer", Category.WON, False, 4),
            StageCount(4, "Bad fit", Category.LOST, False, 2),
        ),
        without_stage=1,
        won_stage_defined=True,
    )
    assert shown("vi", "snap", snapshot).caption.splitlines() == [
        "📊 <b>Hiện trạng</b> · hiện tại (không theo khoảng thời gian)",
        "17 liên hệ: 10 đang mở, 4 thắng, 2 thua, 1 chưa có giai đoạn.",
    ]


def test_conversion_in_vietnamese_and_the_warning_without_a_won_stage():
    conversion = Conversion(
        MARCH, 50, 30, 8, 0, 4, 0.0, 1.0, (ConversionPoint(date(2025, 3, 1), 0, 4, 0.0),), False
    )
    assert shown("vi", "conv", conversion, Span.THIS_MONTH).caption.splitlines() == [
        "📊 <b>Chuyển đổi</b> · Tháng này (01/03/2025 – 31/03/2025)",
        "Mới 50 · đang mở 30 · chưa chăm sóc 8",
        "Thắng 0 · loại 4",
        "Tỷ lệ thắng 0% · tỷ lệ thua 100%",
        "⚠️ Chưa có giai đoạn thắng nào, nên chưa có chuyển đổi để tính.",
    ]


def test_the_leaderboard_lists_six_people_and_escapes_names():
    rows = tuple(
        LeaderRow(n, f"<Agent {n}>", 10 - n, 9 - n, 1, (9 - n) / (10 - n), None, None)
        for n in range(8)
    )
    caption = shown("en", "lead", Leaderboard(MARCH, rows, True)).caption
    lines = caption.splitlines()
    assert lines[1] == "1. &lt;Agent 0&gt;: 9 won, 1 lost, 10 new · win rate 90%"
    assert len(lines) == 1 + 6 + 1
    assert lines[-1] == "…and 2 more on the chart."


def test_an_empty_period_still_gets_a_chart_and_says_so():
    empty = Leaderboard(MARCH, (), True)
    rendered = shown("en", "lead", empty)
    assert rendered.caption.splitlines()[1] == "Nothing happened in this period."
    assert rendered.chart.startswith(PNG)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01/03/2025 – 31/03/2025", (date(2025, 3, 1), date(2025, 3, 31))),
        ("1/3/2025-31/3/2025", (date(2025, 3, 1), date(2025, 3, 31))),
        ("2025-03-01 — 2025-03-31", (date(2025, 3, 1), date(2025, 3, 31))),
        ("2025-03-01..2025-03-31", (date(2025, 3, 1), date(2025, 3, 31))),
        ("01.03.2025 đến 31.03.2025", (date(2025, 3, 1), date(2025, 3, 31))),
        ("  15/03/2025 ", (date(2025, 3, 15), date(2025, 3, 15))),
        ("31/03/2025 - 01/03/2025", (date(2025, 3, 31), date(2025, 3, 1))),  # order: caller's
    ],
)
def test_typed_periods_are_read(text, expected):
    assert parse_range(text) == expected


@pytest.mark.parametrize(
    "text", ["", "March", "31/02/2025", "01/03 – 31/03", "01/03/2025 – 31/03/2025 – 1/4/2025"]
)
def test_unreadable_periods_are_none(text):
    assert parse_range(text) is None
