"""Due dates as people type them: `tomorrow`, `25/12`, `25/12/2026 14:30`, `+3` (days)."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta

DEFAULT_HOUR = time(9, 0)
WORDS = {"today": 0, "hôm nay": 0, "tomorrow": 1, "mai": 1, "ngày mai": 1}
_DATE = re.compile(
    r"^(?P<day>\d{1,2})[/.-](?P<month>\d{1,2})(?:[/.-](?P<year>\d{2,4}))?"
    r"(?:\s+(?P<hour>\d{1,2})[:h](?P<minute>\d{2}))?$"
)


def parse_due(text: str, now: datetime) -> datetime | None:
    """The moment meant, in UTC, read in `now`'s time zone; None when unreadable or past."""
    text = " ".join(text.strip().lower().split())
    local: datetime | None = None
    if text in WORDS:
        local = _at(now, now.date() + timedelta(days=WORDS[text]))
    elif re.fullmatch(r"\+\d{1,3}", text):
        local = _at(now, now.date() + timedelta(days=int(text[1:])))
    elif match := _DATE.match(text):
        year = int(match["year"]) if match["year"] else now.year
        if year < 100:
            year += 2000
        hour = time(int(match["hour"]), int(match["minute"])) if match["hour"] else DEFAULT_HOUR
        try:
            local = now.replace(
                year=year,
                month=int(match["month"]),
                day=int(match["day"]),
                hour=hour.hour,
                minute=hour.minute,
                second=0,
                microsecond=0,
            )
        except ValueError:
            return None
        if not match["year"] and local < now - timedelta(days=1):
            local = local.replace(year=year + 1)  # 05/01 typed in December means next January
    if local is None or local < now - timedelta(minutes=1):
        return None
    return local.astimezone(UTC)


def _at(now: datetime, day: date) -> datetime:
    moment = datetime.combine(day, DEFAULT_HOUR, tzinfo=now.tzinfo)
    return moment if moment > now or moment.date() != now.date() else now + timedelta(hours=1)


# A date as people type it for a report: 31/03/2025 (also with dots or dashes) or 2025-03-31.
_DAY = r"\d{4}-\d{1,2}-\d{1,2}|\d{1,2}[/.-]\d{1,2}[/.-]\d{4}"
_RANGE = re.compile(rf"^(?P<first>{_DAY})(?:\s*(?:–|—|-|~|\.\.|to|đến|至|到)\s*(?P<last>{_DAY}))?$")


def parse_range(text: str) -> tuple[date, date] | None:
    """The first and last day of "DD/MM/YYYY – DD/MM/YYYY" (or ISO dates); one date means that
    day. None when unreadable or not a calendar date; the order is the caller's to check."""
    match = _RANGE.match(" ".join(text.strip().lower().split()))
    if match is None:
        return None
    first = _day(match["first"])
    last = _day(match["last"]) if match["last"] else first
    if first is None or last is None:
        return None
    return first, last


def _day(text: str) -> date | None:
    parts = [int(part) for part in re.split(r"[/.-]", text)]
    year, month, day = parts if re.match(r"\d{4}-", text) else parts[::-1]
    try:
        return date(year, month, day)
    except ValueError:
        return None
