"""The reports (docs/reports.md), within the caller's scope, from the aggregates the database
computes. Reports only read; each runs in one short unit of work."""

from __future__ import annotations

from collections import Counter
from datetime import date
from zoneinfo import ZoneInfo

from domain.access import Scope
from domain.model import Category, User, utcnow
from domain.ports import Clock, Owners, ReportWindow, UnitOfWork, UnitOfWorkFactory
from domain.reports import (
    Conversion,
    Funnel,
    Leaderboard,
    Period,
    Snapshot,
    Sources,
    Span,
    StageBook,
    Summary,
    TimeInStage,
    build_conversion,
    build_funnel,
    build_leaderboard,
    build_snapshot,
    build_sources,
    build_time_in_stage,
    epoch_seconds,
    span_period,
)


class ReportService:
    def __init__(self, uow: UnitOfWorkFactory, zone: ZoneInfo, clock: Clock = utcnow) -> None:
        self._uow = uow
        self._zone = zone
        self._clock = clock

    def in_zone(self, zone: ZoneInfo) -> ReportService:
        """The same reports with days taken in another time zone (a person's digest zone)."""
        return ReportService(self._uow, zone, self._clock)

    def period(self, first: date | None = None, last: date | None = None) -> Period:
        """The period from `first` to `last` (local days, both included); by default the 30 days
        ending today in the organisation's time zone."""
        return Period.of(first, last, self._clock().astimezone(self._zone).date())

    def span(self, span: Span) -> Period:
        """The period `span` names, today being the organisation's local day."""
        return span_period(span, self._clock().astimezone(self._zone).date())

    async def snapshot(self, actor: User) -> Snapshot:
        async with self._uow(read_only=True) as uow:
            book, owners, _ = await self._context(uow, actor)
            counts = await uow.reports.current_stages(owners)
        return build_snapshot(book, counts)

    async def funnel(self, actor: User, period: Period) -> Funnel:
        async with self._uow(read_only=True) as uow:
            book, owners, _ = await self._context(uow, actor)
            groups = await uow.reports.cohort_paths(self._window(owners, period))
        furthest: Counter[int] = Counter()
        lost_at: Counter[int | None] = Counter()
        for group in groups:
            furthest[max((book.step(s) for s in group.path), default=0)] += group.contacts
            if book.category(group.stage_id) is Category.LOST:
                # The path is in order of last entry: its last open stage is the one left last.
                opened = [s for s in group.path if book.category(s) is Category.OPEN]
                lost_at[opened[-1] if opened else None] += group.contacts
        return build_funnel(period, book, furthest, lost_at)

    async def sources(self, actor: User, period: Period) -> Sources:
        async with self._uow(read_only=True) as uow:
            _, owners, _ = await self._context(uow, actor)
            groups = await uow.reports.created_by_source(self._window(owners, period))
        return build_sources(period, {g.source: g.contacts for g in groups})

    async def conversion(self, actor: User, period: Period) -> Conversion:
        buckets = period.buckets(self._zone)
        bounds = [epoch_seconds(b.start_at) for b in buckets] + [epoch_seconds(buckets[-1].end_at)]
        async with self._uow(read_only=True) as uow:
            book, owners, _ = await self._context(uow, actor)
            reports = uow.reports
            window = self._window(owners, period)
            created = await reports.created_by_source(window)
            idle = await reports.idle(window)
            open_now = await reports.current_stages(owners, book.ids(Category.OPEN))
            closed = await reports.closed(owners, bounds)
        return build_conversion(
            period,
            book,
            new=sum(g.contacts for g in created),
            active=sum(open_now.values()),
            idle=idle,
            closed=closed.total,
            over_time=[
                (bucket.start, then) for bucket, then in zip(buckets, closed.buckets, strict=True)
            ],
        )

    async def leaderboard(self, actor: User, period: Period) -> Leaderboard:
        async with self._uow(read_only=True) as uow:
            book, owners, names = await self._context(uow, actor)
            figures = await uow.reports.owner_figures(self._window(owners, period))
        return build_leaderboard(period, book, figures, names)

    async def time_in_stage(self, actor: User, period: Period) -> TimeInStage:
        async with self._uow(read_only=True) as uow:
            book, owners, _ = await self._context(uow, actor)
            figures = await uow.reports.stays(self._window(owners, period), tuple(book.by_id))
        return build_time_in_stage(period, book, figures)

    async def summary(self, actor: User, period: Period) -> Summary:
        """New, moved, converted and lost in the period: the morning digest's figures."""
        async with self._uow(read_only=True) as uow:
            book, owners, _ = await self._context(uow, actor)
            window = self._window(owners, period)
            reports = uow.reports
            created = await reports.created_by_source(window)
            moves = await reports.moves(window)
            closed = await reports.closed(owners, [window.start, window.end])
        new = sum(g.contacts for g in created)
        return Summary(period, new, moves, closed.total.won, closed.total.lost, book.won_defined)

    async def _context(
        self, uow: UnitOfWork, actor: User
    ) -> tuple[StageBook, Owners, dict[int, str]]:
        """The stages as they are now, the owners whose contacts the actor may see (None:
        everyone's, contacts without an owner included), and everyone's names."""
        book = StageBook(await uow.stages.list(include_archived=True))
        people = await uow.users.list()
        scope = Scope.of(actor)
        owners = None
        if not scope.everything:
            owners = tuple(u.id for u in people if u.id is not None and scope.covers(u))
        return book, owners, {u.id: u.name for u in people if u.id is not None}

    def _window(self, owners: Owners, period: Period) -> ReportWindow:
        start, end = period.bounds(self._zone)
        return ReportWindow(owners, epoch_seconds(start), epoch_seconds(end))
