"""The update ledger (storage/ledger.py): the units of work an update commits are its steps,
each counted in its own transaction; a delivery after a crash commits only the steps not done."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from bot.container import Services
from domain.model import User, utcnow
from domain.services.contacts import ContactDraft
from storage.db import make_sessionmaker
from storage.ledger import UpdateLedger
from storage.models import ProcessedUpdateRow

BOT = 42


async def admin(services: Services) -> User:
    await services.users.ensure_admins([1])
    found = await services.users.by_telegram_id(1)
    assert found is not None
    return found


async def names(services: Services, actor: User) -> list[str]:
    return sorted(c.contact.name or "" for c in await services.contacts.find(actor, "khách"))


async def steps_of(services: Services, bot_id: int, update_id: int) -> int | None:
    """The steps the ledger holds for an update; None when it has no row."""
    async with make_sessionmaker(services.engine)() as session:
        return await session.scalar(
            select(ProcessedUpdateRow.steps).where(
                ProcessedUpdateRow.bot_id == bot_id, ProcessedUpdateRow.update_id == update_id
            )
        )


async def test_a_delivery_after_a_crash_redoes_only_the_steps_not_committed(
    services: Services,
) -> None:
    actor = await admin(services)
    ledger = UpdateLedger(make_sessionmaker(services.engine))
    with ledger.handling(BOT, 7) as first:
        await services.contacts.add(actor, ContactDraft(name="Khách Một"))
    assert first.done == 0
    # ...the worker died here, before its second step and before answering.

    with ledger.handling(BOT, 7) as again:
        await services.contacts.add(actor, ContactDraft(name="Khách Một"))  # rolled back
        await services.contacts.add(actor, ContactDraft(name="Khách Hai"))  # committed
    assert again.done == 1

    assert await names(services, actor) == ["Khách Hai", "Khách Một"]
    assert await steps_of(services, BOT, 7) == 2


async def test_an_update_that_changed_nothing_leaves_no_row(services: Services) -> None:
    ledger = UpdateLedger(make_sessionmaker(services.engine))
    with ledger.handling(BOT, 8):
        pass
    assert await steps_of(services, BOT, 8) is None


async def test_another_bots_update_of_the_same_id_is_another_update(services: Services) -> None:
    actor = await admin(services)
    ledger = UpdateLedger(make_sessionmaker(services.engine))
    for bot_id, name in ((BOT, "Khách Một"), (BOT + 1, "Khách Hai")):
        with ledger.handling(bot_id, 5):
            await services.contacts.add(actor, ContactDraft(name=name))
    assert await names(services, actor) == ["Khách Hai", "Khách Một"]


async def test_what_is_written_after_the_handling_is_no_step(services: Services) -> None:
    actor = await admin(services)
    ledger = UpdateLedger(make_sessionmaker(services.engine))
    with ledger.handling(BOT, 9):
        pass
    await services.contacts.add(actor, ContactDraft(name="Khách Sau"))
    assert await steps_of(services, BOT, 9) is None


async def test_entries_older_than_telegram_keeps_updates_are_forgotten(
    services: Services,
) -> None:
    actor = await admin(services)
    ledger = UpdateLedger(make_sessionmaker(services.engine))
    for update_id in (1, 2):
        with ledger.handling(BOT, update_id):
            await services.contacts.add(actor, ContactDraft(name=f"Khách {update_id}"))
    async with make_sessionmaker(services.engine)() as session:
        await session.execute(
            update(ProcessedUpdateRow)
            .where(ProcessedUpdateRow.update_id == 1)
            .values(taken_at=utcnow() - timedelta(days=3))
        )
        await session.commit()
    assert await ledger.forget_old() == 1
    assert await steps_of(services, BOT, 1) is None
    assert await steps_of(services, BOT, 2) == 1
