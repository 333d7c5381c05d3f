from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from domain.access import SYSTEM
from domain.model import Role, User
from domain.services.contacts import ContactService
from domain.services.stages import StageService
from domain.transitions import Policy
from tests.unit.fakes import FakeDatabase


class Clock:
    """A clock tests move by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def db() -> FakeDatabase:
    return FakeDatabase()


@pytest.fixture
def policy() -> Policy:
    return Policy()


@pytest.fixture
def stages(db: FakeDatabase, policy: Policy, clock: Clock) -> StageService:
    return StageService(db.uow, policy, clock)


@pytest.fixture
def contacts(db: FakeDatabase, policy: Policy, clock: Clock) -> ContactService:
    return ContactService(db.uow, default_region="VN", policy=policy, clock=clock)


@pytest.fixture
async def amis(stages: StageService) -> None:
    await stages.apply_template(SYSTEM, "amis")


class People:
    def __init__(self, admin: User, manager: User, agent: User, teammate: User, outsider: User):
        self.admin = admin
        self.manager = manager
        self.agent = agent
        self.teammate = teammate
        self.outsider = outsider


@pytest.fixture
async def people(db: FakeDatabase) -> People:
    async with db.uow() as uow:
        made = [
            await uow.users.add(User(None, name, role, telegram_id=tid, team=team))
            for name, role, tid, team in [
                ("Ada Admin", Role.ADMIN, 1, None),
                ("Minh Manager", Role.MANAGER, 2, "north"),
                ("Lan Agent", Role.AGENT, 3, "north"),
                ("Tuấn Teammate", Role.AGENT, 4, "north"),
                ("Otto Outsider", Role.AGENT, 5, "south"),
            ]
        ]
        await uow.commit()
    return People(*made)
