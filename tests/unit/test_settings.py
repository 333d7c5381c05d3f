from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_explained_in_env_example() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    documented = {name.lower() for name in re.findall(r"^([A-Z_]+)=", example, re.MULTILINE)}
    assert documented == set(Settings.model_fields)


def test_lists_are_read_from_comma_separated_text() -> None:
    settings = Settings(_env_file=None, admin_ids="11, 22", lost_reasons="Giá, Khác")  # type: ignore[call-arg]
    assert settings.admin_ids == [11, 22]
    assert settings.policy.lost_reasons == ("Giá", "Khác")


@pytest.mark.parametrize(
    ("field", "value"), [("timezone", "Mars/Olympus"), ("default_phone_region", "XX")]
)
def test_a_wrong_setting_is_refused_naming_it(field: str, value: str) -> None:
    with pytest.raises(ValidationError, match=field):
        Settings(_env_file=None, **{field: value})  # type: ignore[arg-type]


def test_the_bot_token_is_kept_secret() -> None:
    settings = Settings(_env_file=None, bot_token="123:hush-hush")  # type: ignore[call-arg]
    assert "hush-hush" not in repr(settings)
    assert "hush-hush" not in str(settings.model_dump())


def test_new_leads_go_to_a_team_in_turn_and_to_fixed_owners_by_source() -> None:
    settings = Settings(
        _env_file=None, leads_team=" north ", lead_owners="Website=Lan; Facebook=2003;"
    )  # type: ignore[call-arg]
    assert settings.routing.team == " north "
    assert settings.routing.owner_for("facebook") == "2003"
    assert settings.routing.owner_for("Zalo") is None


@pytest.mark.parametrize("owners", ["Website", "=Lan", "Website="])
def test_a_source_without_an_owner_is_refused(owners: str) -> None:
    with pytest.raises(ValidationError, match="SOURCE=OWNER"):
        Settings(_env_file=None, lead_owners=owners)  # type: ignore[call-arg]
