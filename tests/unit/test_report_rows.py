"""How one contact's report rows follow from its history (storage.report_rows.rows_of): the stay
each row ends, entries into won and lost with the previous one, the path, first response."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from storage.report_rows import (
    CONTACT_COLUMNS,
    LOST,
    MOVE_COLUMNS,
    NO_BUCKET,
    WON,
    Categories,
    Change,
    Facts,
    _rows_of_history,
    _rows_of_one,
    bucket,
    rows_of,
)

LEAD, SQL, CUSTOMER, LOYAL, GONE = 1, 3, 4, 5, 6
AMIS = Categories(won=frozenset({CUSTOMER, LOYAL}), lost=frozenset({GONE}))
CREATED = 1_000
HOUR = 3_600


def rows(*changes: Change, first_activity: int | None = None) -> tuple[dict, list[dict]]:
    contact, moves = rows_of(
        Facts(7, None, "Zalo", changes[-1].to_stage_id, CREATED), changes, first_activity, AMIS
    )
    return (
        dict(zip(CONTACT_COLUMNS, contact, strict=True)),
        [dict(zip(MOVE_COLUMNS, move, strict=True)) for move in moves],
    )


def change(
    n: int, at: int, to: int | None, source_manual: bool = False, frm: int | None = None
) -> Change:
    return Change(n, at, to, frm, source_manual, at > CREATED)


def test_a_reopened_customer_enters_won_twice_and_its_second_entry_knows_the_first() -> None:
    contact, moves = rows(
        change(1, CREATED, LEAD),
        change(2, CREATED + HOUR, CUSTOMER, frm=LEAD),
        change(3, CREATED + 3 * HOUR, SQL, frm=CUSTOMER),
        change(4, CREATED + 4 * HOUR, LOYAL, frm=SQL),
    )
    assert [m["entry"] for m in moves] == [0, WON, 0, WON]
    assert [m["prev_entry_s"] for m in moves] == [None, None, None, CREATED + HOUR]
    assert contact["last_won_s"] == CREATED + 4 * HOUR
    assert contact["path"] == "1 4 3 5"
    assert contact["last_stage_id"] == LOYAL


def test_each_row_ends_the_stay_before_it_and_a_move_to_no_stage_starts_none() -> None:
    _, moves = rows(
        change(1, CREATED, LEAD),
        change(2, CREATED + HOUR, None, frm=LEAD),
        change(3, CREATED + 5 * HOUR, GONE),
    )
    stays = [(m["stay_stage_id"], m["stay_s"], m["stay_bucket"]) for m in moves]
    assert stays == [(0, None, NO_BUCKET), (LEAD, HOUR, bucket(HOUR)), (0, None, NO_BUCKET)]
    assert [m["creation"] for m in moves] == [True, False, False]
    assert moves[2]["entry"] == LOST
    assert moves[2]["age_s"] == 5 * HOUR


def test_the_first_response_is_the_earliest_of_a_manual_move_and_an_activity() -> None:
    contact, _ = rows(
        change(1, CREATED, LEAD),
        change(2, CREATED + 2 * HOUR, SQL, source_manual=True, frm=LEAD),
        first_activity=CREATED + 3 * HOUR,
    )
    assert contact["touched"]
    assert contact["responded_s"] == CREATED + 2 * HOUR
    assert contact["response_bucket"] == bucket(2 * HOUR)
    untouched, _ = rows(change(1, CREATED, LEAD))
    assert not untouched["touched"]
    assert (untouched["responded_s"], untouched["response_bucket"]) == (None, NO_BUCKET)


@given(
    at=st.integers(-(10**6), 10**10),
    to=st.sampled_from([None, LEAD, SQL, CUSTOMER, LOYAL, GONE]),
    came_from=st.sampled_from([None, LEAD, CUSTOMER, GONE]),
    manual=st.booleans(),
    owner=st.sampled_from([None, 3]),
    stage=st.sampled_from([None, LEAD]),
)
def test_a_contact_with_one_history_row_gets_the_rows_the_general_loop_gives(
    at: int,
    to: int | None,
    came_from: int | None,
    manual: bool,
    owner: int | None,
    stage: int | None,
) -> None:
    facts = Facts(7, owner, None, stage, CREATED)
    one = Change(9, at, to, came_from, manual, at > CREATED)
    assert _rows_of_one(facts, one, AMIS) == _rows_of_history(facts, [one], None, AMIS)
