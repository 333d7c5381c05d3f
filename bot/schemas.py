"""JSON shapes shared by the HTTP API and the command line's --json."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from domain.services.contacts import ContactDetails


class StageOut(BaseModel):
    id: int | None
    name: str
    category: Literal["open", "won", "lost"]


class ContactOut(BaseModel):
    model_config = ConfigDict(title="Contact")

    id: int
    name: str | None
    phone: str | None
    email: str | None
    external_id: str | None
    company: str | None
    source: str | None
    owner: str | None
    stage: StageOut | None
    value: str | None
    tags: list[str]
    custom_fields: dict[str, str]
    created_at: str
    stage_entered_at: str | None
    version: int

    @classmethod
    def of(cls, details: ContactDetails) -> ContactOut:
        contact, stage = details.contact, details.stage
        assert contact.id is not None
        return cls(
            id=contact.id,
            name=contact.name,
            phone=contact.phone,
            email=contact.email,
            external_id=contact.external_id,
            company=details.company,
            source=contact.source,
            owner=details.owner.name if details.owner else None,
            stage=StageOut(id=stage.id, name=stage.name, category=stage.category.value)
            if stage
            else None,
            value=str(contact.value) if contact.value is not None else None,
            tags=contact.tags,
            custom_fields=contact.custom_fields,
            created_at=contact.created_at.isoformat(),
            stage_entered_at=contact.stage_entered_at.isoformat()
            if contact.stage_entered_at
            else None,
            version=contact.version,
        )
