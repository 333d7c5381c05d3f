"""The emulator's method table agrees with the published Bot API description (api.json)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from sandbox.methods import METHODS, TYPE_LIMITS, Limit
from tests.conftest import require

API_JSON = Path(__file__).parents[2].parent / "shared" / "telegram-bot-api" / "api.json"
LIMIT_IN_DESCRIPTION = re.compile(r"(\d+)-(\d+) (characters|bytes)")


@pytest.fixture(scope="module")
def api() -> dict[str, Any]:
    require(API_JSON.exists(), f"the Bot API description is not at {API_JSON} (../shared, on CI)")
    return json.loads(API_JSON.read_text(encoding="utf-8"))


def documented_limit(description: str) -> Limit | None:
    match = LIMIT_IN_DESCRIPTION.search(description)
    if match is None:
        return None
    low, high, unit = match.groups()
    return Limit(int(low), int(high), "bytes" if unit == "bytes" else "characters")


@pytest.mark.parametrize("name", sorted(METHODS))
def test_method_fields_match_the_documentation(api, name):
    assert name in api["methods"], f"{name} is not a Bot API method"
    documented = {field["name"]: field for field in api["methods"][name].get("fields", [])}
    emulated = {field.name: field for field in METHODS[name].fields}

    assert emulated.keys() == documented.keys()
    assert METHODS[name].required_fields == [
        field["name"] for field in api["methods"][name].get("fields", []) if field["required"]
    ]
    for field_name, field in emulated.items():
        assert list(field.types) == documented[field_name]["types"], field_name
        assert field.limit == documented_limit(documented[field_name]["description"]), field_name


@pytest.mark.parametrize(("type_name", "field_name"), sorted(TYPE_LIMITS))
def test_limits_inside_objects_match_the_documentation(api, type_name, field_name):
    fields = {field["name"]: field for field in api["types"][type_name]["fields"]}
    assert TYPE_LIMITS[(type_name, field_name)] == documented_limit(
        fields[field_name]["description"]
    )


def test_the_limits_the_issue_names_are_found_in_the_documentation(api):
    """Guards the parsing above: it must see the limits at all."""
    limits = {
        (name, field.name): field.limit
        for name, method in METHODS.items()
        for field in method.fields
        if field.limit
    }
    assert limits[("sendMessage", "text")] == Limit(1, 4096, "characters")
    assert limits[("sendPhoto", "caption")] == Limit(0, 1024, "characters")
    assert limits[("answerCallbackQuery", "text")] == Limit(0, 200, "characters")
    assert TYPE_LIMITS[("InlineKeyboardButton", "callback_data")] == Limit(1, 64, "bytes")
