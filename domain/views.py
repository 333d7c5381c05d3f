"""Saved views (Callio's smart views): a named filter over contacts, written the way people type
it — `stage=SQL tag=VIP idle=7 source=Zalo owner="Nguyễn Thị Mai" category=open
created=2026-01-01..2026-03-31 field:Ngành="Bán lẻ"` — and kept per user or shared."""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

from domain.errors import InvalidInput
from domain.model import Category

KEYS = ("stage", "category", "owner", "source", "tag", "idle", "created", "field:<name>")


@dataclass(frozen=True, slots=True)
class ViewFilter:
    stages: tuple[str, ...] = ()  # names; "none" means contacts without a stage
    category: Category | None = None
    owner: str | None = None
    source: str | None = None
    tag: str | None = None
    idle_days: int | None = None
    created_from: date | None = None
    created_to: date | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = list(self.stages)
        data["category"] = self.category.value if self.category else None
        for key in ("created_from", "created_to"):
            data[key] = data[key].isoformat() if data[key] else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ViewFilter:
        return cls(
            stages=tuple(data.get("stages") or ()),
            category=Category(data["category"]) if data.get("category") else None,
            owner=data.get("owner"),
            source=data.get("source"),
            tag=data.get("tag"),
            idle_days=data.get("idle_days"),
            created_from=date.fromisoformat(data["created_from"])
            if data.get("created_from")
            else None,
            created_to=date.fromisoformat(data["created_to"]) if data.get("created_to") else None,
            fields=dict(data.get("fields") or {}),
        )

    def describe(self) -> str:
        parts = [f"stage={','.join(self.stages)}"] if self.stages else []
        for key, value in (
            ("category", self.category.value if self.category else None),
            ("owner", self.owner),
            ("source", self.source),
            ("tag", self.tag),
            ("idle", self.idle_days),
        ):
            if value is not None:
                parts.append(f"{key}={value}")
        if self.created_from or self.created_to:
            parts.append(f"created={self.created_from or ''}..{self.created_to or ''}")
        parts += [f"field:{key}={value}" for key, value in self.fields.items()]
        return " ".join(parts) or "all contacts"


def parse_filter(text: str) -> ViewFilter:
    """Read `key=value` words (quote values with spaces). Unknown keys and bad values are refused
    naming the key."""
    try:
        words = shlex.split(text)
    except ValueError:
        raise InvalidInput("A quote is not closed.") from None
    values: dict[str, Any] = {"fields": {}}
    for word in words:
        key, equals, value = word.partition("=")
        key = key.strip().lower()
        value = value.strip()
        if not equals or not value:
            raise InvalidInput(f"{word!r} is not key=value; keys: {', '.join(KEYS)}.")
        if key == "stage":
            values["stages"] = tuple(part.strip() for part in value.split(",") if part.strip())
        elif key == "category":
            try:
                values["category"] = Category(value.lower())
            except ValueError:
                raise InvalidInput("category is open, won or lost.") from None
        elif key in ("owner", "source", "tag"):
            values[key] = value
        elif key == "idle":
            if not value.isdigit() or not 1 <= int(value) <= 3650:
                raise InvalidInput("idle is a number of days from 1 to 3650.")
            values["idle_days"] = int(value)
        elif key == "created":
            values["created_from"], values["created_to"] = _period(value)
        elif key.startswith("field:") and len(key) > len("field:"):
            values["fields"][word.partition("=")[0][len("field:") :].strip()] = value
        else:
            raise InvalidInput(f"Unknown key {key!r}; keys: {', '.join(KEYS)}.")
    return ViewFilter(**values)


def _period(value: str) -> tuple[date | None, date | None]:
    start, dots, end = value.partition("..")
    try:
        first = date.fromisoformat(start) if start else None
        last = date.fromisoformat(end) if end else None if dots else first
    except ValueError:
        raise InvalidInput("created is YYYY-MM-DD, or a period YYYY-MM-DD..YYYY-MM-DD.") from None
    if first and last and last < first:
        raise InvalidInput("created: the period ends before it starts.")
    return first, last
