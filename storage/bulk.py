"""Set-based reads and writes for imports of a million rows, below SQLAlchemy's per-row work.

SQLAlchemy runs every parameter and every value read through its Python bookkeeping and type
processing, several times the work SQLite itself does per row; and an executemany is one
statement per row, after each of which SQLite's FTS5 search index (kept by triggers) flushes its
pending terms. Here each statement carries as many rows as the parameter limit allows, and each
column's values are converted by that column type's own processors, once per distinct value, so
that what is stored and read back is exactly what the ORM would store and read."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from typing import Any

from sqlalchemy import Table, func, select, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import Executable

from storage import pipeline
from storage.db import CACHE_SETTING, LARGE_MOVE_CACHE_KIB, UTCDateTime
from storage.models import Base

# SQLite's default SQLITE_MAX_VARIABLE_NUMBER; asyncpg allows 32,767.
MAX_PARAMETERS = 32_766

Converter = Callable[[Any], Any]

# On SQLite, a statement that moves the index entries of a large share of a big table's rows
# is faster with the indexes dropped and created again: creating sorts once, where moving an
# entry is a deletion and an insertion from the root. For a stage deletion of a million
# contacts, creating the four indexes takes about 1.9 s and moving their entries 4.5 s: moving
# costs as much as creating from 40 % of the table (docs/architecture.md).
REBUILD_SHARE = 0.4
REBUILD_MIN_ROWS = 50_000


async def insert(
    session: AsyncSession,
    model: type[Base],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    returning: Sequence[str] = (),
    refused: Callable[[], Exception] | None = None,
) -> list[tuple[Any, ...]]:
    """INSERT the rows (one value per column, in order); the `returning` columns of the inserted
    rows, in no particular order. `refused`, when given, is raised instead of the database's
    integrity error (a unique index's). In a pipeline (storage.pipeline), rows returned nothing
    are sent and this returns before the database has run them."""
    table = _table(model)
    dialect = session.get_bind().dialect
    types = [table.c[name].type for name in columns]
    head = f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES "
    tail = f" RETURNING {', '.join(returning)}" if returning else ""
    connection = await session.connection()
    behind = None if returning else pipeline.of(connection)
    out: list[tuple[Any, ...]] = []
    for chunk in _chunks(rows, len(columns)):
        parameters, nulls = _parameters(chunk, types, dialect)
        sql = head + _placeholders(dialect.paramstyle, len(chunk), len(columns), nulls=nulls) + tail
        if behind is not None:
            await behind.send(sql, parameters, refused=refused)
            continue
        try:
            result = await connection.exec_driver_sql(sql, parameters)
        except IntegrityError:
            if refused is None:
                raise
            raise refused() from None
        if returning:
            out += result.all()
    return out


async def execute(
    session: AsyncSession, statement: str | Executable, parameters: Sequence[Any] = ()
) -> None:
    """Run a statement that returns nothing (SQL written for the driver, with its parameters,
    or SQLAlchemy's): in a pipeline, sent to run behind."""
    connection = await session.connection()
    behind = pipeline.of(connection)
    if behind is not None:
        await behind.send(statement, tuple(parameters) if isinstance(statement, str) else None)
    elif isinstance(statement, str):
        await connection.exec_driver_sql(statement, tuple(parameters))
    else:
        await session.execute(statement)


async def worth_rebuilding(session: AsyncSession, model: type[Base], rows: int) -> bool:
    """Whether a statement writing `rows` rows of the model's table should rebuild the indexes of
    the columns it sets (`indexes_rebuilt`) instead of updating them row by row."""
    if rows < REBUILD_MIN_ROWS or session.get_bind().dialect.name != "sqlite":
        return False
    total = await session.scalar(select(func.count()).select_from(_table(model)))
    return rows >= REBUILD_SHARE * (total or 0)


async def keep_more_pages(session: AsyncSession) -> None:
    """On SQLite, lets this transaction keep LARGE_MOVE_CACHE_KIB of pages (storage.db)."""
    if session.get_bind().dialect.name != "sqlite":
        return
    connection = await session.connection()
    await connection.exec_driver_sql(f"PRAGMA cache_size=-{LARGE_MOVE_CACHE_KIB}")
    (await connection.get_raw_connection()).info[CACHE_SETTING] = LARGE_MOVE_CACHE_KIB


@asynccontextmanager
async def indexes_rebuilt(session: AsyncSession, names: Sequence[str]) -> AsyncIterator[None]:
    """Around one statement: drops these SQLite indexes before it and creates them again, as
    they were defined, after it. Both are part of the transaction, so that if the statement
    fails, the rollback that follows brings the indexes back."""
    if not names:
        yield
        return
    named = ", ".join(f"'{name}'" for name in names)
    defined = await session.execute(
        text(f"SELECT name, sql FROM sqlite_master WHERE type = 'index' AND name IN ({named})")
    )
    definitions: dict[str, str] = dict(defined.all())
    if set(definitions) != set(names):
        raise LookupError(f"no such index: {sorted(set(names) - set(definitions))}")
    connection = await session.connection()
    for name in names:
        await connection.exec_driver_sql(f'DROP INDEX "{name}"')
    yield
    for name in names:
        await connection.exec_driver_sql(definitions[name])


async def update(
    session: AsyncSession,
    model: type[Base],
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
) -> int:
    """Set the columns of rows found by id whose version is still the one given: each row is
    (id, version expected, the columns' new values...). Returns how many rows were written."""
    table = _table(model)
    dialect = session.get_bind().dialect
    names = ("id", "expected_version", *columns)
    types = [table.c.id.type, table.c.version.type, *(table.c[name].type for name in columns)]
    # A VALUES list outside an INSERT gives PostgreSQL no column to take its types from.
    casts = tuple(t.compile(dialect=dialect) for t in types) if dialect.name == "postgresql" else ()
    assignments = ", ".join(f"{name} = new.{name}" for name in columns)
    # Both SQLite and PostgreSQL name the columns of a VALUES list column1, column2...
    renamed = ", ".join(f"column{n} AS {name}" for n, name in enumerate(names, start=1))
    connection = await session.connection()
    written = 0
    for chunk in _chunks(rows, len(names)):
        parameters, nulls = _parameters(chunk, types, dialect)
        values = _placeholders(dialect.paramstyle, len(chunk), len(names), casts, nulls)
        # UPDATE first: the SQLite driver counts the rows written only of a statement that
        # starts with INSERT, UPDATE, DELETE or REPLACE (not WITH).
        sql = (
            f"UPDATE {table.name} SET {assignments} "
            f"FROM (SELECT {renamed} FROM (VALUES {values}) AS listed) AS new "
            f"WHERE {table.name}.id = new.id AND {table.name}.version = new.expected_version"
        )
        result = await connection.exec_driver_sql(sql, parameters)
        written += result.rowcount
    return written


async def select_in(
    session: AsyncSession,
    model: type[Base],
    columns: Sequence[str],
    key: str,
    values: Sequence[Any],
) -> list[tuple[Any, ...]]:
    """The columns of the rows whose `key` is one of `values`."""
    rows, converters = await select_raw(session, model, columns, key, values)
    if not any(converters):
        return [tuple(row) for row in rows]
    return _converted(rows, converters)


async def select_raw(
    session: AsyncSession,
    model: type[Base],
    columns: Sequence[str],
    key: str,
    values: Sequence[Any],
) -> tuple[list[Sequence[Any]], list[Converter | None]]:
    """select_in's rows as the driver gives them, and for each column what turns the driver's
    value into the column type's (None where the two are the same), for callers that read a
    row's values once anyway and can convert them as they go. A converter takes None too."""
    table = _table(model)
    dialect = session.get_bind().dialect
    head = f"SELECT {', '.join(columns)} FROM {table.name} WHERE {key} IN "
    bind = table.c[key].type.dialect_impl(dialect).bind_processor(dialect)
    keys = [bind(value) for value in values] if bind else list(values)
    connection = await session.connection()
    converters: list[Converter | None] | None = None
    out: list[Sequence[Any]] = []
    for start in range(0, len(keys), MAX_PARAMETERS):
        chunk = keys[start : start + MAX_PARAMETERS]
        marks = _placeholders(dialect.paramstyle, 1, len(chunk))
        result = await connection.exec_driver_sql(head + marks, tuple(chunk))
        if converters is None:
            converters = [
                _result_converter(table.c[name].type, dialect, described[1])
                for name, described in zip(columns, result.cursor.description, strict=True)
            ]
        out += result.all()
    return out, converters or [None] * len(columns)


async def select_text(
    session: AsyncSession,
    head: str,
    values: Sequence[Any],
    *,
    tail: str = "",
    types: Sequence[Any] = (),
) -> list[Any]:
    """The rows of `head`, a SELECT ending in `IN ` (joins allowed), then `tail` (a GROUP BY),
    for `values` as many at a time as the parameter limit allows. Values go to the driver as
    they are (ids, text); results come back as it gives them, or, for the columns `types`
    gives a column type for (None for the others), as that type reads them."""
    dialect = session.get_bind().dialect
    connection = await session.connection()
    out: list[Any] = []
    converters: list[Converter | None] | None = None
    for start in range(0, len(values), MAX_PARAMETERS):
        chunk = tuple(values[start : start + MAX_PARAMETERS])
        marks = _placeholders(dialect.paramstyle, 1, len(chunk))
        result = await connection.exec_driver_sql(head + marks + tail, chunk)
        if types and converters is None:
            converters = [
                _result_converter(column_type, dialect, described[1]) if column_type else None
                for column_type, described in zip(types, result.cursor.description, strict=False)
            ]
        rows = result.all()
        out += _converted(rows, converters) if converters and any(converters) else rows
    return out


def _result_converter(column_type: Any, dialect: Dialect, described: Any) -> Converter | None:
    """The column type's result processor, memoized; for the aware UTC timestamps SQLite keeps
    as text, `datetime.fromisoformat` itself (what the processor ends up calling, after two
    layers of Python calls that cost as much again)."""
    if isinstance(column_type, UTCDateTime) and dialect.name == "sqlite":
        return _memoized(_sqlite_utc)
    convert = column_type.dialect_impl(dialect).result_processor(dialect, described)
    return _memoized(convert) if convert else None


def _sqlite_utc(value: str | None) -> datetime | None:
    """UTCDateTime's result on SQLite, which keeps it naive in UTC: aware in UTC again. Parsing
    with the offset appended costs a fifth of parsing and then replacing the zone."""
    if value is None:
        return None
    if len(value) > 10:  # a date and a time, as stored
        try:
            moment = datetime.fromisoformat(value + "+00:00")
        except ValueError:  # a time with its own offset (not written by us)
            pass
        else:
            if moment.tzinfo is UTC:
                return moment
    moment = datetime.fromisoformat(value)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _table(model: type[Base]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _chunks(rows: Sequence[Sequence[Any]], width: int) -> Iterator[Sequence[Sequence[Any]]]:
    size = MAX_PARAMETERS // width
    for start in range(0, len(rows), size):
        yield rows[start : start + size]


@lru_cache(maxsize=64)
def _placeholders(
    paramstyle: str,
    count: int,
    width: int,
    casts: tuple[str, ...] = (),
    nulls: tuple[int, ...] = (),
) -> str:
    """`(?, ?), (?, ?)` for `count` rows of `width` values in the driver's parameter style,
    each cast to its type when `casts` are given; `NULL` instead for the columns `nulls`."""
    bound = [i for i in range(width) if i not in nulls]
    total = count * len(bound)
    if paramstyle == "qmark":
        marks = ["?"] * total
    elif paramstyle == "numeric_dollar":
        marks = [f"${n}" for n in range(1, total + 1)]
    elif paramstyle in ("format", "pyformat"):
        marks = ["%s"] * total
    else:
        raise NotImplementedError(f"parameter style {paramstyle}")
    if casts:
        marks = [f"CAST({mark} AS {casts[bound[i % len(bound)]]})" for i, mark in enumerate(marks)]
    cells = ["NULL"] * width
    rows = []
    for start in range(0, total, len(bound)):
        for index, mark in zip(bound, marks[start : start + len(bound)], strict=True):
            cells[index] = mark
        rows.append("(" + ", ".join(cells) + ")")
    return ", ".join(rows)


def _parameters(
    chunk: Sequence[Sequence[Any]], types: Sequence[Any], dialect: Dialect
) -> tuple[tuple[Any, ...], tuple[int, ...]]:
    """The rows' values, flat, each converted as its column type converts it; and the columns
    left out of them, to be written as NULL: on SQLite, those NULL in every row. (Python's
    sqlite3 looks for an adapter for every None it binds, several times the cost of binding a
    number or a text, and holds Python's lock meanwhile: a third of a microsecond a value, for
    the columns a million new contacts leave empty.)"""
    flat = list(chain.from_iterable(chunk))
    width = len(types)
    for index, column_type in enumerate(types):
        convert = column_type.dialect_impl(dialect).bind_processor(dialect)
        if convert is None:
            continue
        column = flat[index::width]
        try:
            # Each distinct value once, then a dictionary look-up in C for every row.
            converted = {value: convert(value) for value in set(column)}
        except TypeError:  # unhashable values (a JSON column's dicts)
            flat[index::width] = map(_memoized(convert), column)
        else:
            flat[index::width] = map(converted.__getitem__, column)
    if dialect.name != "sqlite":
        return tuple(flat), ()
    nulls = tuple(
        index
        for index in range(width)
        # The first row tells most columns apart without a look at the others.
        if flat[index] is None and flat[index::width].count(None) == len(chunk)
    )
    for removed, index in enumerate(reversed(nulls)):  # the last first: the others stay put
        del flat[index :: width - removed]
    return tuple(flat), nulls


def _converted(
    rows: Sequence[Sequence[Any]], converters: Sequence[Converter | None]
) -> list[tuple[Any, ...]]:
    columns = [list(column) for column in zip(*rows, strict=True)]
    for index, convert in enumerate(converters):
        if convert is not None and columns:
            columns[index] = list(map(convert, columns[index]))
    return list(zip(*columns, strict=True))


def _memoized(convert: Converter) -> Converter:
    """`convert`, once per distinct value: an import's timestamps, amounts and custom fields
    repeat (the time of the import itself, on most rows), and converting costs microseconds.
    Equal values convert alike; converted dicts are shared, so readers copy before changing."""
    memo: dict[Any, Any] = {}
    missing = object()  # a miss costs no exception: most values of a column may be distinct
    hashable = True  # until a value is not: then the others likely are not either (a list in
    # each before-image), and an exception each would cost more than the memo saves

    def converted(value: Any) -> Any:
        nonlocal hashable
        if not hashable:
            return convert(value)
        try:
            key = tuple(value.items()) if isinstance(value, dict) else value
            result = memo.get(key, missing)
        except TypeError:  # unhashable
            hashable = False
            return convert(value)
        if result is missing:
            memo[key] = result = convert(value)
        return result

    return converted
