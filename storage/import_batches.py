"""An import file's rows, in batches, read on another core when the file is large.

Reading a row (decoding, recognising and normalizing its cells: domain.imports) costs about as
much as matching and writing it, so a large file is read by a child Python process that hands
its rows over one batch at a time, while this process matches and writes the batch before. A
small file is read here: starting an interpreter would cost more than it saves.

The child reads ahead of the batch being taken by up to a few megabytes of rows (`AHEAD`, a
dozen batches or more), so that neither process waits for the other at every batch.

The child is `python -m storage.import_batches`, talking over its standard input and output in
length-prefixed pickles, rather than a multiprocessing child, which would first import this
program's `__main__` again (and `python -m bot` would run its command once more)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import os
import pickle
import struct
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from itertools import islice
from operator import attrgetter
from typing import IO, Any, Final

from domain.errors import ImportRefused
from domain.imports import Batch, ImportRow, ParsedFile, RowError, parse

# Allocations between two collections of the youngest generation while an import runs (Python's
# default is 700): see `_tuned_for_imports`.
GC_YOUNG_THRESHOLD: Final = 200_000
SWITCH_INTERVAL: Final = 0.0001  # seconds; see _tuned_for_imports
READ_STEP: Final = 500  # rows read here between two chances for the event loop to go on
# Bytes of rows the child may have sent ahead of the batch being taken (asyncio stops reading a
# pipe at twice its stream's limit, 64 KiB by default: less than a batch, so the child would
# wait for every batch to be taken before reading the next).
AHEAD: Final = 4 * 1024 * 1024

# A row crosses over as a plain tuple of its fields: far quicker to pickle than the dataclass.
_ROW_FIELDS: Final = tuple(f.name for f in dataclasses.fields(ImportRow))
_row_values = attrgetter(*_ROW_FIELDS)
_LENGTH: Final = struct.Struct("!Q")
_SEND_STEP: Final = 1 << 20


@asynccontextmanager
async def batches(
    data: bytes, parsed: ParsedFile, parse_options: dict[str, Any], *, size: int, in_child: bool
) -> AsyncIterator[AsyncIterator[Batch]]:
    """The rows of `parsed` (what `parse(data, **parse_options)` returned), `size` at a time;
    with `in_child`, read again by a child process. The last batch has no rows: it counts the
    rows rejected after the last accepted one. Once it is taken, `parsed.errors` holds every
    row the reading rejected. Raises ImportRefused for a file broken further down."""
    async with _tuned_for_imports():
        if not in_child:
            yield _read_here(parsed, size)
        else:
            async with _read_in_child_process(data, parsed, parse_options, size) as stream:
                yield stream


@asynccontextmanager
async def _read_in_child_process(
    data: bytes, parsed: ParsedFile, parse_options: dict[str, Any], size: int
) -> AsyncIterator[AsyncIterator[Batch]]:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        __name__,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        limit=AHEAD,
    )
    assert child.stdin is not None
    assert child.stdout is not None
    try:
        child.stdin.write(_frame((parse_options, size, len(data))))
        view = memoryview(data)
        for start in range(0, len(data), _SEND_STEP):  # a step at a time: no copy of the file
            child.stdin.write(view[start : start + _SEND_STEP])
            await child.stdin.drain()
        child.stdin.close()
        yield _receive(child.stdout, parsed.errors)
    finally:
        if child.returncode is None:
            child.kill()
        await child.wait()


class _Tuning:
    """How many imports of this process run with the settings of `_tuned_for_imports`, and the
    settings to put back when the last one ends."""

    running = 0
    thresholds: tuple[int, int, int] = (700, 10, 10)
    switch_interval = 0.005


@asynccontextmanager
async def _tuned_for_imports() -> AsyncIterator[None]:
    """While imports are under way:

    - Python's cyclic garbage collector runs less often. An import makes and drops tens of
      thousands of objects a batch (rows, contacts, parameters), which keeps setting off
      collections, and now and then a full one that walks every object of the process: with
      the default thresholds that took about a third of the time of matching a file already
      imported. Nearly all of it is freed by reference counting anyway; the collector still
      runs, some three hundred times less often. (A collection of the youngest generation walks
      every object made since the one before and still alive: a batch's contacts, rows and
      before-images. At 50,000 such collections took about 0.8 s of a file of 262,144 rows half
      of which change contacts; at 200,000, 0.3 s, for 9 MiB more at the peak; at 500,000, no
      less time and 33 MiB more.)
    - Python's lock changes threads more often. The database's thread (SQLite's) takes the lock
      between statements and to bind their values, and while this thread works out the next
      batch it waited up to the default interval, 5 ms, each time: a million new rows took 28 s
      instead of 24 s."""
    if _Tuning.running == 0:
        _Tuning.thresholds = gc.get_threshold()
        _Tuning.switch_interval = sys.getswitchinterval()
        young, *older = _Tuning.thresholds
        gc.set_threshold(max(young, GC_YOUNG_THRESHOLD), *older)
        sys.setswitchinterval(min(_Tuning.switch_interval, SWITCH_INTERVAL))
    _Tuning.running += 1
    try:
        yield
    finally:
        _Tuning.running -= 1
        if _Tuning.running == 0:
            gc.set_threshold(*_Tuning.thresholds)
            sys.setswitchinterval(_Tuning.switch_interval)


async def _read_here(parsed: ParsedFile, size: int) -> AsyncIterator[Batch]:
    counter = _RowCounter(parsed.errors)
    while rows := await _some_rows(parsed, size):
        yield Batch(rows, counter.read(rows))
    yield Batch([], counter.read([]))


async def _some_rows(parsed: ParsedFile, size: int) -> list[ImportRow]:
    """Up to `size` rows, read READ_STEP at a time with a pause between: reading a whole batch
    at once would keep the event loop (everyone else's messages) waiting for a tenth of a
    second or more."""
    rows: list[ImportRow] = []
    while len(rows) < size:
        step = list(islice(parsed.rows, min(READ_STEP, size - len(rows))))
        rows += step
        if len(step) < READ_STEP:
            break
        await asyncio.sleep(0)
    return rows


async def _receive(stream: asyncio.StreamReader, errors: list[RowError]) -> AsyncIterator[Batch]:
    while True:
        try:
            (length,) = _LENGTH.unpack(await stream.readexactly(_LENGTH.size))
            kind, payload = pickle.loads(await stream.readexactly(length))
        except asyncio.IncompleteReadError:
            raise RuntimeError("the process reading the import stopped") from None
        if kind == "rows":
            rows, read = payload
            yield Batch([ImportRow(*values) for values in rows], read)
        elif kind == "refused":
            raise ImportRefused(payload)
        else:
            errors.extend(payload)
            return


def _frame(message: Any) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _LENGTH.pack(len(body)) + body


def _read_in_child(request: IO[bytes], reply: IO[bytes]) -> None:
    (length,) = _LENGTH.unpack(request.read(_LENGTH.size))
    parse_options, size, data_length = pickle.loads(request.read(length))
    data = request.read(data_length)
    try:
        parsed = parse(data, **parse_options)
        counter = _RowCounter(parsed.errors)
        while rows := list(islice(parsed.rows, size)):
            rows_read = counter.read(rows)
            reply.write(_frame(("rows", ([_row_values(row) for row in rows], rows_read))))
        reply.write(_frame(("rows", ([], counter.read([])))))
        reply.write(_frame(("errors", parsed.errors)))
    except ImportRefused as refused:
        reply.write(_frame(("refused", refused.message)))
    reply.flush()


class _RowCounter:
    """Data rows read so far: the rows the parser accepted and those it rejected (a row with
    several problems has one error for each, one after the other)."""

    def __init__(self, errors: list[RowError]) -> None:
        self._errors = errors
        self._errors_seen = 0
        self._last_rejected: int | None = None
        self._rejected = 0
        self._accepted = 0

    def read(self, accepted: Sequence[ImportRow]) -> int:
        self._accepted += len(accepted)
        for error in self._errors[self._errors_seen :]:
            if error.row != self._last_rejected:
                self._rejected += 1
                self._last_rejected = error.row
        self._errors_seen = len(self._errors)
        return self._accepted + self._rejected


if __name__ == "__main__":
    reply = sys.stdout.buffer
    sys.stdout = sys.stderr  # standard output carries the rows, and nothing else
    _read_in_child(sys.stdin.buffer, reply)
