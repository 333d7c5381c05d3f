"""The report tables (docs/reports.md, "How the database keeps up"): how their rows are computed
from contacts, stage_changes and activities, and kept in step by every write.

`report_contacts` has a row per contact and `report_moves` one per history row. Every write that
changes a contact's history, activities, owner, source or stage brings that contact's rows in
step in the same transaction; `refresh(connection, None)` is the recount from scratch the tests
compare with. Stage ids are kept as they are, so positions still apply when a report runs;
which rows enter the won or the lost category is worked out with the categories as they are
now, and recategorizing a stage refreshes every contact that ever entered or left it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, SQLColumnExpression, case, literal

# Lengths are sorted into buckets for exact medians: a report counts values per bucket, finds the
# bucket holding the middle value, and sorts only that bucket's values. Up to 16 s a bucket per
# second, then 8 per doubling (each about 9 % wide); monotone, so the middle value's bucket is
# where the running count passes the middle.
_EXACT = 16
_PER_DOUBLING = 8
_LAST_BITS = 48  # lengths up to 2**48 s (8.9 million years)
NO_BUCKET = -1


def bucket(seconds: int) -> int:
    """The bucket of a length in seconds (0 for a negative one)."""
    if seconds < _EXACT:
        return max(seconds, 0)
    bits = seconds.bit_length()
    return _EXACT + (bits - 5) * _PER_DOUBLING + (seconds >> (bits - 4)) - _PER_DOUBLING


MAX_BUCKET = bucket(2**_LAST_BITS - 1)


def bucket_sql(seconds: SQLColumnExpression[Any]) -> ColumnElement[int]:
    """`bucket` in SQL, identically on SQLite and PostgreSQL (integer arithmetic only)."""
    whens: list[tuple[Any, Any]] = [(seconds < 0, literal(0)), (seconds < _EXACT, seconds)]
    for bits in range(5, _LAST_BITS + 1):
        first = _EXACT + (bits - 5) * _PER_DOUBLING - _PER_DOUBLING
        whens.append((seconds < 2**bits, seconds // 2 ** (bits - 4) + first))
    return case(*whens, else_=literal(MAX_BUCKET))
