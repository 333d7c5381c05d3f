"""The report rows of a contact, computed from what the contact and its history say
(docs/reports.md, "How the database keeps up"): pure, no session, no I/O.
`storage.report_projection` reads the history and writes what this computes.

`report_contacts` has a row per contact, `report_moves` one per history row, and
`report_stay_blocks` the stays that ended per block of 32 days. Stage ids are kept as they are,
so positions still apply when a report runs; which rows enter the won or the lost category is
worked out with the categories as they are now."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

# Lengths are sorted into buckets for exact medians: a report counts values per bucket, finds the
# bucket holding the middle value, and sorts only that bucket's values. Up to 16 s a bucket per
# second, then 8 per doubling (each about 9 % wide); monotone, so the middle value's bucket is
# where the running count passes the middle.
EXACT = 16
PER_DOUBLING = 8
LAST_BITS = 48  # lengths up to 2**48 s (8.9 million years)
NO_BUCKET = -1


def bucket(seconds: int) -> int:
    """The bucket of a length in seconds (0 for a negative one)."""
    if seconds < EXACT:
        return max(seconds, 0)
    bits = seconds.bit_length()
    if bits > LAST_BITS:
        return MAX_BUCKET
    return EXACT + (bits - 5) * PER_DOUBLING + (seconds >> (bits - 4)) - PER_DOUBLING


MAX_BUCKET = EXACT + (LAST_BITS - 4) * PER_DOUBLING - 1


NO_OWNER = 0
NO_STAGE = 0
WON, LOST = 1, 2  # report_moves.entry

CONTACT_COLUMNS = (
    "contact_id",
    "owner_id",
    "source",
    "stage_id",
    "created_s",
    "entered_s",
    "path",
    "touched",
    "responded_s",
    "response_bucket",
    "last_stage_id",
    "last_at_s",
    "last_won_s",
    "last_lost_s",
)
MOVE_COLUMNS = (
    "change_id",
    "contact_id",
    "owner_id",
    "created_s",
    "at_s",
    "to_stage_id",
    "from_stage_id",
    "creation",
    "stay_stage_id",
    "stay_s",
    "stay_bucket",
    "entry",
    "prev_entry_s",
    "age_s",
    "age_bucket",
)

STAY_BLOCK_COLUMNS = ("stay_stage_id", "stay_bucket", "block", "owner_id", "n", "total_s")
STAY_BLOCK_KEY = STAY_BLOCK_COLUMNS[:4]


class Facts(NamedTuple):  # a tuple: an import makes a million of them
    """What a contact's report rows read of the contact itself."""

    contact_id: int
    owner_id: int | None
    source: str | None
    stage_id: int | None
    created_s: int


class Change(NamedTuple):
    """A history row as the report rows read it, given in history order (time, then id)."""

    change_id: int
    at_s: int
    to_stage_id: int | None
    from_stage_id: int | None
    manual: bool  # made by a person in chat: a response
    after_creation: bool  # dated after the contact's creation (to the microsecond)


@dataclass(frozen=True, slots=True)
class Categories:
    won: frozenset[int]
    lost: frozenset[int]

    def entry(self, to_stage_id: int | None, from_stage_id: int | None) -> int:
        """WON or LOST when the move enters that category from outside it, else 0."""
        if to_stage_id in self.won:
            return 0 if from_stage_id in self.won else WON
        if to_stage_id in self.lost:
            return 0 if from_stage_id in self.lost else LOST
        return 0


def rows_of(
    facts: Facts,
    history: Sequence[Change],
    first_activity_s: int | None,
    categories: Categories,
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """The report_contacts row (CONTACT_COLUMNS) and report_moves rows (MOVE_COLUMNS) of a
    contact, from its history in history order and its first activity after its creation."""
    if len(history) == 1 and first_activity_s is None:
        return _rows_of_one(facts, history[0], categories)
    return _rows_of_history(facts, history, first_activity_s, categories)


def _rows_of_history(
    facts: Facts,
    history: Sequence[Change],
    first_activity_s: int | None,
    categories: Categories,
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    owner = NO_OWNER if facts.owner_id is None else facts.owner_id
    created = facts.created_s
    touched = first_activity_s is not None
    responded = first_activity_s
    entered: int | None = None
    path: dict[int, None] = {}  # stages in order of last entry
    latest: dict[int, int | None] = {WON: None, LOST: None}
    last_stage, last_at = NO_STAGE, None
    moves: list[tuple[Any, ...]] = []
    for change in history:
        at = change.at_s
        if change.after_creation:
            touched = True
            if change.manual and (responded is None or at < responded):
                responded = at
        to = change.to_stage_id
        if to is not None:
            if entered is None:
                entered = at
            path.pop(to, None)
            path[to] = None
        entry = categories.entry(to, change.from_stage_id)
        previous = latest[entry] if entry else None
        if entry:
            latest[entry] = at
        stay: int | None = None
        if last_stage != NO_STAGE and last_at is not None:
            stay = at - last_at
        moves.append(
            (
                change.change_id,
                facts.contact_id,
                owner,
                created,
                at,
                NO_STAGE if to is None else to,
                NO_STAGE if change.from_stage_id is None else change.from_stage_id,
                change.from_stage_id is None and at <= created,
                last_stage if stay is not None else NO_STAGE,
                stay,
                NO_BUCKET if stay is None else bucket(stay),
                entry,
                previous,
                at - created,
                bucket(at - created),
            )
        )
        last_stage, last_at = (NO_STAGE if to is None else to), at
    contact = (
        facts.contact_id,
        owner,
        facts.source,
        NO_STAGE if facts.stage_id is None else facts.stage_id,
        created,
        entered,
        " ".join(map(str, path)),
        touched,
        responded,
        NO_BUCKET if responded is None else bucket(responded - created),
        last_stage,
        last_at,
        latest[WON],
        latest[LOST],
    )
    return contact, moves


def _rows_of_one(
    facts: Facts, change: Change, categories: Categories
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """`rows_of` of a contact with one history row and no activity, as most contacts an import
    creates: the same rows, written out (a million of them cost seconds through the loop)."""
    owner = NO_OWNER if facts.owner_id is None else facts.owner_id
    created, at = facts.created_s, change.at_s
    to, came_from = change.to_stage_id, change.from_stage_id
    entry = categories.entry(to, came_from)
    responded = at if change.after_creation and change.manual else None
    last_stage = NO_STAGE if to is None else to
    move = (
        change.change_id,
        facts.contact_id,
        owner,
        created,
        at,
        last_stage,
        NO_STAGE if came_from is None else came_from,
        came_from is None and at <= created,
        NO_STAGE,
        None,
        NO_BUCKET,
        entry,
        None,
        at - created,
        bucket(at - created),
    )
    contact = (
        facts.contact_id,
        owner,
        facts.source,
        NO_STAGE if facts.stage_id is None else facts.stage_id,
        created,
        None if to is None else at,
        "" if to is None else str(to),
        change.after_creation,
        responded,
        NO_BUCKET if responded is None else bucket(responded - created),
        last_stage,
        at,
        at if entry == WON else None,
        at if entry == LOST else None,
    )
    return contact, [move]


# A contact created in bulk in this unit of work, when it was created, and the history rows added
# for it so far: its report rows are computed from what was written, without reading it back. A
# plain tuple: an import makes a million of them.
NewContact = tuple[Facts, datetime, list[Change]]


def rows_of_new(
    contacts: Sequence[NewContact], known: Categories
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """The report_contacts and report_moves rows of contacts created in this unit of work."""
    contact_rows, move_rows = [], []
    for facts, _, history in contacts:
        row, moves = rows_of(facts, history, None, known)
        contact_rows.append(row)
        move_rows += moves
    return contact_rows, move_rows


BLOCK = 32 * 86_400  # report_stay_blocks: stays counted per 32 days (UTC, from 1970)


def block_of(at_s: int) -> int:
    """The block of a moment; times before 1970 all go to block -1, which no report reads."""
    return at_s // BLOCK if at_s >= 0 else -1


_STAY = MOVE_COLUMNS.index("stay_stage_id")
_STAY_S = MOVE_COLUMNS.index("stay_s")
_BUCKET = MOVE_COLUMNS.index("stay_bucket")
_AT = MOVE_COLUMNS.index("at_s")
_OWNER = MOVE_COLUMNS.index("owner_id")


def stay_block_sums(move_rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """What new report_moves rows add to report_stay_blocks: (STAY_BLOCK_COLUMNS) rows in key
    order (so that two transactions on PostgreSQL lock the rows they share in the same order)."""
    blocks: dict[tuple[int, int, int, int], list[int]] = {}
    for row in move_rows:
        if row[_STAY] == NO_STAGE:
            continue
        key = (row[_STAY], row[_BUCKET], block_of(row[_AT]), row[_OWNER])
        figures = blocks.setdefault(key, [0, 0])
        figures[0] += 1
        figures[1] += row[_STAY_S]
    return [(*key, n, total) for key, (n, total) in sorted(blocks.items())]
