"""The database's reports equal the reference definitions (docs/reports.md) on random histories —
skipped stages, reopened leads, backdated and out-of-order rows, moves to no stage, bulk moves and
their undo, owner changes, archived, reordered and recategorized stages, times on period
boundaries, three time zones — on SQLite and PostgreSQL; and the report tables always equal a
recount from scratch."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bot.container import build_services
from bot.settings import Settings
from domain.access import SYSTEM
from domain.model import (
    Activity,
    ActivityKind,
    Category,
    Contact,
    Operation,
    Role,
    Source,
    Stage,
    StageChange,
    User,
    utcnow,
)
from domain.ports import BulkMove, UnitOfWork
from domain.reports import Period
from storage.db import make_sessionmaker
from storage.uow import SqlUnitOfWork
from tests.integration.reporting import (
    assert_report_tables_in_step,
    assert_reports_match_reference,
    empty_database,
)

EXAMPLES = int(os.environ.get("REPORT_EXAMPLES", "40"))
FIRST_DAY = date(2025, 2, 20)  # weeks before New York's change to summer time
DAYS = 75
PIPELINE = (
    ("Lead", Category.OPEN),
    ("MQL", Category.OPEN),
    ("SQL", Category.OPEN),
    ("Customer", Category.WON),
    ("Loyal", Category.WON),
    ("Unsubscribed", Category.LOST),
    ("Disqualified", Category.LOST),
)
PEOPLE = (
    ("Manager", Role.MANAGER, "north"),
    ("Agent North", Role.AGENT, "north"),
    ("Other North", Role.AGENT, "north"),
    ("Agent South", Role.AGENT, "south"),
)

Moment = tuple[int, int, int]  # local day number, second of the day, microsecond


@dataclass(frozen=True)
class NewContact:
    owner: int | None
    source: str | None
    at: Moment
    stage: int | None


@dataclass(frozen=True)
class Move:
    contact: int
    stage: int | None
    at: Moment  # any time: before the contact's latest change too
    source: Source


@dataclass(frozen=True)
class Touch:
    contact: int
    at: Moment


@dataclass(frozen=True)
class Reassign:
    contact: int
    owner: int | None


@dataclass(frozen=True)
class Bulk:
    source_stage: int | None
    target_stage: int | None
    at: Moment
    undoable: bool


@dataclass(frozen=True)
class Undo:
    pass


@dataclass(frozen=True)
class ChangeStage:
    stage: int
    category: Category | None = None
    archive: bool = False
    position: int | None = None


stage = st.sampled_from([None, *range(len(PIPELINE))])
owner = st.sampled_from([None, *range(len(PEOPLE))])
contact = st.integers(0, 5)  # few contacts, long histories
# Often exactly local midnight (a period boundary), or a microsecond before one.
moment = st.tuples(
    st.integers(0, DAYS),
    st.one_of(st.just(0), st.just(86_399), st.integers(0, 86_399)),
    st.one_of(st.just(0), st.just(999_999), st.integers(0, 999_999)),
)
new_contact = st.builds(NewContact, owner, st.sampled_from([None, "Zalo", "Web"]), moment, stage)
change_stage = st.one_of(
    st.builds(ChangeStage, st.integers(0, 6), category=st.sampled_from(list(Category))),
    st.builds(ChangeStage, st.integers(0, 6), archive=st.just(True)),
    st.builds(ChangeStage, st.integers(0, 6), position=st.integers(1, 4)),
)
# Mostly moves, so that contacts get long histories.
operation = st.sampled_from(
    [st.builds(Move, contact, stage, moment, st.sampled_from(list(Source)))] * 10
    + [new_contact] * 2
    + [st.builds(Touch, contact, moment)] * 2
    + [
        st.builds(Reassign, contact, owner),
        st.builds(Bulk, stage, stage, moment, st.booleans()),
        st.builds(Undo),
        change_stage,
    ]
).flatmap(lambda chosen: chosen)


@dataclass(frozen=True)
class Scenario:
    operations: list[object]
    first: date
    days: int
    zone: str


scenarios = st.builds(
    Scenario,
    operations=st.tuples(
        st.lists(new_contact, min_size=1, max_size=6), st.lists(operation, min_size=10, max_size=80)
    ).map(lambda parts: parts[0] + parts[1]),
    first=st.dates(FIRST_DAY - timedelta(days=3), FIRST_DAY + timedelta(days=DAYS)),
    days=st.integers(0, 80),  # over 62 days the trend is by month
    zone=st.sampled_from(["Asia/Ho_Chi_Minh", "America/New_York", "Asia/Kathmandu"]),
)


class Player:
    """Applies a scenario through the repositories, which keep the report tables."""

    def __init__(self, uow: UnitOfWork, zone: ZoneInfo) -> None:
        self.uow = uow
        self.zone = zone
        self.stages: list[Stage] = []
        self.people: list[User] = []
        self.contacts: list[int] = []
        self.operations: list[int] = []

    async def setup(self) -> None:
        for n, (name, category) in enumerate(PIPELINE, start=1):
            self.stages.append(await self.uow.stages.add(Stage(None, name, category, n)))
        for name, role, team in PEOPLE:
            self.people.append(await self.uow.users.add(User(None, name, role, team=team)))

    async def play(self, op: object) -> None:
        uow = self.uow
        match op:
            case NewContact():
                created = self.at(op.at)
                new = Contact(
                    None,
                    f"Contact {len(self.contacts)}",
                    owner_id=self.person(op.owner),
                    source=op.source,
                    stage_id=self.stage(op.stage),
                    created_at=created,
                )
                added = await uow.contacts.add(new, None)
                assert added.id is not None
                self.contacts.append(added.id)
                if op.stage is not None:
                    first = StageChange(added.id, None, new.stage_id, created, None, Source.MANUAL)
                    await uow.history.add(first)
            case Move() if self.contacts:
                found = await self.contact(op.contact)
                moved = await self.update(found, stage_id=self.stage(op.stage))
                change = StageChange(
                    moved.id or 0, found.stage_id, moved.stage_id, self.at(op.at), None, op.source
                )
                await uow.history.add(change)
            case Touch() if self.contacts:
                target = self.contacts[op.contact % len(self.contacts)]
                await uow.activities.add(
                    Activity(None, target, ActivityKind.CALL, "…", self.at(op.at))
                )
            case Reassign() if self.contacts:
                await self.update(await self.contact(op.contact), owner_id=self.person(op.owner))
            case Bulk():
                operation_id = None
                if op.undoable:
                    operation_id = (await uow.operations.add(Operation(None, "bulk", None, ""))).id
                    assert operation_id is not None
                    self.operations.append(operation_id)
                await uow.contacts.move_stage_contents(
                    BulkMove(
                        self.stage(op.source_stage),
                        self.stage(op.target_stage),
                        self.at(op.at),
                        None,
                        Source.BULK,
                        None,
                        operation_id,
                    )
                )
            case Undo() if self.operations:
                await uow.operations.revert(self.operations.pop(), by_user_id=None)
            case ChangeStage():
                changed = self.stages[op.stage]
                changed.category = op.category or changed.category
                changed.position = op.position or changed.position
                changed.archived_at = utcnow() if op.archive else changed.archived_at
                await uow.stages.update(changed)

    def at(self, local: Moment) -> datetime:
        day, second, micro = local
        midnight = datetime.combine(FIRST_DAY + timedelta(days=day), time(), self.zone)
        return (midnight + timedelta(seconds=second, microseconds=micro)).astimezone(UTC)

    def stage(self, n: int | None) -> int | None:
        return None if n is None else self.stages[n].id

    def person(self, n: int | None) -> int | None:
        return None if n is None else self.people[n].id

    async def contact(self, n: int) -> Contact:
        found = await self.uow.contacts.get(self.contacts[n % len(self.contacts)])
        assert found is not None
        return found

    async def update(self, contact: Contact, **changes: object) -> Contact:
        changed = replace(contact, version=contact.version + 1, **changes)  # type: ignore[arg-type]
        assert await self.uow.contacts.update(
            changed, expected_version=contact.version, changed=frozenset(changes)
        )
        return changed


@settings(
    max_examples=EXAMPLES,
    # REPORT_NO_SHRINK=1 reports the first failure as found (quicker when checking the test).
    phases=[Phase.generate] if os.environ.get("REPORT_NO_SHRINK") else list(Phase),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(scenario=scenarios)
async def test_the_database_reports_equal_the_reference_definitions(
    database_url: str, scenario: Scenario
) -> None:
    services = build_services(
        Settings(database_url=database_url, timezone=scenario.zone, _env_file=None)  # type: ignore[call-arg]
    )
    try:
        await empty_database(services)
        async with SqlUnitOfWork(make_sessionmaker(services.engine)) as uow:
            player = Player(uow, services.settings.zone)
            await player.setup()
            for op in scenario.operations:
                await player.play(op)
            await uow.commit()
        manager, agent = player.people[:2]
        period = Period(scenario.first, scenario.first + timedelta(days=scenario.days))
        await assert_reports_match_reference(services, [SYSTEM, manager, agent], period)
        await assert_report_tables_in_step(services)
    finally:
        await services.close()
