"""Ids given out before a bulk insert, and the chunk size of long IN lists."""

from __future__ import annotations

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage import pipeline
from storage.models import ContactRow, StageChangeRow

ID_CHUNK = 5000


async def next_ids(
    session: AsyncSession,
    model: type[ContactRow] | type[StageChangeRow],
    count: int,
    *,
    after: int = 0,
) -> list[int]:
    """Ids for rows about to be inserted in bulk, all above `after` (ids given out before and
    maybe not inserted yet). Inserting rows with their ids spares reading back a row each
    (RETURNING: the SQLite driver's thread takes Python's lock for each row read, and waits for
    it while this thread is busy), and lets the report rows of new contacts and history be
    written from what was inserted."""
    if not count:
        return []
    rows = model.__table__
    assert isinstance(rows, Table)
    if session.get_bind().dialect.name == "postgresql":
        sequence = select(func.nextval(func.pg_get_serial_sequence(rows.name, "id"))).select_from(
            func.generate_series(1, count)
        )
        return list(await session.scalars(sequence))
    # SQLite: the transaction holds the database's write lock from its start (BEGIN
    # IMMEDIATE), so nobody else takes the ids after the largest. In a pipeline, the largest
    # is read again only after a statement that may have inserted rows with ids of their own.
    behind = pipeline.of(await session.connection())
    largest = behind.remembered(rows.name) if behind is not None else None
    if largest is None:
        largest = await session.scalar(select(func.max(rows.c.id))) or 0
        if behind is not None:
            behind.remember(rows.name, largest)
    first = max(largest, after) + 1
    return list(range(first, first + count))
