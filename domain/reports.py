"""The reports of docs/reports.md: periods, results, and the presentation both implementations
share — the database one (domain.services.reports over storage) and the reference one
(domain.report_reference) that the tests hold it to. Which contacts count is decided separately
by each; only the final arithmetic (rates, medians, units, order) is common."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum

from domain.errors import InvalidInput
from domain.model import Category, Stage
from domain.stages import Pipeline

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
DAY = 86_400
HOUR = 3_600
DEFAULT_DAYS = 30
MAX_DAYS = 3_660
CUSTOM_MAX_DAYS = 3 * 366  # a typed range longer than this is a typo, not a report
DAILY_UP_TO = 62  # longer periods are shown per month over time


def epoch_seconds(moment: datetime) -> int:
    """Whole seconds since 1970, the time truncated to the second (exact, no float rounding)."""
    return (moment - EPOCH) // timedelta(seconds=1)


def middle_mean(low: int, high: int) -> float:
    """A median from its middle values (the same one twice when there is an odd count)."""
    return (low + high) / 2


def median(values: Iterable[int]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    return middle_mean(ordered[(len(ordered) - 1) // 2], ordered[len(ordered) // 2])


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def in_units(seconds: float | None, unit: int) -> float | None:
    return None if seconds is None else seconds / unit


@dataclass(frozen=True, slots=True)
class Bucket:
    """A day or a month of a period, as local dates and as UTC instants [start_at, end_at)."""

    start: date
    start_at: datetime
    end_at: datetime


@dataclass(frozen=True, slots=True)
class Period:
    """Local days `first` to `last`, both included (docs/reports.md, "Period")."""

    first: date
    last: date

    @classmethod
    def of(cls, first: date | None, last: date | None, today: date) -> Period:
        last = last or today
        first = first or last - timedelta(days=DEFAULT_DAYS - 1)
        if first > last:
            raise InvalidInput(f"The period starts ({first}) after it ends ({last}).")
        if (last - first).days >= MAX_DAYS:
            raise InvalidInput("A report period spans at most 10 years.")
        return cls(first, last)

    def bounds(self, zone: tzinfo) -> tuple[datetime, datetime]:
        return _midnight(self.first, zone), _midnight(self.last + timedelta(days=1), zone)

    def buckets(self, zone: tzinfo) -> list[Bucket]:
        starts = [self.first]
        daily = (self.last - self.first).days < DAILY_UP_TO
        while True:
            current = starts[-1]
            if daily:
                following = current + timedelta(days=1)
            else:
                month = date(current.year + current.month // 12, current.month % 12 + 1, 1)
                following = month
            if following > self.last:
                break
            starts.append(following)
        ends = [*starts[1:], self.last + timedelta(days=1)]
        return [
            Bucket(start, _midnight(start, zone), _midnight(end, zone))
            for start, end in zip(starts, ends, strict=True)
        ]

    def to_json(self) -> dict[str, str]:
        return {"from": self.first.isoformat(), "to": self.last.isoformat()}


class Span(StrEnum):
    """Periods named relative to today (local days). The values travel in callback data, so
    they stay short."""

    TODAY = "d"
    WEEK = "7"  # the 7 days ending today
    DAYS_30 = "30"
    THIS_MONTH = "m"  # from the 1st to today
    LAST_MONTH = "lm"  # the whole previous calendar month
    THIS_QUARTER = "q"  # from the quarter's first day to today


def span_period(span: Span, today: date) -> Period:
    """The period `span` names, seen on local day `today`."""
    match span:
        case Span.TODAY:
            return Period(today, today)
        case Span.WEEK:
            return Period(today - timedelta(days=6), today)
        case Span.DAYS_30:
            return Period(today - timedelta(days=DEFAULT_DAYS - 1), today)
        case Span.THIS_MONTH:
            return Period(today.replace(day=1), today)
        case Span.LAST_MONTH:
            last = today.replace(day=1) - timedelta(days=1)
            return Period(last.replace(day=1), last)
        case Span.THIS_QUARTER:
            return Period(date(today.year, (today.month - 1) // 3 * 3 + 1, 1), today)


class PeriodOrder(InvalidInput):
    code = "period_order"


class PeriodTooLong(InvalidInput):
    code = "period_too_long"


def custom_period(first: date, last: date) -> Period:
    """A period typed by someone: it must run forward and span at most three years."""
    if last < first:
        raise PeriodOrder(f"The period ends ({last}) before it starts ({first}).")
    if (last - first).days >= CUSTOM_MAX_DAYS:
        raise PeriodTooLong("A period typed in chat spans at most three years.")
    return Period(first, last)


def _midnight(day: date, zone: tzinfo) -> datetime:
    return datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)


class StageBook:
    """Every stage, archived ones included, with its category as it is now: reports read
    categories and positions when they run."""

    def __init__(self, stages: Iterable[Stage]) -> None:
        every = list(stages)
        self.by_id = {s.id: s for s in every if s.id is not None}
        self.live = Pipeline(every).ordered()
        self.archived = sorted((s for s in every if s.archived), key=Stage.sort_key)
        self.steps = [s for s in self.live if s.category is Category.OPEN]
        self.won_step = len(self.steps) + 1
        self._step = {s.id: n for n, s in enumerate(self.steps, start=1)}
        self.won_defined = any(s.category is Category.WON for s in self.live)

    def category(self, stage_id: int | None) -> Category | None:
        stage = self.by_id.get(stage_id) if stage_id is not None else None
        return stage.category if stage else None

    def ids(self, category: Category) -> tuple[int, ...]:
        return tuple(i for i, s in self.by_id.items() if s.category is category)

    def step(self, stage_id: int | None) -> int:
        """The funnel step entering this stage reaches: a live open stage's place, the Won step
        for any won stage, 0 (none) for the rest."""
        if self.category(stage_id) is Category.WON:
            return self.won_step
        return self._step.get(stage_id, 0)

    def listed(self, counted: Mapping[int, object]) -> list[Stage]:
        """Live stages in display order, then archived ones that have something counted."""
        return [*self.live, *(s for s in self.archived if s.id in counted)]


# Results. Both implementations build these, so the tests compare them with ==.


@dataclass(frozen=True, slots=True)
class StageCount:
    stage_id: int
    name: str
    category: Category
    archived: bool
    contacts: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    stages: tuple[StageCount, ...]
    without_stage: int
    won_stage_defined: bool

    @property
    def total(self) -> int:
        return sum(s.contacts for s in self.stages) + self.without_stage


@dataclass(frozen=True, slots=True)
class FunnelStep:
    stage_id: int | None  # None: the Won step, all won stages together
    name: str
    reached: int
    step_conversion: float | None
    cumulative_conversion: float | None


@dataclass(frozen=True, slots=True)
class LostAt:
    stage_id: int | None  # None: never in an open stage
    name: str | None
    contacts: int


@dataclass(frozen=True, slots=True)
class Funnel:
    period: Period
    cohort: int
    steps: tuple[FunnelStep, ...]
    lost: tuple[LostAt, ...]
    won_stage_defined: bool

    @property
    def lost_total(self) -> int:
        return sum(row.contacts for row in self.lost)


@dataclass(frozen=True, slots=True)
class SourceCount:
    source: str | None
    contacts: int


@dataclass(frozen=True, slots=True)
class Sources:
    period: Period
    new: int
    sources: tuple[SourceCount, ...]


@dataclass(frozen=True, slots=True)
class ConversionPoint:
    start: date
    converted: int
    junk: int
    win_rate: float | None


@dataclass(frozen=True, slots=True)
class Conversion:
    period: Period
    new: int
    active: int
    idle: int
    converted: int
    junk: int
    win_rate: float | None
    failure_rate: float | None
    over_time: tuple[ConversionPoint, ...]
    won_stage_defined: bool


@dataclass(frozen=True, slots=True)
class LeaderRow:
    owner_id: int | None
    name: str
    new: int
    converted: int
    lost: int
    win_rate: float | None
    median_days_to_win: float | None
    median_first_response_hours: float | None


@dataclass(frozen=True, slots=True)
class Leaderboard:
    period: Period
    rows: tuple[LeaderRow, ...]
    won_stage_defined: bool


@dataclass(frozen=True, slots=True)
class Summary:
    """What happened in a period, in four numbers (the morning digest's figures)."""

    period: Period
    new: int
    moves: int
    converted: int
    lost: int
    won_stage_defined: bool

    @property
    def quiet(self) -> bool:
        return not (self.new or self.moves or self.converted or self.lost)


@dataclass(frozen=True, slots=True)
class StageTime:
    stage_id: int
    name: str
    category: Category
    archived: bool
    stays: int
    mean_days: float | None
    median_days: float | None


@dataclass(frozen=True, slots=True)
class TimeInStage:
    period: Period
    stages: tuple[StageTime, ...]


# Assembly from counts. `None` keys stand for "no stage" / "no owner".


Report = Snapshot | Funnel | Sources | Conversion | Leaderboard | TimeInStage


def build_snapshot(book: StageBook, counts: Mapping[int | None, int]) -> Snapshot:
    held = {i: n for i, n in counts.items() if i is not None and n}
    rows = tuple(
        StageCount(_id(s), s.name, s.category, s.archived, counts.get(s.id, 0))
        for s in book.listed(held)
    )
    return Snapshot(rows, counts.get(None, 0), book.won_defined)


def build_funnel(
    period: Period,
    book: StageBook,
    furthest: Mapping[int, int],
    lost_at: Mapping[int | None, int],
) -> Funnel:
    """`furthest`: contacts by the furthest step they reached (0 for none); `lost_at`: the
    lost contacts by the last open stage they were in."""
    cohort = sum(furthest.values())
    steps = []
    before = cohort
    named = [(s.id, s.name) for s in book.steps] + [(None, "Won")]
    for number, (stage_id, name) in enumerate(named, start=1):
        reached = sum(n for step, n in furthest.items() if step >= number)
        steps.append(
            FunnelStep(stage_id, name, reached, ratio(reached, before), ratio(reached, cohort))
        )
        before = reached
    # Live open stages in funnel order, then archived ones, then "no open stage".
    rank = {s.id: n for n, s in enumerate([*book.steps, *book.archived])}
    lost = tuple(
        LostAt(stage_id, book.by_id[stage_id].name if stage_id is not None else None, n)
        for stage_id, n in sorted(
            lost_at.items(), key=lambda kv: rank.get(kv[0], len(rank)) if kv[0] else len(rank)
        )
        if n
    )
    return Funnel(period, cohort, tuple(steps), lost, book.won_defined)


def build_sources(period: Period, counts: Mapping[str | None, int]) -> Sources:
    rows = sorted(
        (SourceCount(source, n) for source, n in counts.items() if n),
        key=lambda row: (-row.contacts, row.source is None, row.source or ""),
    )
    return Sources(period, sum(counts.values()), tuple(rows))


@dataclass(frozen=True, slots=True)
class Closed:
    """Contacts that entered the won and the lost category (in a period, or a bucket of it)."""

    won: int = 0
    lost: int = 0

    def __add__(self, other: Closed) -> Closed:
        return Closed(self.won + other.won, self.lost + other.lost)


def build_conversion(
    period: Period,
    book: StageBook,
    *,
    new: int,
    active: int,
    idle: int,
    closed: Closed,
    over_time: Sequence[tuple[date, Closed]],
) -> Conversion:
    decided = closed.won + closed.lost
    points = tuple(
        ConversionPoint(day, c.won, c.lost, ratio(c.won, c.won + c.lost)) for day, c in over_time
    )
    return Conversion(
        period,
        new,
        active,
        idle,
        closed.won,
        closed.lost,
        ratio(closed.won, decided),
        ratio(closed.lost, decided),
        points,
        book.won_defined,
    )


@dataclass(frozen=True, slots=True)
class OwnerFigures:
    """One owner's figures; medians in seconds."""

    new: int = 0
    converted: int = 0
    lost: int = 0
    days_to_win: float | None = None
    first_response: float | None = None


NO_OWNER = "(no owner)"


def build_leaderboard(
    period: Period,
    book: StageBook,
    figures: Mapping[int | None, OwnerFigures],
    names: Mapping[int, str],
) -> Leaderboard:
    rows = [
        LeaderRow(
            owner_id,
            names.get(owner_id, f"#{owner_id}") if owner_id is not None else NO_OWNER,
            f.new,
            f.converted,
            f.lost,
            ratio(f.converted, f.converted + f.lost),
            in_units(f.days_to_win, DAY),
            in_units(f.first_response, HOUR),
        )
        for owner_id, f in figures.items()
        if f.new or f.converted or f.lost
    ]
    rows.sort(key=lambda r: (-r.converted, -r.new, r.name, r.owner_id or 0))
    return Leaderboard(period, tuple(rows), book.won_defined)


@dataclass(frozen=True, slots=True)
class StayFigures:
    """The stays in one stage that ended in the period: how many, their total and median
    length in seconds."""

    stays: int
    total_seconds: int
    median_seconds: float | None


def build_time_in_stage(
    period: Period, book: StageBook, figures: Mapping[int, StayFigures]
) -> TimeInStage:
    rows = []
    for stage in book.listed({i: f for i, f in figures.items() if f.stays}):
        f = figures.get(_id(stage), StayFigures(0, 0, None))
        mean = f.total_seconds / f.stays if f.stays else None
        rows.append(
            StageTime(
                _id(stage),
                stage.name,
                stage.category,
                stage.archived,
                f.stays,
                in_units(mean, DAY),
                in_units(f.median_seconds, DAY),
            )
        )
    return TimeInStage(period, tuple(rows))


def _id(stage: Stage) -> int:
    assert stage.id is not None, "stored stages have ids"
    return stage.id
