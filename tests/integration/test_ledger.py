"""The update ledger (storage/ledger.py): the units of work an update commits are its steps,
each counted in its own transaction; a delivery after a crash commits only the steps not done."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

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


async def test_a_delivery_after_a_crash_redoes_only_the_steps_not_committed(
    services: Services,
) -> None:
    actor = await admin(services)
    ledger = UpdateLedger(make_sessionmaker(services.engine))
    first = await ledger.open(BOT, 7)
    assert not first.seen
    with ledger.handling(first):
        await services.contacts.add(actor, ContactDraft(name="Khách Một"))
    # ...the worker died here, before its second step and before answering.

    again = await ledger.open(BOT, 7)
    assert (again.done, again.answered) == (1, False)
    with ledger.handling(again):
        await services.contacts.add(actor, ContactDraft(name="Khách Một"))  # rolled back
        await services.contacts.add(actor, ContactDraft(name="Khách Hai"))  # committed
    await ledger.answered(again)

    assert await names(services, actor) == ["Khách Hai", "Khách Một"]
    last = await ledger.open(BOT, 7)
    assert (last.done, last.answered) == (2, True)


async def test_an_update_that_changed_nothing_is_answered_once(services: Services) -> None:
    ledger = UpdateLedger(make_sessionmaker(services.engine))
    delivery = await ledger.open(BOT, 8)
    with ledger.handling(delivery):
        pass
    await ledger.answered(delivery)
    assert (await ledger.open(BOT, 8)).answered
    assert not (await ledger.open(BOT + 1, 8)).seen  # another bot's update of that id


async def test_what_is_written_after_the_handling_is_no_step(services: Services) -> None:
    actor = await admin(services)
    ledger = UpdateLedger(make_sessionmaker(services.engine))
    delivery = await ledger.open(BOT, 9)
    with ledger.handling(delivery):
        pass
    await services.contacts.add(actor, ContactDraft(name="Khách Sau"))
    assert not (await ledger.open(BOT, 9)).seen


async def test_entries_older_than_telegram_keeps_updates_are_forgotten(
    services: Services,
) -> None:
    ledger = UpdateLedger(make_sessionmaker(services.engine))
    for update_id in (1, 2):
        delivery = await ledger.open(BOT, update_id)
        await ledger.answered(delivery)
    async with make_sessionmaker(services.engine)() as session:
        await session.execute(
            update(ProcessedUpdateRow)
            .where(ProcessedUpdateRow.update_id == 1)
            .values(taken_at=utcnow() - timedelta(days=3))
        )
        await session.commit()
    assert await ledger.forget_old() == 1
    assert not (await ledger.open(BOT, 1)).seen
    assert (await ledger.open(BOT, 2)).answered
