"""The report definitions of docs/reports.md, on the reference implementation: small histories
whose right answer can be read off by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest

from domain.access import SYSTEM
from domain.errors import InvalidInput
from domain.model import (
    Activity,
    ActivityKind,
    Category,
    Contact,
    Role,
    Source,
    Stage,
    StageChange,
    User,
)
from domain.report_reference import ReferenceReports, ReportData
from domain.reports import Period, median
from domain.stages import TEMPLATES

VN = ZoneInfo("Asia/Ho_Chi_Minh")
MARCH = Period(date(2025, 3, 1), date(2025, 3, 31))


def local(day: int, hour: int = 10, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=VN).astimezone(UTC)


class History:
    """An organisation with the `amis` stages, a manager with one agent in her team, one agent
    in another team, and their contacts' histories."""

    def __init__(self) -> None:
        self.stages = [
            Stage(n, name, category, n) for n, (name, category) in enumerate(TEMPLATES["amis"], 1)
        ]
        self.manager = User(100, "Mai", Role.MANAGER, team="north")
        self.agent = User(101, "An", Role.AGENT, team="north")
        self.other = User(102, "Bảo", Role.AGENT, team="south")
        self.contacts: list[Contact] = []
        self.rows: list[StageChange] = []
        self.activities: list[Activity] = []

    def stage(self, name: str | None) -> int | None:
        return next(s.id for s in self.stages if s.name == name) if name else None

    def contact(
        self, created: datetime, *, owner: User | None = None, source: str | None = None
    ) -> int:
        contact_id = len(self.contacts) + 1
        owner_id = (owner or self.agent).id
        self.contacts.append(Contact(contact_id, None, owner_id=owner_id, source=source))
        self.contacts[-1].created_at = created
        return contact_id

    def move(
        self, contact_id: int, to: str | None, at: datetime, source: Source = Source.MANUAL
    ) -> None:
        contact = self.contacts[contact_id - 1]
        self.rows.append(
            StageChange(
                contact_id,
                contact.stage_id,
                self.stage(to),
                at,
                None,
                source,
                id=len(self.rows) + 1,
            )
        )
        contact.stage_id = self.stage(to)

    def touch(self, contact_id: int, at: datetime) -> None:
        self.activities.append(Activity(None, contact_id, ActivityKind.CALL, "…", at))

    def reports(self) -> ReferenceReports:
        people = [self.manager, self.agent, self.other]
        data = ReportData(self.stages, people, self.contacts, self.rows, self.activities)
        return ReferenceReports(data, VN)


def steps(history: History, period: Period = MARCH) -> dict[str, int]:
    return {s.name: s.reached for s in history.reports().funnel(SYSTEM, period).steps}


def test_the_funnel_counts_a_skipped_stage_as_passed() -> None:
    history = History()
    lead = history.contact(local(2))
    history.move(lead, "Lead", local(2))
    history.move(lead, "SQL", local(3))
    assert steps(history) == {"Lead": 1, "MQL": 1, "SQL": 1, "Won": 0}


def test_a_reopened_lead_keeps_every_step_it_reached() -> None:
    history = History()
    lost_then_won = history.contact(local(2))
    history.move(lost_then_won, "Lead", local(2))
    history.move(lost_then_won, "Unsubscribed", local(3))
    history.move(lost_then_won, "MQL", local(4))
    history.move(lost_then_won, "Customer", local(5))
    won_then_lost = history.contact(local(2))
    history.move(won_then_lost, "MQL", local(2))
    history.move(won_then_lost, "Customer", local(3))
    history.move(won_then_lost, "Lead", local(4))
    history.move(won_then_lost, "Disqualified", local(5))
    funnel = history.reports().funnel(SYSTEM, MARCH)
    assert {s.name: s.reached for s in funnel.steps} == {"Lead": 2, "MQL": 2, "SQL": 2, "Won": 2}
    assert [(row.name, row.contacts) for row in funnel.lost] == [("Lead", 1)]


def test_the_cohort_is_who_first_got_a_stage_in_the_period_and_conversions_are_rates() -> None:
    history = History()
    february = history.contact(local(20, month=2))
    history.move(february, "Lead", local(20, month=2))
    history.move(february, "Customer", local(2))
    late_start = history.contact(local(25, month=2))  # created without a stage
    history.move(late_start, "Lead", local(1))
    for _ in range(3):
        history.move(history.contact(local(4)), "MQL", local(4))
    funnel = history.reports().funnel(SYSTEM, MARCH)
    assert funnel.cohort == 4
    assert [
        (s.name, s.reached, s.step_conversion, s.cumulative_conversion) for s in funnel.steps
    ] == [
        ("Lead", 4, 1.0, 1.0),
        ("MQL", 3, 0.75, 0.75),
        ("SQL", 0, 0.0, 0.0),
        ("Won", 0, None, 0.0),
    ]


def test_a_loss_is_placed_at_the_last_open_stage_by_time_even_when_recorded_out_of_order() -> None:
    history = History()
    lead = history.contact(local(1))
    history.move(lead, "Lead", local(1))
    history.move(lead, "SQL", local(9))
    history.move(lead, "MQL", local(5), Source.IMPORT)  # backdated, recorded last
    history.move(lead, "Unsubscribed", local(10))
    straight = history.contact(local(2))
    history.move(straight, "Disqualified", local(2))
    lost = history.reports().funnel(SYSTEM, MARCH).lost
    assert [(row.name, row.contacts) for row in lost] == [("SQL", 1), (None, 1)]


def test_recategorizing_a_stage_corrects_past_periods_at_once() -> None:
    history = History()
    lead = history.contact(local(2))
    history.move(lead, "Lead", local(2))
    history.move(lead, "SQL", local(3))
    before = history.reports().conversion(SYSTEM, MARCH)
    history.stages[2].category = Category.WON  # SQL was a won stage all along
    after = history.reports().conversion(SYSTEM, MARCH)
    assert (before.converted, after.converted) == (0, 1)
    assert steps(history) == {"Lead": 1, "MQL": 1, "Won": 1}


def test_an_archived_open_stage_is_no_step_and_its_contacts_count_where_they_were_moved() -> None:
    history = History()
    lead = history.contact(local(2))
    history.move(lead, "MQL", local(2))
    history.move(lead, "SQL", local(3), Source.REASSIGN)
    history.stages[1].archived_at = local(3)
    parked = history.contact(local(2))
    history.move(parked, "MQL", local(2))
    history.move(parked, None, local(3), Source.REASSIGN)
    assert steps(history) == {"Lead": 1, "SQL": 1, "Won": 0}
    snapshot = history.reports().snapshot(SYSTEM)
    assert "MQL" not in [s.name for s in snapshot.stages]
    assert snapshot.without_stage == 1


def test_conversions_count_entries_into_the_category_and_not_moves_within_it() -> None:
    history = History()
    loyal = history.contact(local(2))
    history.move(loyal, "Customer", local(2))
    history.move(loyal, "Loyal customer", local(20))
    twice = history.contact(local(2))
    history.move(twice, "Lead", local(2))
    history.move(twice, "Customer", local(3))
    history.move(twice, "Lead", local(4))
    history.move(twice, "Customer", local(5))
    history.move(history.contact(local(2)), "Unsubscribed", local(6))
    conversion = history.reports().conversion(SYSTEM, Period(date(2025, 3, 3), date(2025, 3, 31)))
    assert (conversion.converted, conversion.junk) == (1, 1)
    assert (conversion.win_rate, conversion.failure_rate) == (0.5, 0.5)
    assert [(p.start.day, p.converted) for p in conversion.over_time if p.converted] == [
        (3, 1),
        (5, 1),
    ]


def test_idle_contacts_had_nothing_after_their_creation_and_active_ones_are_open_now() -> None:
    history = History()
    untouched = history.contact(local(2))
    history.move(untouched, "Lead", local(2))  # the stage given at creation
    called = history.contact(local(2))
    history.touch(called, local(3))
    moved = history.contact(local(2))
    history.move(moved, "Unsubscribed", local(4))
    conversion = history.reports().conversion(SYSTEM, MARCH)
    assert (conversion.new, conversion.idle, conversion.active) == (3, 1, 1)


def test_periods_are_local_days_with_both_ends_included() -> None:
    history = History()
    history.contact(datetime(2025, 3, 1, 0, 0, tzinfo=VN).astimezone(UTC), source="Zalo")
    history.contact(datetime(2025, 2, 28, 23, 59, 59, tzinfo=VN).astimezone(UTC))
    history.contact(datetime(2025, 3, 31, 23, 59, 59, 999999, tzinfo=VN).astimezone(UTC))
    history.contact(datetime(2025, 4, 1, tzinfo=VN).astimezone(UTC))
    sources = history.reports().sources(SYSTEM, MARCH)
    assert sources.new == 2
    assert [(s.source, s.contacts) for s in sources.sources] == [("Zalo", 1), (None, 1)]


def test_the_trend_is_daily_up_to_62_days_and_monthly_beyond() -> None:
    assert len(Period(date(2025, 1, 1), date(2025, 3, 3)).buckets(VN)) == 62
    monthly = Period(date(2025, 1, 15), date(2025, 3, 20)).buckets(VN)
    assert [b.start for b in monthly] == [date(2025, 1, 15), date(2025, 2, 1), date(2025, 3, 1)]
    assert monthly[0].start_at == datetime(2025, 1, 15, tzinfo=VN).astimezone(UTC)
    assert monthly[-1].end_at == datetime(2025, 3, 21, tzinfo=VN).astimezone(UTC)


def test_the_default_period_is_the_30_days_ending_today_and_odd_periods_are_refused() -> None:
    today = date(2025, 3, 31)
    assert Period.of(None, None, today) == Period(date(2025, 3, 2), today)
    assert Period.of(date(2025, 3, 20), None, today).first == date(2025, 3, 20)
    with pytest.raises(InvalidInput, match="after it ends"):
        Period.of(date(2025, 4, 1), None, today)
    with pytest.raises(InvalidInput, match="10 years"):
        Period.of(date(2000, 1, 1), None, today)


def test_the_median_of_an_even_count_is_the_mean_of_the_middle_two() -> None:
    assert (median([]), median([5]), median([9, 1, 4, 2])) == (None, 5.0, 3.0)


def test_the_leaderboard_gives_each_owner_days_to_win_and_the_first_response() -> None:
    history = History()
    for days, response in ((2, Source.MANUAL), (4, Source.MANUAL), (6, Source.IMPORT)):
        won = history.contact(local(1, hour=8))
        history.move(won, "Lead", local(1, hour=8))  # at creation: no response
        history.move(won, "MQL", local(1, hour=8 + days), response)
        history.move(won, "Customer", local(1 + days, hour=8), Source.BULK)
    lost = history.contact(local(3), owner=history.other)
    history.touch(lost, local(3, hour=12))
    history.move(lost, "Unsubscribed", local(4))
    board = history.reports().leaderboard(SYSTEM, MARCH)
    assert [
        (r.name, r.new, r.converted, r.lost, r.win_rate, r.median_days_to_win) for r in board.rows
    ] == [("An", 3, 3, 0, 1.0, 4.0), ("Bảo", 1, 0, 1, 0.0, None)]
    assert [r.median_first_response_hours for r in board.rows] == [3.0, 2.0]


def test_time_in_stage_counts_the_stays_that_ended_in_the_period() -> None:
    history = History()
    for days in (1, 2, 6):
        lead = history.contact(local(1))
        history.move(lead, "Lead", local(1))
        history.move(lead, "MQL", local(1 + days))
    still = history.contact(local(1))
    history.move(still, "Lead", local(1))
    ended_before = history.contact(local(1, month=2))
    history.move(ended_before, "Lead", local(1, month=2))
    history.move(ended_before, "MQL", local(10, month=2))
    times = {t.name: t for t in history.reports().time_in_stage(SYSTEM, MARCH).stages}
    assert (times["Lead"].stays, times["Lead"].mean_days, times["Lead"].median_days) == (
        3,
        3.0,
        2.0,
    )
    assert (times["MQL"].stays, times["MQL"].median_days) == (0, None)


def test_each_person_sees_the_reports_of_their_scope() -> None:
    history = History()
    for owner in (history.manager, history.agent, history.other):
        history.contact(local(2), owner=owner)
    history.contacts.append(Contact(99, "nobody's", created_at=local(2)))
    reports = history.reports()
    assert [reports.sources(person, MARCH).new for person in (SYSTEM, history.manager)] == [4, 2]
    assert [reports.sources(person, MARCH).new for person in (history.agent, history.other)] == [
        1,
        1,
    ]


def test_reports_say_when_no_won_stage_is_defined() -> None:
    history = History()
    for stage in history.stages:
        if stage.category is Category.WON:
            stage.category = Category.OPEN
    assert not history.reports().funnel(SYSTEM, MARCH).won_stage_defined
    assert not history.reports().snapshot(SYSTEM).won_stage_defined
    assert history.reports().conversion(SYSTEM, MARCH).converted == 0


def test_the_summary_counts_moves_but_not_the_stage_a_contact_was_created_in() -> None:
    history = History()
    created_in_lead = history.contact(local(2))
    history.move(created_in_lead, "Lead", local(2))  # its creation: counted as new, not moved
    history.move(created_in_lead, "MQL", local(3))
    history.move(created_in_lead, "Customer", local(4))
    staged_later = history.contact(local(20, month=2))
    history.move(staged_later, "Lead", local(5))  # a first stage given later is a move
    history.move(staged_later, None, local(6))  # so is taking the stage away
    lost = history.contact(local(3), owner=history.other)
    history.move(lost, "Lead", local(3))
    history.move(lost, "Disqualified", local(7))
    history.move(lost, "MQL", local(2, month=4))  # after the period
    summary = history.reports().summary(SYSTEM, MARCH)
    assert (summary.new, summary.moves, summary.converted, summary.lost) == (2, 5, 1, 1)
    assert not summary.quiet
    team = history.reports().summary(history.manager, MARCH)
    assert (team.new, team.moves, team.converted, team.lost) == (1, 4, 1, 0)
    march_first = history.reports().summary(SYSTEM, Period(date(2025, 3, 1), date(2025, 3, 1)))
    assert march_first.quiet
