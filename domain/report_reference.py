"""The reports of docs/reports.md computed the plain way, from lists of stages, people, contacts,
history rows and activities. Slow and obviously right: the tests hold the database
implementation to it."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from itertools import pairwise

from domain.access import Scope
from domain.model import Activity, Category, Contact, Source, Stage, StageChange, User
from domain.reports import (
    Closed,
    Conversion,
    Funnel,
    Leaderboard,
    OwnerFigures,
    Period,
    Snapshot,
    Sources,
    StageBook,
    StayFigures,
    Summary,
    TimeInStage,
    build_conversion,
    build_funnel,
    build_leaderboard,
    build_snapshot,
    build_sources,
    build_time_in_stage,
    epoch_seconds,
    median,
)


@dataclass(frozen=True, slots=True)
class ReportData:
    stages: Sequence[Stage]  # archived ones included
    users: Sequence[User]
    contacts: Sequence[Contact]
    history: Sequence[StageChange]
    activities: Sequence[Activity]


class ReferenceReports:
    def __init__(self, data: ReportData, zone: tzinfo) -> None:
        self._data = data
        self._zone = zone
        self._book = StageBook(data.stages)
        self._users = {u.id: u for u in data.users}
        self._history: dict[int, list[StageChange]] = defaultdict(list)
        for change in sorted(data.history, key=lambda c: (c.at, c.id or 0)):
            self._history[change.contact_id].append(change)
        self._activities: dict[int, list[Activity]] = defaultdict(list)
        for activity in data.activities:
            self._activities[activity.contact_id].append(activity)

    def snapshot(self, actor: User) -> Snapshot:
        return build_snapshot(self._book, Counter(c.stage_id for c in self._visible(actor)))

    def funnel(self, actor: User, period: Period) -> Funnel:
        start, end = period.bounds(self._zone)
        furthest: Counter[int] = Counter()
        lost_at: Counter[int | None] = Counter()
        for contact in self._visible(actor):
            rows = self._rows(contact)
            first = next((r for r in rows if r.to_stage_id is not None), None)
            if first is None or not start <= first.at < end:
                continue
            furthest[max((self._book.step(r.to_stage_id) for r in rows), default=0)] += 1
            if self._book.category(contact.stage_id) is Category.LOST:
                last_open = None
                for row in rows:
                    if self._book.category(row.to_stage_id) is Category.OPEN:
                        last_open = row.to_stage_id
                lost_at[last_open] += 1
        return build_funnel(period, self._book, furthest, lost_at)

    def sources(self, actor: User, period: Period) -> Sources:
        new = self._created_in(actor, period)
        return build_sources(period, Counter(c.source for c in new))

    def conversion(self, actor: User, period: Period) -> Conversion:
        new = self._created_in(actor, period)
        visible = self._visible(actor)
        start, end = period.bounds(self._zone)
        over_time = []
        for bucket in period.buckets(self._zone):
            over_time.append((bucket.start, self._closed(visible, bucket.start_at, bucket.end_at)))
        return build_conversion(
            period,
            self._book,
            new=len(new),
            active=sum(1 for c in visible if self._book.category(c.stage_id) is Category.OPEN),
            idle=sum(1 for c in new if self._idle(c)),
            closed=self._closed(visible, start, end),
            over_time=over_time,
        )

    def leaderboard(self, actor: User, period: Period) -> Leaderboard:
        start, end = period.bounds(self._zone)
        by_owner: dict[int | None, list[Contact]] = defaultdict(list)
        for contact in self._visible(actor):
            by_owner[contact.owner_id].append(contact)
        figures = {}
        for owner_id, contacts in by_owner.items():
            new = [c for c in contacts if start <= c.created_at < end]
            wins = {c.id: self._first_entry(c, Category.WON, start, end) for c in contacts}
            losses = [c for c in contacts if self._first_entry(c, Category.LOST, start, end)]
            to_win = [
                epoch_seconds(at) - epoch_seconds(c.created_at)
                for c in contacts
                if (at := wins[c.id]) is not None
            ]
            responses = [
                epoch_seconds(at) - epoch_seconds(c.created_at)
                for c in new
                if (at := self._first_response(c)) is not None
            ]
            figures[owner_id] = OwnerFigures(
                new=len(new),
                converted=sum(1 for at in wins.values() if at is not None),
                lost=len(losses),
                days_to_win=median(to_win),
                first_response=median(responses),
            )
        names = {u.id: u.name for u in self._data.users if u.id is not None}
        return build_leaderboard(period, self._book, figures, names)

    def time_in_stage(self, actor: User, period: Period) -> TimeInStage:
        start, end = period.bounds(self._zone)
        lengths: dict[int, list[int]] = defaultdict(list)
        for contact in self._visible(actor):
            rows = self._rows(contact)
            for row, following in pairwise(rows):
                if row.to_stage_id is not None and start <= following.at < end:
                    lengths[row.to_stage_id].append(
                        epoch_seconds(following.at) - epoch_seconds(row.at)
                    )
        figures = {
            stage_id: StayFigures(len(values), sum(values), median(values))
            for stage_id, values in lengths.items()
        }
        return build_time_in_stage(period, self._book, figures)

    def summary(self, actor: User, period: Period) -> Summary:
        start, end = period.bounds(self._zone)
        visible = self._visible(actor)
        moves = 0
        for contact in visible:
            for row in self._rows(contact):
                # Times compare as whole seconds (docs/reports.md, "Durations").
                at_creation = row.from_stage_id is None and epoch_seconds(row.at) <= epoch_seconds(
                    contact.created_at
                )
                if start <= row.at < end and not at_creation:
                    moves += 1
        closed = self._closed(visible, start, end)
        return Summary(
            period,
            len(self._created_in(actor, period)),
            moves,
            closed.won,
            closed.lost,
            self._book.won_defined,
        )

    def _visible(self, actor: User) -> list[Contact]:
        scope = Scope.of(actor)
        return [
            c
            for c in self._data.contacts
            if scope.covers(self._users.get(c.owner_id) if c.owner_id is not None else None)
        ]

    def _rows(self, contact: Contact) -> list[StageChange]:
        assert contact.id is not None
        return self._history.get(contact.id, [])

    def _created_in(self, actor: User, period: Period) -> list[Contact]:
        start, end = period.bounds(self._zone)
        return [c for c in self._visible(actor) if start <= c.created_at < end]

    def _idle(self, contact: Contact) -> bool:
        assert contact.id is not None
        return not any(r.at > contact.created_at for r in self._rows(contact)) and not any(
            a.at > contact.created_at for a in self._activities.get(contact.id, [])
        )

    def _first_entry(
        self, contact: Contact, category: Category, start: datetime, end: datetime
    ) -> datetime | None:
        """When the contact first entered `category` (from outside it) within [start, end)."""
        for row in self._rows(contact):
            if (
                start <= row.at < end
                and self._book.category(row.to_stage_id) is category
                and self._book.category(row.from_stage_id) is not category
            ):
                return row.at
        return None

    def _closed(self, contacts: Sequence[Contact], start: datetime, end: datetime) -> Closed:
        return Closed(
            won=sum(1 for c in contacts if self._first_entry(c, Category.WON, start, end)),
            lost=sum(1 for c in contacts if self._first_entry(c, Category.LOST, start, end)),
        )

    def _first_response(self, contact: Contact) -> datetime | None:
        assert contact.id is not None
        moments = [a.at for a in self._activities.get(contact.id, [])] + [
            r.at for r in self._rows(contact) if r.source is Source.MANUAL
        ]
        after = [at for at in moments if at > contact.created_at]
        return min(after) if after else None
