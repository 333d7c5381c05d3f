"""The periods the chat offers (today, 7 and 30 days, this and last month, this quarter) and
typed ones, in the organisation's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from domain.reports import (
    Period,
    PeriodOrder,
    PeriodTooLong,
    Span,
    custom_period,
    span_period,
)
from domain.services.reports import ReportService

VN = ZoneInfo("Asia/Ho_Chi_Minh")


def days(period: Period) -> tuple[str, str]:
    return period.first.isoformat(), period.last.isoformat()


@pytest.mark.parametrize(
    ("span", "today", "expected"),
    [
        (Span.TODAY, date(2025, 3, 1), ("2025-03-01", "2025-03-01")),
        (Span.WEEK, date(2025, 3, 3), ("2025-02-25", "2025-03-03")),
        (Span.DAYS_30, date(2025, 3, 1), ("2025-01-31", "2025-03-01")),
        (Span.THIS_MONTH, date(2025, 3, 17), ("2025-03-01", "2025-03-17")),
        (Span.THIS_MONTH, date(2025, 3, 1), ("2025-03-01", "2025-03-01")),
        (Span.LAST_MONTH, date(2025, 3, 17), ("2025-02-01", "2025-02-28")),
        (Span.LAST_MONTH, date(2024, 3, 31), ("2024-02-01", "2024-02-29")),  # leap year
        (Span.LAST_MONTH, date(2025, 1, 1), ("2024-12-01", "2024-12-31")),  # across the year
        (Span.THIS_QUARTER, date(2025, 3, 31), ("2025-01-01", "2025-03-31")),
        (Span.THIS_QUARTER, date(2025, 4, 1), ("2025-04-01", "2025-04-01")),
        (Span.THIS_QUARTER, date(2025, 8, 15), ("2025-07-01", "2025-08-15")),
        (Span.THIS_QUARTER, date(2025, 12, 31), ("2025-10-01", "2025-12-31")),
    ],
)
def test_named_periods_run_between_the_expected_local_days(span, today, expected):
    assert days(span_period(span, today)) == expected


def test_every_named_period_ends_today_except_last_month():
    today = date(2025, 5, 20)
    for span in Span:
        period = span_period(span, today)
        assert period.first <= period.last
        assert (period.last == today) is (span is not Span.LAST_MONTH)


def no_storage():  # the period needs no unit of work
    raise AssertionError("periods read nothing")


def test_today_is_the_organisations_day_not_utcs():
    # 31 March, 18:00 UTC is already 1 April, 01:00 in Hồ Chí Minh City.
    evening = datetime(2025, 3, 31, 18, tzinfo=UTC)
    reports = ReportService(no_storage, VN, clock=lambda: evening)  # type: ignore[arg-type]
    assert days(reports.span(Span.TODAY)) == ("2025-04-01", "2025-04-01")
    assert days(reports.span(Span.THIS_MONTH)) == ("2025-04-01", "2025-04-01")
    assert days(reports.span(Span.LAST_MONTH)) == ("2025-03-01", "2025-03-31")
    assert days(reports.span(Span.THIS_QUARTER)) == ("2025-04-01", "2025-04-01")
    utc = ReportService(no_storage, ZoneInfo("UTC"), clock=lambda: evening)  # type: ignore[arg-type]
    assert days(utc.span(Span.THIS_QUARTER)) == ("2025-01-01", "2025-03-31")


def test_a_month_starts_at_local_midnight():
    start, end = span_period(Span.LAST_MONTH, date(2025, 4, 10)).bounds(VN)
    assert start == datetime(2025, 2, 28, 17, tzinfo=UTC)  # 1 March 00:00 at UTC+7
    assert end == datetime(2025, 3, 31, 17, tzinfo=UTC)


def test_a_typed_period_may_be_one_day_or_up_to_three_years():
    assert days(custom_period(date(2025, 3, 5), date(2025, 3, 5))) == ("2025-03-05", "2025-03-05")
    assert custom_period(date(2022, 1, 1), date(2024, 12, 31)).last == date(2024, 12, 31)


def test_a_typed_period_that_ends_before_it_starts_is_refused():
    with pytest.raises(PeriodOrder):
        custom_period(date(2025, 3, 5), date(2025, 3, 4))


def test_a_typed_period_over_three_years_is_refused():
    with pytest.raises(PeriodTooLong):
        custom_period(date(2020, 1, 1), date(2025, 1, 1))
