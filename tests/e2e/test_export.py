"""/export through the sandbox, in every bot mode: an agent receives a CSV document
of their own contacts only."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from domain.access import SYSTEM
from domain.model import Role
from domain.services.contacts import ContactDraft
from tests.e2e.conftest import Driver

LIEN, OTTO = 2203, 2204


@pytest.fixture
async def two_agents(driver: Driver) -> None:
    services = driver.services
    await services.stages.apply_template(SYSTEM, "amis")
    lien = await services.users.add(SYSTEM, "Liên", Role.AGENT, team="north", telegram_id=LIEN)
    otto = await services.users.add(SYSTEM, "Otto", Role.AGENT, team="south", telegram_id=OTTO)
    await services.contacts.add(
        lien,
        ContactDraft(name="Nguyễn Văn An", phone="0912 345 678", company="Minh Phát", stage="Lead"),
    )
    await services.contacts.add(
        lien, ContactDraft(name="=HYPERLINK(1)", email="x@evil.vn", stage="MQL")
    )
    await services.contacts.add(otto, ContactDraft(name="Trần Thị Bích", stage="Lead"))
    await driver.user(LIEN, "Liên")
    await driver.user(OTTO, "Otto")


async def download(driver: Driver, document: dict[str, Any]) -> list[dict[str, str]]:
    async with driver.http.get(driver.base_url + document["url"]) as response:
        assert response.status == 200
        raw = await response.read()
    assert raw.startswith(b"\xef\xbb\xbf")
    return list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


@pytest.mark.usefixtures("two_agents")
async def test_an_agent_exports_a_csv_of_their_own_contacts_only(driver: Driver) -> None:
    [sent] = await driver.ask(LIEN, "/export")
    document = sent["document"]
    assert document["file_name"].startswith("stagekeeper-contacts-")
    assert document["file_name"].endswith(".csv")
    assert "Contacts (2)" in sent["caption"]
    rows = await download(driver, document)
    assert [(r["name"], r["phone"], r["owner"]) for r in rows] == [
        ("Nguyễn Văn An", "+84912345678", "Liên"),
        ("'=HYPERLINK(1)", "", "Liên"),
    ]
    assert rows[0]["company"] == "Minh Phát"


@pytest.mark.usefixtures("two_agents")
async def test_export_of_one_stage_and_answers_without_a_file(driver: Driver) -> None:
    [sent] = await driver.ask(LIEN, "/export mql")
    assert "Contacts in MQL (1)" in sent["caption"]
    assert [r["stage"] for r in await download(driver, sent["document"])] == ["MQL"]
    [none] = await driver.ask(OTTO, "/export Customer")
    assert none["document"] is None
    assert "nothing to export" in none["text"]
    [unknown] = await driver.ask(LIEN, "/export Nope")
    assert "no stage called “Nope”" in unknown["text"]
    assert "Lead, MQL" in unknown["text"]
