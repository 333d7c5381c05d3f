"""The HTTP API under hostile requests (issue 17), fuzzed with Hypothesis over raw HTTP: bodies of
arbitrary bytes, JSON nested past any decoder, huge numbers, odd Unicode (lone surrogates,
control characters), wrong types, sizes around the 64 KiB limit, and headers of any bytes HTTP
allows. Every request gets a 2xx or the API's JSON refusal (4xx, `{"error", "field",
"reason"}`), never a 500; a refusal writes nothing. On SQLite and PostgreSQL.

Raw sockets rather than an HTTP client: a client encodes headers as UTF-8, and a server decodes
other bytes into lone surrogates, which no database stores. Only what HTTP itself forbids
(control characters in a header, a malformed request line) is left to aiohttp's own
plain-text 400, which no application sees."""

from __future__ import annotations

import asyncio
import gzip
import json
import shutil
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from bot.api import MAX_BODY, MAX_HEADER, SERVER_OPTIONS, mount_api
from bot.container import Services, build_services
from bot.entrypoints import Sandbox
from bot.settings import Settings
from domain.access import SYSTEM
from domain.model import EventKind

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class RawApi:
    """The API on a loopback port, spoken to in bytes."""

    def __init__(self, port: int, secret: str, services: Services) -> None:
        self.port = port
        self.secret = secret
        self.services = services

    async def send(self, head: bytes, body: bytes = b"") -> Answer:
        """`head`: the request line and headers, without Content-Length (added) or the blank
        line."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(
                head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body
            )
            await writer.drain()
            raw = await reader.read()  # the server closes the connection after its answer
        finally:
            writer.close()
            await writer.wait_closed()
        head_part, _, content = raw.partition(b"\r\n\r\n")
        status_line, *lines = head_part.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        return Answer(int(status_line.split()[1]), headers, content)

    def post(self, body: bytes, *headers: bytes) -> Awaitable[Answer]:
        head = b"POST /api/v1/events HTTP/1.1\r\nHost: api\r\n" + b"".join(
            header + b"\r\n" for header in headers
        )
        return self.send(head, body)

    @property
    def authorization(self) -> bytes:
        return b"Authorization: Bearer " + self.secret.encode()

    async def stored(self) -> tuple[int, ...]:
        """Rows of the tables an event writes to."""
        tables = ("contacts", "companies", "events", "stage_changes", "notices", "activities")
        counts = ", ".join(f"(SELECT count(*) FROM {table})" for table in tables)
        async with self.services.engine.connect() as connection:
            row = (await connection.execute(text(f"SELECT {counts}"))).one()
        return tuple(row)


@pytest.fixture
async def api(services: Services) -> AsyncIterator[RawApi]:
    await services.stages.apply_template(SYSTEM, "amis")
    _, secret = await services.api_keys.create(SYSTEM, "website")
    app = web.Application()
    mount_api(app, services, lambda notices: None)
    server = TestServer(app)
    await server.start_server(**SERVER_OPTIONS)
    assert server.port is not None
    yield RawApi(server.port, secret, services)
    await server.close()


def assert_answered(answer: Answer) -> None:
    """A 2xx, or the API's JSON refusal: never a server error, never aiohttp's plain text."""
    assert answer.status < 500, answer
    assert answer.headers.get("content-type", "").startswith("application/json"), answer
    body = answer.json()
    if answer.status >= 400:
        assert set(body) == {"error", "field", "reason"}, body
        assert isinstance(body["error"], str)
        assert isinstance(body["reason"], str)
        assert body["reason"]


async def assert_refusal_stores_nothing(api: RawApi, send: Awaitable[Answer]) -> Answer:
    before = await api.stored()
    answer = await send
    assert_answered(answer)
    if answer.status >= 400:
        assert await api.stored() == before, answer
    return answer


# -- what the bodies are made of

# Texts of every kind: control characters (NUL included), lone surrogates (valid in JSON as
# \ud800, in no UTF-8), right-to-left marks, combining accents, emoji, and plain ones.
texts = st.one_of(
    st.text(max_size=30),
    st.text(st.characters(codec=None, categories=["Cc", "Cs", "Cf", "Mn", "Zs"]), max_size=8),
    st.sampled_from(["Nguyễn Văn An", "张伟", "An\x00", "\u202eevil", "e\u0301", "😀", " ", ""]),
)
numbers = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(),  # NaN and infinities too, which JSON does not allow
    st.decimals(allow_nan=False, allow_infinity=False).map(Decimal.__str__),
    st.integers(min_value=4000, max_value=6000).map(lambda digits: "9" * digits),  # huge
)
leaves = st.one_of(st.none(), st.booleans(), numbers, texts)
values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3),
    max_leaves=12,
)
kinds = st.sampled_from([kind.value for kind in EventKind])
phones = st.sampled_from(["0912 345 678", "+84912345678", "0903 123 456", "+84 91 234 5679"])
fields: dict[str, st.SearchStrategy[Any]] = {
    "event": kinds | values,
    "phone": st.sampled_from(["0000000000", "+1 555 0100", "12", "0912 345 678 ext. 9"])
    | texts
    | values,
    "email": st.sampled_from(["an@example.com", "a..b@x.com", "@", "AN@EXAMPLE.COM"]) | values,
    "external_id": texts | values,
    "name": texts | st.integers(195, 205).map(lambda n: "x" * n) | values,
    "company": texts | values,
    "source": texts | values,
    "value": numbers | values,
    "custom_fields": st.dictionaries(texts, texts | values, max_size=60) | values,
    "idempotency_key": texts | values,
    "colour": values,  # not a field at all
}


# Events right but for a field or two, so that most get past validation into the service and
# the database (a NUL reached PostgreSQL that way); and events of any shape.
@st.composite
def nearly_right(draw: st.DrawFn) -> dict[str, Any]:
    event: dict[str, Any] = {
        "event": draw(kinds),
        "phone": draw(phones),
        "idempotency_key": str(draw(st.uuids())),
    }
    for name in draw(st.lists(st.sampled_from(sorted(fields)), max_size=2, unique=True)):
        event[name] = draw(fields[name])
    return event


events = nearly_right() | st.fixed_dictionaries({}, optional=fields)


def _json(value: Any, ascii_only: bool) -> bytes:
    """JSON as a client may send it: with \\u escapes, or as UTF-8 (a lone surrogate then gives
    bytes no UTF-8 decoder takes)."""
    return json.dumps(value, ensure_ascii=ascii_only).encode("utf-8", "surrogatepass")


@st.composite
def nested(draw: st.DrawFn) -> bytes:
    """JSON nested deeper than a decoder goes (under 64 KiB), bare or inside a field, closed
    or not."""
    depth = draw(st.integers(min_value=500, max_value=30_000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b"[{}, ", b"]")]))
    inner = opener * depth + b"1" + closer * depth * draw(st.sampled_from([0, 1]))
    wrapped = draw(st.booleans())
    if wrapped:
        return (
            b'{"event": "form_submitted", "phone": "0912345678", "custom_fields": ' + inner + b"}"
        )
    return inner[:MAX_BODY]


big = st.integers(min_value=MAX_BODY - 200, max_value=MAX_BODY + 200).map(
    lambda size: b'{"event": "page_viewed", "phone": "0912345678", "name": "' + b"x" * size + b'"}'
)
bodies = st.one_of(
    st.builds(_json, nearly_right(), st.booleans()),
    st.builds(_json, events, st.booleans()),
    st.builds(_json, values, st.booleans()),
    st.binary(max_size=300),
    nested(),
    big,
)


@given(body=bodies)
@FUZZ
async def test_any_body_gets_an_answer_or_a_json_refusal_that_stores_nothing(
    api: RawApi, body: bytes
) -> None:
    answer = await assert_refusal_stores_nothing(api, api.post(body, api.authorization))
    event(f"answered {answer.status}")  # --hypothesis-show-statistics: what the inputs reached


# -- headers: any bytes HTTP allows in a value (visible ASCII, bytes 0x80-0xFF, inner spaces)


def _header_value(raw: bytes) -> bytes:
    allowed = bytes(b for b in raw if b == 0x09 or 0x20 <= b <= 0x7E or b >= 0x80)
    return allowed.strip(b" \t")


header_values = st.one_of(
    st.binary(max_size=200).map(_header_value),
    st.text(max_size=200).map(lambda t: _header_value(t.encode("utf-8", "surrogatepass"))),
    st.integers(min_value=150, max_value=MAX_HEADER - 100).map(lambda n: b"k" * n),
)
header_names = st.sampled_from([b"Idempotency-Key", b"Content-Type", b"Accept", b"X-Anything"])
encodings = st.sampled_from([b"gzip", b"deflate", b"identity", b"GZIP", b"br", b"x-unknown"])


@given(
    # None (half the time): the key
    authorization=st.booleans().flatmap(lambda key: st.none() if key else header_values),
    headers=st.dictionaries(header_names, header_values, max_size=4),  # a second is a 400
    encoding=st.none() | encodings,
    body=st.builds(_json, nearly_right(), st.booleans()),
    compress=st.sampled_from([None, gzip.compress, zlib.compress]),
)
@FUZZ
async def test_any_header_gets_an_answer_or_a_json_refusal_that_stores_nothing(
    api: RawApi,
    authorization: bytes | None,
    headers: dict[bytes, bytes],
    encoding: bytes | None,
    body: bytes,
    compress: Callable[[bytes], bytes] | None,
) -> None:
    sent = [api.authorization if authorization is None else b"Authorization: " + authorization]
    sent += [name + b": " + value for name, value in headers.items()]
    if encoding is not None:
        sent.append(b"Content-Encoding: " + encoding)
    if compress is not None:
        body = compress(body)
    answer = await assert_refusal_stores_nothing(api, api.post(body, *sent))
    event(f"answered {answer.status}")


@given(contact_id=st.text(max_size=40))
@FUZZ
async def test_any_contact_id_gets_the_contact_or_a_json_404(api: RawApi, contact_id: str) -> None:
    path = quote(contact_id.encode("utf-8", "surrogatepass"), safe="").encode()
    head = (
        b"GET /api/v1/contacts/"
        + path
        + b" HTTP/1.1\r\nHost: api\r\n"
        + api.authorization
        + b"\r\n"
    )
    answer = await api.send(head)
    assert_answered(answer)
    assert answer.status in (200, 404), answer


# -- found by these tests, each once


EVENT = b'{"event": "page_viewed", "phone": "0912345678"}'


@pytest.mark.parametrize(
    ("head", "body", "status"),
    [
        (b"Content-Encoding: gzip", EVENT, 422),
        (b"Content-Encoding: deflate", gzip.compress(EVENT)[:-4], 422),
        (b"Content-Encoding: gzip", gzip.compress(b" " * (MAX_BODY + 1)), 413),
        (b"Content-Encoding: br", EVENT, 415),
        (b"Idempotency-Key: \xff\xfe\x80", EVENT, 422),
    ],
    ids=[
        "a plain body said to be gzip",
        "a compressed body cut short",
        "a small body inflating past 64 KiB",
        "an encoding the API does not inflate",
        "a key of bytes no UTF-8 decodes",
    ],
)
async def test_a_body_or_key_that_cannot_be_decoded_is_refused_in_json(
    api: RawApi, head: bytes, body: bytes, status: int
) -> None:
    """aiohttp inflated bodies itself, and answered one that does not inflate with a plain-text
    400 (or, once it had begun reading it, a 500 from the API)."""
    answer = await assert_refusal_stores_nothing(api, api.post(body, api.authorization, head))
    assert answer.status == status


async def test_a_gzip_body_is_read(api: RawApi) -> None:
    head = b"Content-Encoding: gzip"
    answer = await api.post(gzip.compress(EVENT), api.authorization, head)
    assert (answer.status, answer.json()["created_contact"]) == (200, True)


async def test_an_authorization_of_bytes_no_utf_8_decodes_is_a_401(api: RawApi) -> None:
    """It reached the key's hash as lone surrogates: a 500, for every event of its batch."""
    answer = await assert_refusal_stores_nothing(
        api, api.post(EVENT, b"Authorization: Bearer sk_\xff\xfe")
    )
    assert answer.status == 401


async def test_a_contact_id_of_other_digits_is_a_404(api: RawApi) -> None:
    """ "²" is a digit to str.isdigit() and not to int(): a 500."""
    head = b"GET /api/v1/contacts/%C2%B2 HTTP/1.1\r\nHost: api\r\n" + api.authorization + b"\r\n"
    answer = await api.send(head)
    assert_answered(answer)
    assert answer.status == 404


async def test_the_sandbox_reads_a_10_kb_idempotency_key_and_refuses_it_in_json(
    sqlite_template: Path, tmp_path: Path
) -> None:
    """The servers that serve the API are built with SERVER_OPTIONS: aiohttp's own limit (8 KiB)
    answered a plain-text 400 before the API saw the request."""
    database = tmp_path / "sandbox.db"
    shutil.copy(sqlite_template, database)
    services = build_services(
        Settings(_env_file=None, database_url=f"sqlite+aiosqlite:///{database}")  # type: ignore[call-arg]
    )
    _, secret = await services.api_keys.create(SYSTEM, "website")
    sandbox = Sandbox(services, port=0, state_file=tmp_path / "sandbox.json")
    await sandbox.start()
    try:
        api = RawApi(sandbox.port, secret, services)
        answer = await api.post(EVENT, api.authorization, b"Idempotency-Key: " + b"k" * 10_000)
    finally:
        await sandbox.stop()
        await services.close()
    assert_answered(answer)
    assert (answer.status, answer.json()["field"]) == (422, "idempotency_key")
