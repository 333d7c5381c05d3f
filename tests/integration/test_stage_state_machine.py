"""Random sequences of stage administration and stage changes, through the services on SQLite.

After every step: every contact is in exactly one live stage or in none; once a won stage has
existed one still does; each contact's stage is the target of its latest history row; and a
refused operation changed nothing."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from sqlalchemy import text

from bot.container import Services, build_services
from bot.settings import Settings
from domain.access import SYSTEM
from domain.errors import DomainError
from domain.model import Category, Role, Source, User
from domain.services.contacts import ContactDraft

NAMES = st.sampled_from(
    [
        "Lead",
        "MQL",
        "SQL",
        "Customer",
        "Loyal customer",
        "Unsubscribed",
        "Disqualified",
        "Demo",
        "Trial",
        "Khách hàng",
        "KHACH HANG",
        "Won big",
    ]
)
CATEGORIES = st.sampled_from(list(Category))
REASONS = st.sampled_from(["Price", "Came back", None, "Other"])


class StageMachine(RuleBasedStateMachine):
    template: Path  # set by the test below

    @initialize(template=st.sampled_from(["amis", "outbound", "none"]))
    def start(self, template: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.directory = Path(self.template).parent / f"run-{id(self)}"
        self.directory.mkdir()
        shutil.copy(self.template, self.directory / "db.sqlite")
        url = f"sqlite+aiosqlite:///{self.directory / 'db.sqlite'}"
        self.services: Services = build_services(Settings(database_url=url, _env_file=None))  # type: ignore[call-arg]
        self.run(self.services.stages.apply_template(SYSTEM, template))
        self.manager = self.run(self.services.users.add(SYSTEM, "Mai", Role.MANAGER, team="t"))
        self.agent = self.run(self.services.users.add(SYSTEM, "Lan", Role.AGENT, team="t"))
        self.won_existed = template != "none"
        self.contact_ids: list[int] = []

    def teardown(self) -> None:
        if hasattr(self, "services"):
            self.run(self.services.close())
            self.loop.close()
            shutil.rmtree(self.directory, ignore_errors=True)

    def run(self, coroutine: Any) -> Any:
        return self.loop.run_until_complete(coroutine)

    def attempt(self, coroutine: Any) -> None:
        """Run an operation; if the domain refuses it, the database must be as it was."""
        before = self.snapshot()
        try:
            self.run(coroutine)
        except DomainError:
            assert self.snapshot() == before, "a refused operation changed the database"

    def snapshot(self) -> list[Any]:
        async def read() -> list[Any]:
            async with self.services.engine.connect() as connection:
                rows = []
                for table in ("stages", "contacts", "stage_changes", "operations"):
                    result = await connection.execute(text(f"SELECT * FROM {table} ORDER BY id"))
                    rows.append([tuple(row) for row in result])
                return rows

        return self.run(read())  # type: ignore[no-any-return]

    def stage_names(self) -> list[str]:
        return [s.stage.name for s in self.run(self.services.stages.summaries())]

    @rule(name=NAMES, category=CATEGORIES, position=st.none() | st.integers(1, 5))
    def add_stage(self, name: str, category: Category, position: int | None) -> None:
        self.attempt(self.services.stages.add(SYSTEM, name, category, position))

    @rule(data=st.data(), new_name=NAMES)
    def rename_stage(self, data: st.DataObject, new_name: str) -> None:
        if names := self.stage_names():
            self.attempt(
                self.services.stages.rename(SYSTEM, data.draw(st.sampled_from(names)), new_name)
            )

    @rule(data=st.data(), category=CATEGORIES)
    def recategorize_stage(self, data: st.DataObject, category: Category) -> None:
        if names := self.stage_names():
            name = data.draw(st.sampled_from(names))
            self.attempt(self.services.stages.recategorize(SYSTEM, name, category))

    @rule(data=st.data(), position=st.integers(1, 6))
    def move_stage(self, data: st.DataObject, position: int) -> None:
        if names := self.stage_names():
            self.attempt(
                self.services.stages.move(SYSTEM, data.draw(st.sampled_from(names)), position)
            )

    @rule(data=st.data(), no_stage=st.booleans(), reason=REASONS)
    def delete_stage(self, data: st.DataObject, no_stage: bool, reason: str | None) -> None:
        if names := self.stage_names():
            name = data.draw(st.sampled_from(names))
            target = None if no_stage else data.draw(st.sampled_from([*names, None]))
            self.attempt(
                self.services.stages.delete(
                    SYSTEM, name, reassign_to=target, no_stage=no_stage, reason=reason
                )
            )

    @rule(data=st.data(), reason=REASONS)
    def add_contact(self, data: st.DataObject, reason: str | None) -> None:
        stage = data.draw(st.sampled_from([*self.stage_names(), None, "Nope"]))
        draft = ContactDraft(
            name=f"Contact {len(self.contact_ids)}", stage=stage, lost_reason=reason
        )
        try:
            contact = self.run(self.services.contacts.add(SYSTEM, draft))
        except DomainError:
            return
        self.contact_ids.append(contact.id)

    @rule(
        data=st.data(),
        reason=REASONS,
        who=st.sampled_from(["agent", "manager", "system"]),
        source=st.sampled_from([Source.MANUAL, Source.AUTOMATION, Source.BULK]),
    )
    def set_stage(self, data: st.DataObject, reason: str | None, who: str, source: Source) -> None:
        if not self.contact_ids:
            return
        contact_id = data.draw(st.sampled_from(self.contact_ids))
        summaries = self.run(self.services.stages.summaries())
        if not summaries:
            return
        stage = data.draw(st.sampled_from([s.stage for s in summaries]))
        actor: User = {"agent": self.agent, "manager": self.manager, "system": SYSTEM}[who]
        self.attempt(
            self.services.contacts.set_stage(
                actor, contact_id, stage.id, reason=reason, source=source
            )
        )

    @invariant()
    def every_contact_is_in_one_live_stage_or_none(self) -> None:
        if not hasattr(self, "services"):
            return
        stages, contacts, _, _ = self.snapshot()
        live = {row[0] for row in stages if row[5] is None}  # archived_at is the sixth column
        for contact in contacts:
            stage_id = contact[8]
            assert stage_id is None or stage_id in live

    @invariant()
    def a_won_stage_remains_once_one_existed(self) -> None:
        if not hasattr(self, "services"):
            return
        categories = [s.stage.category for s in self.run(self.services.stages.summaries())]
        self.won_existed = self.won_existed or Category.WON in categories
        if self.won_existed:
            assert Category.WON in categories

    @invariant()
    def the_current_stage_is_the_target_of_the_latest_history_row(self) -> None:
        if not hasattr(self, "services"):
            return
        for contact_id in self.contact_ids:
            card = self.run(self.services.contacts.get(SYSTEM, contact_id))
            history = self.run(self.services.contacts.history(SYSTEM, contact_id))
            latest = history[-1].to_stage_id if history else None
            assert card.contact.stage_id == latest


def test_stage_rules_hold_under_random_operations(sqlite_template: Path) -> None:
    StageMachine.template = sqlite_template
    runner = StageMachine.TestCase
    runner.settings = settings(
        max_examples=30,
        stateful_step_count=30,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    runner().runTest()


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
