"""The `stagekeeper` command line as DESIGN §4 specifies it, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from tests.hostile import PEOPLE, workbook


class Cli:
    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self.capsys = capsys

    def __call__(self, *args: str) -> tuple[int, str, str]:
        code = main([*args, "--database-url", self.url])
        out, err = self.capsys.readouterr()
        return code, out, err

    def json(self, *args: str) -> Any:
        code, out, err = self(*args, "--json")
        assert code == 0, err
        return json.loads(out)

    def refused(self, *args: str) -> str:
        """Runs a command that must be refused; returns its one-line reason."""
        code, out, err = self(*args)
        assert code == 1, out
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        return lines[0]


@pytest.fixture
def cli(database_url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(database_url, capsys)


@pytest.fixture
def amis(cli: Cli) -> Cli:
    assert cli("init", "--template", "amis")[0] == 0
    return cli


def test_init_with_the_amis_template_lists_seven_stages_with_categories(amis: Cli) -> None:
    stages = amis.json("stages", "list")
    assert [(s["name"], s["category"]) for s in stages] == [
        ("Lead", "open"),
        ("MQL", "open"),
        ("SQL", "open"),
        ("Customer", "won"),
        ("Loyal customer", "won"),
        ("Unsubscribed", "lost"),
        ("Disqualified", "lost"),
    ]


def test_init_twice_keeps_the_stages_and_adds_admins(amis: Cli) -> None:
    result = amis.json("init", "--template", "outbound", "--admin", "4242")
    assert result["stages_created"] == 0
    assert len(result["stages"]) == 7
    assert result["admins"] == [4242]


def test_a_stage_created_as_won_that_should_be_lost_is_fixed_in_one_command(amis: Cli) -> None:
    """The respond.io repair that takes seven steps through Excel there."""
    amis("stages", "add", "Lost lead", "--category", "won")
    amis("contacts", "add", "An", "--phone", "0912345678", "--stage", "Lost lead")
    fixed = amis.json("stages", "recategorize", "Lost lead", "--category", "lost")
    assert fixed["category"] == "lost"
    stages = {s["name"]: s for s in amis.json("stages", "list")}
    assert stages["Lost lead"]["category"] == "lost"
    assert stages["Lost lead"]["contacts"] == 1
    assert [s["category"] for s in stages.values()][-1] == "lost"


def test_deleting_a_stage_with_contacts_without_a_target_is_refused_and_changes_nothing(
    amis: Cli,
) -> None:
    amis("contacts", "add", "An", "--phone", "0912345678", "--stage", "MQL")
    before = amis.json("stages", "list")
    reason = amis.refused("stages", "delete", "MQL")
    assert "--reassign-to" in reason
    assert "--no-stage" in reason
    assert amis.json("stages", "list") == before


def test_deleting_with_reassign_to_moves_every_contact_and_records_each_move(amis: Cli) -> None:
    for n in range(3):
        amis("contacts", "add", f"Lead {n}", "--external-id", f"X{n}", "--stage", "MQL")
    result = amis.json("stages", "delete", "MQL", "--reassign-to", "SQL")
    assert result["moved"] == 3
    stages = {s["name"]: s["contacts"] for s in amis.json("stages", "list")}
    assert stages == {
        "Lead": 0,
        "SQL": 3,
        "Customer": 0,
        "Loyal customer": 0,
        "Unsubscribed": 0,
        "Disqualified": 0,
    }
    moved = amis.json("contacts", "find", "lead")
    assert {c["stage"]["name"] for c in moved} == {"SQL"}
    assert {c["version"] for c in moved} == {2}


def test_deleting_the_last_won_stage_says_to_make_another_stage_won_first(amis: Cli) -> None:
    assert amis("stages", "delete", "Loyal customer")[0] == 0
    reason = amis.refused("stages", "delete", "Customer")
    assert "make another stage won first" in reason
    assert "last won stage" in amis.refused(
        "stages", "recategorize", "Customer", "--category", "open"
    )


def test_stage_commands_add_rename_move_and_refuse_duplicates(amis: Cli) -> None:
    amis("stages", "add", "Demo", "--category", "open", "--position", "2")
    amis("stages", "rename", "demo", "Demo booked")
    amis("stages", "move", "Demo booked", "--position", "4")
    opened = [s["name"] for s in amis.json("stages", "list") if s["category"] == "open"]
    assert opened == ["Lead", "MQL", "SQL", "Demo booked"]
    assert "already exists" in amis.refused("stages", "add", "DEMO BOOKED", "--category", "lost")
    assert "no stage called" in amis.refused("stages", "rename", "Nope", "Other")
    code, _, err = amis("stages", "add", "X", "--category", "maybe")
    assert code == 2
    assert "open, won or lost" in err


def test_contacts_add_normalizes_and_refuses_duplicates_naming_the_existing_one(amis: Cli) -> None:
    added = amis.json(
        "contacts",
        "add",
        "Nguyễn Văn An",
        "--phone",
        "0912 345 678",
        "--email",
        "AN@X.VN",
        "--company",
        "Đại Phát",
        "--source",
        "Zalo",
        "--stage",
        "Lead",
    )
    assert (added["phone"], added["email"], added["stage"]["name"]) == (
        "+84912345678",
        "an@x.vn",
        "Lead",
    )
    code, out, err = amis("contacts", "add", "Someone", "--phone", "+84 912-345-678", "--json")
    assert code == 1
    assert json.loads(out)["existing_id"] == added["id"]
    assert f"#{added['id']}" in err
    assert len(amis.json("contacts", "find", "0912345678")) == 1


def test_contacts_find_ignores_diacritics_and_phone_format(amis: Cli) -> None:
    amis("contacts", "add", "Nguyễn Văn An", "--phone", "+84912345678")
    assert [c["name"] for c in amis.json("contacts", "find", "nguyen van an")] == ["Nguyễn Văn An"]
    assert [c["name"] for c in amis.json("contacts", "find", "0912 345 678")] == ["Nguyễn Văn An"]
    assert amis("contacts", "find", "nobody")[1].strip() == "No contact matches."


def test_set_stage_applies_the_rules_and_is_a_no_op_on_the_same_stage(amis: Cli) -> None:
    amis("contacts", "add", "Chi", "--email", "chi@x.vn", "--stage", "Lead")
    assert amis.json("contacts", "set-stage", "chi@x.vn", "MQL")["changed"] is True
    assert amis.json("contacts", "set-stage", "CHI@x.vn", "mql")["changed"] is False
    assert "--reason" in amis.refused("contacts", "set-stage", "chi@x.vn", "Disqualified")
    moved = amis.json("contacts", "set-stage", "chi@x.vn", "Disqualified", "--reason", "Price")
    assert moved["stage"]["category"] == "lost"
    assert "reason" in amis.refused("contacts", "set-stage", "chi@x.vn", "Lead")
    assert (
        amis.json("contacts", "set-stage", "chi@x.vn", "Lead", "--reason", "Came back")["stage"][
            "name"
        ]
        == "Lead"
    )
    assert "No contact" in amis.refused("contacts", "set-stage", "nobody@x.vn", "Lead")


def test_a_database_without_schema_is_explained(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["stages", "list", "--database-url", f"sqlite+aiosqlite:///{tmp_path}/new.db"])
    assert code == 1
    assert "stagekeeper init" in capsys.readouterr().err


def test_python_dash_m_bot_is_the_same_command(tmp_path: object) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/m.db"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "init",
            "--template",
            "inbound",
            "--database-url",
            url,
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["stages_created"] == 5


def test_the_webhook_refuses_to_start_without_a_secret(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BOT_TOKEN", "123:abc")
    monkeypatch.setenv("WEBHOOK_URL", "https://crm.example.vn")
    monkeypatch.delenv("WEBHOOK_SECRET", raising=False)
    url = f"sqlite+aiosqlite:///{tmp_path}/w.db"
    assert main(["init", "--database-url", url]) == 0
    assert main(["webhook", "--database-url", url]) == 1
    assert "WEBHOOK_SECRET" in capsys.readouterr().err


def test_run_refuses_to_start_without_a_token(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    url = f"sqlite+aiosqlite:///{tmp_path}/r.db"
    assert main(["init", "--database-url", url]) == 0
    assert main(["run", "--database-url", url]) == 1
    assert "BOT_TOKEN" in capsys.readouterr().err


def test_operations_lists_a_stage_deletion_and_undo_reverts_it(amis: Cli) -> None:
    amis("contacts", "add", "An", "--phone", "0912345678", "--stage", "MQL")
    deleted = amis.json("stages", "delete", "MQL", "--reassign-to", "SQL")
    [operation] = amis.json("operations")
    assert (operation["id"], operation["kind"], operation["contacts"]) == (
        deleted["operation_id"],
        "reassign",
        1,
    )
    undone = amis.json("undo", str(operation["id"]))
    assert undone["reverted"] == 1
    [an] = amis.json("contacts", "find", "0912345678")
    assert an["stage"]["name"] == "MQL"
    assert "already" in amis.refused("undo", str(operation["id"]))
    assert "no operation" in amis.refused("undo", "999")


def test_an_import_on_a_terminal_shows_its_progress_on_one_line_unless_json(
    amis: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("name,phone\nAn,0912345678\nBình,0912345679\n", encoding="utf-8")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, out, err = amis("import", str(path), "--dry-run")
    assert code == 0
    assert "Importing: 2 rows read and applied; rolling back (dry run)…" in err
    assert "Would create 2" in out
    code, out, err = amis("import", str(path), "--json")
    assert code == 0
    assert "Importing" not in err
    assert json.loads(out)["created"] == 2


def test_an_import_reads_a_column_named_like_a_custom_field_without_map(
    amis: Cli, tmp_path: Path
) -> None:
    assert amis("fields", "add", "Ngân sách", "--kind", "number")[0] == 0
    assert amis("fields", "add", "Source")[0] == 0
    path = tmp_path / "contacts.csv"
    path.write_text("phone,ngân_sách,source\n0912345678,15000000,Zalo\n", encoding="utf-8")
    code, out, _err = amis("import", str(path), "--dry-run")
    assert code == 0
    assert "Read as custom fields: ngân_sách → Ngân sách" in out
    assert "Column 'source' was read as the built-in source, not as the custom field" in out
    report = amis.json("import", str(path))
    assert report["field_columns"] == {"ngân_sách": "Ngân sách"}
    assert report["shadowed_columns"] == [
        {"column": "source", "field": "source", "custom_field": "Source"}
    ]
    [an] = amis.json("contacts", "find", "0912345678")
    assert an["custom_fields"] == {"Ngân sách": "15000000"}
    assert an["source"] == "Zalo"


def test_an_import_says_which_sheet_it_read_and_refuses_a_file_past_the_row_limit(
    amis: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "khach-hang.xlsx"
    path.write_bytes(workbook(PEOPLE, "Đã mất"))
    code, out, _err = amis("import", str(path), "--dry-run")
    assert code == 0
    assert "Would create 3" in out
    assert "Read the first sheet, 'Khách hàng'; not read: Đã mất." in out
    assert amis.json("import", str(path), "--dry-run")["other_sheets"] == ["Đã mất"]

    monkeypatch.setenv("IMPORT_MAX_ROWS", "3")
    reason = amis.refused("import", str(path))
    assert "more than 3 rows, the most an import takes; split it" in reason
    assert amis.json("contacts", "find", "0912345678") == []


def test_an_api_key_is_shown_once_listed_by_prefix_and_revoked(cli: Cli) -> None:
    assert cli("init")[0] == 0
    created = cli.json("apikeys", "create", "website")
    secret = created["secret"]
    assert secret.startswith(created["prefix"])
    code, listing, _ = cli("apikeys", "list")
    assert code == 0
    assert "website" in listing
    assert created["prefix"] in listing
    assert secret not in listing
    assert "exists; revoke it first" in cli.refused("apikeys", "create", "Website")
    assert cli.json("apikeys", "revoke", "website")["revoked_at"] is not None
    assert "no key called 'website'" in cli.refused("apikeys", "revoke", "website")
