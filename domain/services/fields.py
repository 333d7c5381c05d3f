"""Use case: admins declare custom fields (text, number, date, choice); everyone reads them."""

from __future__ import annotations

from collections.abc import Sequence

from domain import fields
from domain.access import require_role
from domain.errors import InvalidInput, NotFound
from domain.model import CustomFieldDef, FieldKind, Role, User
from domain.ports import UnitOfWorkFactory

FIELDS_MAX = 50


class FieldService:
    def __init__(self, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def list(self) -> list[CustomFieldDef]:
        async with self._uow(read_only=True) as uow:
            return await uow.fields.list()

    async def add(
        self, actor: User, name: str, kind: FieldKind, choices: Sequence[str] = ()
    ) -> CustomFieldDef:
        require_role(actor, Role.ADMIN)
        new = fields.definition(name, kind, choices)
        async with self._uow() as uow:
            existing = await uow.fields.list()
            if fields.find(existing, new.name) is not None:
                raise InvalidInput(f"A field called {new.name!r} exists already.")
            if len(existing) >= FIELDS_MAX:
                raise InvalidInput(f"At most {FIELDS_MAX} fields; delete one first.")
            added = await uow.fields.add(new)
            await uow.commit()
        return added

    async def delete(self, actor: User, name: str) -> CustomFieldDef:
        """Forget a definition. Contacts keep their values, shown and exported as text."""
        require_role(actor, Role.ADMIN)
        async with self._uow() as uow:
            field = fields.find(await uow.fields.list(), name)
            if field is None or field.id is None:
                raise NotFound(f"There is no field called {name!r}.")
            await uow.fields.delete(field.id)
            await uow.commit()
        return field
