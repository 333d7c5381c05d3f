"""The demo data of `stagekeeper sandbox --demo` (bot/demo.py), on SQLite and PostgreSQL.

A load takes seconds, so each kind of database is loaded once per module and read back through
the services into plain data (`Loaded`); the tests then look at that data. Determinism: the
SQLite and the PostgreSQL loads, same seed and `now`, must give identical data."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar
from zoneinfo import ZoneInfo

import phonenumbers
import pytest
from phonenumbers import PhoneNumberType

from bot.container import Services, build_services
from bot.demo import DEMO_ADMIN_ID, PEOPLE, DemoSummary, _Planner, load_demo
from bot.settings import Settings
from domain.access import SYSTEM
from domain.errors import InvalidInput
from domain.model import Category, Role
from domain.services.contacts import ContactDraft
from domain.stages import TEMPLATES
from tests.conftest import empty_postgres

NOW = datetime(2025, 6, 2, 9, 30, tzinfo=UTC)
ZONE = ZoneInfo("Asia/Ho_Chi_Minh")
SEARCHES = ("nguyen van an", "0912 345 678", "+84912345678", "trần thị bích")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Change:
    at: datetime
    from_stage: str | None
    to_stage: str | None
    by: str | None
    source: str
    reason: str | None


@dataclass(frozen=True, slots=True)
class Logged:
    at: datetime
    kind: str
    text: str
    by: str | None
    due_at: datetime | None


@dataclass(frozen=True, slots=True)
class Card:
    id: int
    name: str | None
    phone: str | None
    email: str | None
    company: str | None
    source: str | None
    owner: str | None
    owner_role: Role | None
    stage: str | None
    category: Category | None
    value: str | None
    tags: tuple[str, ...]
    created_at: datetime
    stage_entered_at: datetime | None
    last_activity_at: datetime | None
    changes: tuple[Change, ...]  # oldest first
    activities: tuple[Logged, ...]  # oldest first


@dataclass(frozen=True, slots=True)
class Loaded:
    summary: DemoSummary
    people: tuple[tuple[str, Role, str | None, int | None], ...]
    cards: tuple[Card, ...]
    stages: dict[str, Category]
    found: dict[str, list[str | None]]  # SEARCHES → names, as find returns them
    second_load: str  # why loading again was refused

    def card(self, name: str) -> Card:
        return next(c for c in self.cards if c.name == name)


async def _read(services: Services, summary: DemoSummary) -> Loaded:
    users = {u.id: u for u in await services.users.everyone()}
    stages = {s.stage.id: s.stage for s in await services.stages.summaries()}
    cards = []
    for contact_id in range(1, summary.contacts + 1):
        details = await services.contacts.get(SYSTEM, contact_id)
        contact = details.contact
        changes, activities = [], []
        for entry in reversed(await services.contacts.timeline(SYSTEM, contact_id)):
            by = users[entry.by_user_id].name if entry.by_user_id else None
            if entry.stage_change is not None:
                change = entry.stage_change
                changes.append(
                    Change(
                        change.at,
                        stages[change.from_stage_id].name if change.from_stage_id else None,
                        stages[change.to_stage_id].name if change.to_stage_id else None,
                        by,
                        change.source.value,
                        change.reason,
                    )
                )
            elif entry.activity is not None:
                activity = entry.activity
                activities.append(
                    Logged(activity.at, activity.kind.value, activity.text, by, activity.due_at)
                )
        cards.append(
            Card(
                id=contact_id,
                name=contact.name,
                phone=contact.phone,
                email=contact.email,
                company=details.company,
                source=contact.source,
                owner=details.owner.name if details.owner else None,
                owner_role=details.owner.role if details.owner else None,
                stage=details.stage.name if details.stage else None,
                category=details.stage.category if details.stage else None,
                value=str(contact.value) if contact.value is not None else None,
                tags=tuple(contact.tags),
                created_at=contact.created_at,
                stage_entered_at=contact.stage_entered_at,
                last_activity_at=contact.last_activity_at,
                changes=tuple(changes),
                activities=tuple(activities),
            )
        )
    found = {
        query: [d.contact.name for d in await services.contacts.find(SYSTEM, query)]
        for query in SEARCHES
    }
    try:
        await load_demo(services, now=NOW)
    except InvalidInput as refused:
        second_load = refused.message
    else:
        second_load = ""
    return Loaded(
        summary=summary,
        people=tuple((u.name, u.role, u.team, u.telegram_id) for u in users.values()),
        cards=tuple(cards),
        stages={s.name: s.category for s in stages.values()},
        found=found,
        second_load=second_load,
    )


async def _load_and_read(url: str) -> Loaded:
    services = build_services(Settings(database_url=url, _env_file=None))  # type: ignore[call-arg]
    try:
        summary = await load_demo(services, now=NOW)
        return await _read(services, summary)
    finally:
        await services.close()


def _in_thread(work: Callable[[], Awaitable[T]]) -> T:
    """Module fixtures may be set up inside the tests' running event loop: run in a thread."""

    async def run() -> T:
        return await work()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, run()).result()


def _sqlite_copy(template: Path, folder: Path) -> str:
    path = folder / "stagekeeper.db"
    shutil.copy(template, path)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(scope="module")
def sqlite_demo(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Loaded:
    url = _sqlite_copy(sqlite_template, tmp_path_factory.mktemp("demo"))
    return _in_thread(lambda: _load_and_read(url))


@pytest.fixture(scope="module")
def postgres_demo(postgres_url: str) -> Loaded:
    async def fresh() -> Loaded:
        await empty_postgres(postgres_url)
        return await _load_and_read(postgres_url)

    return _in_thread(fresh)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def demo(request: pytest.FixtureRequest) -> Loaded:
    """The demo loaded into an empty database of each kind (once per module), read back."""
    loaded: Loaded = request.getfixturevalue(f"{request.param}_demo")
    return loaded


@pytest.mark.postgres
def test_the_same_seed_and_now_give_identical_data_in_two_databases(
    sqlite_demo: Loaded, postgres_demo: Loaded
) -> None:
    assert sqlite_demo.summary == postgres_demo.summary
    assert sqlite_demo.people == postgres_demo.people
    assert len(sqlite_demo.cards) == len(postgres_demo.cards) == 300
    for mine, theirs in zip(sqlite_demo.cards, postgres_demo.cards, strict=True):
        assert mine == theirs
    assert sqlite_demo.found == postgres_demo.found


def _plan_digest() -> str:
    plans = _Planner(random.Random(7), NOW, ZONE, national=True).plans()
    return hashlib.sha256(repr(plans).encode()).hexdigest()


def test_the_plan_is_the_same_in_another_process_with_another_hash_seed() -> None:
    """Guards against iterating sets, whose order changes from process to process."""
    code = "from tests.integration.test_demo import _plan_digest; print(_plan_digest())"
    hash_seed = "1" if os.environ.get("PYTHONHASHSEED") == "0" else "0"
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONHASHSEED": hash_seed},
        check=True,
    )
    assert run.stdout.strip() == _plan_digest()


def test_phones_are_written_as_people_write_them_and_read_as_vn_numbers() -> None:
    def written(national: bool) -> list[str]:
        plans = _Planner(random.Random(7), NOW, ZONE, national=national).plans()
        return [p.draft.phone for p in plans if p.draft.phone]

    national = written(True)
    for pattern in (r"0\d{3} \d{3} \d{3}", r"\+84 \d{3} \d{3} \d{3}", r"0\d{3}-\d{3}-\d{3}"):
        assert any(re.fullmatch(pattern, phone) for phone in national), pattern
    assert all(phone.startswith("+84") for phone in written(False))  # default region not VN


def test_the_people_have_the_advertised_telegram_ids_roles_and_teams(demo: Loaded) -> None:
    expected = [(p.name, p.role, p.team, p.telegram_id) for p in PEOPLE]
    assert list(demo.people) == expected
    assert list(demo.summary.people) == list(PEOPLE)
    linked = [p.telegram_id for p in PEOPLE if p.telegram_id is not None]
    assert linked == list(range(DEMO_ADMIN_ID, DEMO_ADMIN_ID + len(linked)))
    assert demo.summary.admin.role is Role.ADMIN
    roles = Counter(p.role for p in PEOPLE)
    assert (roles[Role.ADMIN], roles[Role.MANAGER]) == (1, 2)
    assert 6 <= roles[Role.AGENT] <= 7
    teams = {p.team for p in PEOPLE if p.role is not Role.ADMIN}
    assert teams == {"Hà Nội", "Sài Gòn"}
    for team in teams:
        members = [p for p in PEOPLE if p.team == team]
        assert [p.role for p in members].count(Role.MANAGER) == 1
        assert [p.role for p in members].count(Role.AGENT) >= 2
    unlinked = [p for p in PEOPLE if p.telegram_id is None]
    assert [p.role for p in unlinked] == [Role.AGENT]
    described = demo.summary.describe()
    assert str(DEMO_ADMIN_ID) in described
    assert all(p.name in described for p in PEOPLE)


def test_every_contact_is_owned_by_an_agent_and_every_agent_owns_some(demo: Loaded) -> None:
    assert {c.owner_role for c in demo.cards} == {Role.AGENT}
    agents = {p.name for p in PEOPLE if p.role is Role.AGENT}
    owned = Counter(c.owner for c in demo.cards)
    assert set(owned) == agents
    assert min(owned.values()) >= 10


def test_the_amis_stages_are_used_and_every_category_is_represented(demo: Loaded) -> None:
    assert demo.stages == dict(TEMPLATES["amis"])
    assert {c.category for c in demo.cards if c.category} == set(Category)
    counts = {s.name: s.contacts for s in demo.summary.stages}
    assert all(counts[name] > 0 for name in demo.stages), counts
    assert sum(counts.values()) + demo.summary.without_stage == demo.summary.contacts
    expected: Counter[str | None] = Counter(counts)
    expected[None] = demo.summary.without_stage
    assert Counter(c.stage for c in demo.cards) == expected


def test_nguyen_van_an_is_found_by_name_without_diacritics_and_by_phone(demo: Loaded) -> None:
    assert "Nguyễn Văn An" in demo.found["nguyen van an"]
    assert demo.found["0912 345 678"] == ["Nguyễn Văn An"]
    assert demo.found["+84912345678"] == ["Nguyễn Văn An"]
    assert "Trần Thị Bích" in demo.found["trần thị bích"]
    an = demo.card("Nguyễn Văn An")
    assert (an.phone, an.company, an.stage) == ("+84912345678", "Công ty TNHH Minh Phát", "SQL")
    assert any(a.kind == "task" and a.due_at and a.due_at > NOW for a in an.activities)
    assert demo.card("Trần Thị Bích").category is Category.WON


def test_every_current_stage_is_the_target_of_the_latest_history_row(demo: Loaded) -> None:
    for card in demo.cards:
        if card.changes:
            assert card.stage == card.changes[-1].to_stage, card
            assert card.stage_entered_at == card.changes[-1].at, card
        else:
            assert card.stage is None, card


def test_lost_moves_have_reasons_and_reopening_is_a_managers_with_a_reason(
    demo: Loaded,
) -> None:
    lost = [n for n, category in demo.stages.items() if category is Category.LOST]
    closed = [n for n, category in demo.stages.items() if category.closed]
    managers = {p.name for p in PEOPLE if p.role in (Role.MANAGER, Role.ADMIN)}
    reopened = 0
    for card in demo.cards:
        for change in card.changes:
            if change.to_stage in lost:
                assert change.reason, card
            if change.from_stage in closed and demo.stages[change.to_stage or ""] is Category.OPEN:
                assert change.reason, card
                assert change.by in managers, card
                reopened += 1
    assert reopened >= 3
    reasons = Counter(ch.reason for c in demo.cards for ch in c.changes if ch.to_stage in lost)
    assert {"Price", "Competitor", "No response"} <= set(reasons)


def test_histories_are_realistic_skipping_and_winning(demo: Loaded) -> None:
    paths = [tuple(ch.to_stage for ch in c.changes) for c in demo.cards]
    assert any(p[i : i + 2] == ("Lead", "SQL") for p in paths for i in range(len(p)))  # skips
    assert any("Loyal customer" in p for p in paths)
    assert sum(len(p) > 1 for p in paths) >= 100  # many contacts moved on after creation
    sources = Counter(c.source for c in demo.cards)
    assert set(sources) >= {"Facebook", "Zalo", "Website", "Referral", "Trade show", "Cold call"}
    assert sum(c.email is not None for c in demo.cards) >= 50
    assert sum(c.company is not None for c in demo.cards) >= 50
    assert sum(c.value is not None for c in demo.cards) >= 50
    assert sum(bool(c.tags) for c in demo.cards) >= 20
    phones = [phonenumbers.parse(c.phone) for c in demo.cards if c.phone]
    assert len(phones) >= 250
    assert all(number.country_code == 84 for number in phones)
    assert all(phonenumbers.number_type(n) == PhoneNumberType.MOBILE for n in phones)
    assert "import" in {ch.source for c in demo.cards for ch in c.changes}


def test_activities_of_every_kind_some_due_after_now(demo: Loaded) -> None:
    activities = [a for c in demo.cards for a in c.activities]
    assert len(activities) >= 150
    assert sum(bool(c.activities) for c in demo.cards) >= 100
    assert {a.kind for a in activities} == {"note", "call", "email", "meeting", "task"}
    tasks = [a for a in activities if a.kind == "task"]
    assert all(a.due_at is not None for a in tasks)
    assert any(a.due_at and a.due_at > NOW for a in tasks)
    assert any("ệ" in a.text or "ọ" in a.text for a in activities)  # Vietnamese
    assert any(a.text.isascii() for a in activities)  # and English


def test_every_timestamp_lies_in_the_last_ninety_days_and_in_order(demo: Loaded) -> None:
    start = NOW - timedelta(days=91)
    for card in demo.cards:
        assert start <= card.created_at <= NOW, card
        times = [ch.at for ch in card.changes]
        assert times == sorted(times), card
        assert all(card.created_at <= t <= NOW for t in times), card
        logged = [a.at for a in card.activities]
        assert logged == sorted(logged), card
        assert all(card.created_at < t <= NOW for t in logged), card
        # Creation, stage changes and activities all count as activity.
        assert card.last_activity_at == max([card.created_at, *times, *logged]), card
    at_creation = [c for c in demo.cards if c.changes and c.changes[0].at == c.created_at]
    assert len(at_creation) >= 250  # most are created in a stage; the rest get one later
    created = [c.created_at for c in demo.cards]
    assert created == sorted(created)  # ids follow creation, as in real use
    assert created[0] < NOW - timedelta(days=80)
    assert created[-1] > NOW - timedelta(days=3)


def test_loading_twice_is_refused(demo: Loaded) -> None:
    assert "already has 300 contact(s)" in demo.second_load


async def test_a_database_with_contacts_is_refused_and_nothing_is_written(
    services: Services,
) -> None:
    await services.stages.apply_template(SYSTEM, "amis")
    await services.contacts.add(SYSTEM, ContactDraft(name="Khách cũ", phone="0987 000 111"))
    with pytest.raises(InvalidInput, match="already has 1 contact"):
        await load_demo(services, now=NOW)
    assert await services.users.everyone() == []


async def test_other_stages_or_people_on_demo_ids_are_refused(services: Services) -> None:
    await services.users.add(SYSTEM, "Someone", Role.AGENT, telegram_id=1002)
    with pytest.raises(InvalidInput, match="already exists where the demo needs"):
        await load_demo(services, now=NOW)
    await services.stages.apply_template(SYSTEM, "outbound")
    with pytest.raises(InvalidInput, match="needs the 'amis' stages"):
        await load_demo(services, now=NOW)
    assert [u.name for u in await services.users.everyone()] == ["Someone"]


async def test_now_must_be_aware_and_not_in_the_future(services: Services) -> None:
    with pytest.raises(InvalidInput, match="time zone"):
        await load_demo(services, now=datetime(2025, 6, 2, 9, 30))
    with pytest.raises(InvalidInput, match="future"):
        await load_demo(services, now=datetime.now(UTC) + timedelta(days=1))
