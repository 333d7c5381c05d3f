"""The HTTP API under /api/v1 (ISSUE 7), for web forms, landing pages, email tools and
accounting: `POST /events`, `GET /contacts/{id}`, `GET /healthz` and `GET /openapi.json`. Served
by `stagekeeper webhook` beside the Telegram webhook and by `stagekeeper sandbox` on its port.

Thin, like a handler: authenticate, validate, call EventService, answer JSON. Every refusal is
JSON too: 401 for an unknown or revoked key, 413 for a body over 64 KiB (inflated), 415 for a
Content-Encoding other than gzip or deflate, 422 with the field at fault and why (malformed or
too deeply nested JSON, a body not in its Content-Encoding, a control character in a text, an
Idempotency-Key header over 200 characters), 404 for what does not exist, 503 when the database
is busy or unavailable (nothing was changed; send it again in a moment).

A server that serves the API passes SERVER_OPTIONS to its runner, so that these refusals are
the API's: aiohttp itself would refuse a header over 8 KiB, or a body that does not inflate,
with a plain-text 400 before any handler runs. What HTTP itself forbids (a control character in
a header, a header given twice that may be given once) is still aiohttp's to refuse."""

from __future__ import annotations

import json
import logging
import zlib
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
)
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema
from sqlalchemy import text

from bot.batching import Batcher
from bot.container import Services
from bot.schemas import ContactOut
from domain.access import SYSTEM
from domain.errors import DomainError, InvalidEvent, NotFound
from domain.model import ApiKey, EventKind, Notice, Outcome
from domain.ports import DatabaseBusy, DatabaseUnavailable
from domain.services.events import EventDraft, EventResult
from domain.text import refuse_control_characters
from storage.db import READ_ONLY

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"
MAX_BODY = 64 * 1024
IDEMPOTENCY_KEY_MAX = 200  # characters, in the body or the Idempotency-Key header
# A header (name and value) the HTTP server reads, where aiohttp's own limit is 8190 bytes: one
# longer is refused by aiohttp before any handler runs, with a plain-text 400. Up to this size,
# the API answers (an Idempotency-Key over IDEMPOTENCY_KEY_MAX is a 422 naming it).
MAX_HEADER = 32 * 1024
# For the runner of a server that serves the API (web.AppRunner, TestServer.start_server): its
# request line too, so that a long path gets the API's 404; and bodies left as sent, for the API
# to inflate (_inflated). Nothing else on those servers takes a compressed body.
SERVER_OPTIONS: dict[str, Any] = {
    "max_field_size": MAX_HEADER,
    "max_line_size": MAX_HEADER,
    "auto_decompress": False,
}
BATCH_MAX = 100  # events (or keys) in one unit of work
# Contact ids are 32-bit integers in PostgreSQL; a larger one names nothing.
ID_MAX = 2**31 - 1

NoticeSink = Callable[[list[Notice]], None]


def _text_only(text: str) -> str:
    """The domain's rule for text from outside (domain.text), as a validation error naming the
    field; pydantic itself refuses lone surrogates, which no UTF-8 can store."""
    try:
        return refuse_control_characters(text)
    except ValueError as error:
        raise PydanticCustomError("control_character", "{reason}", {"reason": str(error)}) from None


TextOnly = AfterValidator(_text_only)
Phone = Annotated[str, StringConstraints(max_length=32), TextOnly]
Email = Annotated[str, StringConstraints(max_length=254), TextOnly]
Short = Annotated[str, StringConstraints(max_length=100), TextOnly]
Long = Annotated[str, StringConstraints(max_length=200), TextOnly]
IdempotencyKey = Annotated[str, StringConstraints(max_length=IDEMPOTENCY_KEY_MAX), TextOnly]
FieldName = Annotated[str, StringConstraints(max_length=64), TextOnly]
FieldValue = Annotated[str, StringConstraints(max_length=1000), TextOnly]


class EventIn(BaseModel):
    """An event about a contact, who is found by phone, email or external id (at least one),
    or created when unknown."""

    model_config = ConfigDict(
        extra="forbid",
        title="Event",
        json_schema_extra={
            "anyOf": [
                {"required": ["phone"]},
                {"required": ["email"]},
                {"required": ["external_id"]},
            ]
        },
    )

    event: EventKind = Field(description="What happened.")
    phone: Phone | None = Field(None, description="Any format, e.g. 0912 345 678.")
    email: Email | None = None
    external_id: Short | None = Field(None, description="The contact's id in the calling system.")
    name: Long | None = None
    company: Long | None = None
    source: Short | None = Field(
        None, description="Where a new contact came from; the API key's name when absent."
    )
    value: Annotated[Decimal, Field(ge=0, lt=10**16)] | None = Field(
        None, description="An amount with at most 2 decimals, e.g. the revenue booked."
    )
    custom_fields: dict[FieldName, FieldValue] = Field(default_factory=dict, max_length=50)
    idempotency_key: IdempotencyKey | None = Field(
        None,
        description="The same key (per API key) again has no further effect and gets the first "
        "answer; also accepted as the Idempotency-Key header.",
    )


class _OptionalMeansAbsent(GenerateJsonSchema):
    """The request schema leaves optional fields out instead of offering null (which is taken
    as absent all the same), so that clients and test generators send real values."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])


class EventOut(BaseModel):
    model_config = ConfigDict(title="EventResult")

    event_id: int
    event: EventKind
    outcome: Outcome = Field(
        description="moved; unchanged (already in the rule's stage); declined (automation only "
        "moves forward and never out of won or lost: `detail` says why); no_rule."
    )
    detail: str | None
    replayed: bool = Field(description="The idempotency key was seen before: the first answer.")
    created_contact: bool
    contact: ContactOut

    @classmethod
    def of(cls, result: EventResult) -> EventOut:
        event = result.event
        assert event.id is not None
        return cls(
            event_id=event.id,
            event=event.kind,
            outcome=event.outcome,
            detail=event.detail,
            replayed=result.replayed,
            created_contact=event.created_contact,
            contact=ContactOut.of(result.contact),
        )


class ErrorOut(BaseModel):
    model_config = ConfigDict(title="Error")

    error: str
    field: str | None = Field(None, description="The part of the request at fault (422).")
    reason: str


class HealthOut(BaseModel):
    model_config = ConfigDict(title="Health")

    status: Literal["ok", "unavailable"]


class ApiError(Exception):
    def __init__(self, status: int, error: str, reason: str, field: str | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.body = ErrorOut(error=error, field=field, reason=reason)


UNAUTHORIZED_HEADERS = {"WWW-Authenticate": 'Bearer realm="stagekeeper"'}
# Seconds a client is told to wait before sending again what a busy database refused.
BUSY_RETRY_AFTER_S = 5


class Api:
    def __init__(self, services: Services, notify: NoticeSink) -> None:
        self.services = services
        self.notify = notify
        self.record: Batcher[tuple[str, EventDraft], EventResult | DomainError] = Batcher(
            services.events.record_many, limit=BATCH_MAX
        )
        self.authenticate: Batcher[str, ApiKey | None] = Batcher(
            services.api_keys.authenticate_many, limit=BATCH_MAX
        )

    async def post_event(self, request: web.Request) -> web.Response:
        key = await self._authenticated(request)
        payload = _validated(await _body(request), request.headers.get("Idempotency-Key"))
        draft = EventDraft(
            kind=payload.event.value,
            phone=payload.phone,
            email=payload.email,
            external_id=payload.external_id,
            name=payload.name,
            company=payload.company,
            source=payload.source,
            value=payload.value,
            custom_fields=dict(payload.custom_fields),
            idempotency_key=payload.idempotency_key,
        )
        result = await self.record((key.name, draft))
        if isinstance(result, InvalidEvent):
            raise ApiError(422, result.code, result.reason, result.field)
        if isinstance(result, NotFound):
            raise ApiError(404, result.code, result.message)
        if isinstance(result, DomainError):  # a conflict that outlasted the retries
            raise ApiError(409, result.code, result.message)
        self.notify(result.notices)
        return _json(EventOut.of(result))

    async def get_contact(self, request: web.Request) -> web.Response:
        await self._authenticated(request)
        raw = request.match_info["contact_id"]
        # ASCII: str.isdigit() is true of "²" too, which int() refuses.
        if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= ID_MAX:
            raise ApiError(404, "not_found", f"No contact has the id {raw!r}.")
        try:
            details = await self.services.contacts.get(SYSTEM, int(raw))
        except NotFound as error:
            raise ApiError(404, error.code, error.message) from None
        return _json(ContactOut.of(details))

    async def healthz(self, request: web.Request) -> web.Response:
        try:
            async with self.services.engine.connect() as connection:
                # A read: on SQLite it waits for no writer (an import holding the lock).
                await connection.execution_options(**{READ_ONLY: True})
                await connection.execute(text("SELECT 1"))
        except Exception:
            log.exception("health check: the database does not answer")
            return _json(HealthOut(status="unavailable"), status=503)
        return _json(HealthOut(status="ok"))

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    async def _authenticated(self, request: web.Request) -> ApiKey:
        scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
        secret = secret.strip()
        key = None
        # Keys are ASCII; a header's other bytes arrive as surrogates, which no hash takes.
        if scheme.lower() == "bearer" and secret and secret.isascii():
            key = await self.authenticate(secret)
        if key is None:
            raise ApiError(401, "unauthorized", "Give a valid API key as Authorization: Bearer.")
        return key


async def _body(request: web.Request) -> bytes:
    """The body, refused with 413 past MAX_BODY without reading the rest (the sandbox's
    application accepts 50 MB uploads, so its limit cannot serve here)."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise _too_large()
    body = bytearray()
    async for chunk in request.content.iter_chunked(16 * 1024):
        body += chunk
        if len(body) > MAX_BODY:
            raise _too_large()
    return _inflated(bytes(body), request.headers.get("Content-Encoding", ""))


def _inflated(body: bytes, encoding: str) -> bytes:
    """The body as sent before its Content-Encoding, if any: gzip or deflate (zlib), at most
    MAX_BODY of it (a small body can inflate to gigabytes)."""
    coding = encoding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding not in ("gzip", "x-gzip", "deflate"):
        raise ApiError(
            415, "unsupported_encoding", "Send the body as it is, or with gzip or deflate."
        )
    inflater = zlib.decompressobj(zlib.MAX_WBITS | 32)  # a gzip or a zlib header, as it comes
    try:
        inflated = inflater.decompress(body, MAX_BODY + 1)
    except zlib.error:
        inflated = None
    if inflated is not None and len(inflated) > MAX_BODY:
        raise _too_large()
    if inflated is None or not inflater.eof:  # not compressed, or cut short
        raise ApiError(422, "invalid", f"The body is not {coding} as its Content-Encoding says.")
    return inflated


def _too_large() -> ApiError:
    return ApiError(413, "too_large", f"A request body has at most {MAX_BODY // 1024} KiB.")


def _validated(body: bytes, idempotency_header: str | None) -> EventIn:
    try:
        data = json.loads(body, parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise ApiError(422, "invalid", f"The body is not JSON: {error}.") from None
    except RecursionError:  # 64 KiB of brackets nest deeper than Python's decoder goes
        raise ApiError(422, "invalid", "The body is JSON nested too deeply.") from None
    if idempotency_header is not None and isinstance(data, dict):
        data = {**data, "idempotency_key": _header_key(idempotency_header, data)}
    try:
        return EventIn.model_validate(data)
    except ValidationError as error:
        problem = error.errors(include_url=False)[0]
        field = ".".join(str(part) for part in problem["loc"]) or None
        raise ApiError(422, "invalid", problem["msg"], field) from None


def _header_key(header: str, data: dict[str, Any]) -> str:
    """The Idempotency-Key header's key, which the body may repeat but not contradict; it is
    then validated as the body's would be (no control characters)."""
    key = header.strip()
    if data.get("idempotency_key") not in (None, key) or not 0 < len(key) <= IDEMPOTENCY_KEY_MAX:
        raise ApiError(
            422,
            "invalid",
            "The Idempotency-Key header differs from idempotency_key or is not 1 to "
            f"{IDEMPOTENCY_KEY_MAX} characters.",
            "idempotency_key",
        )
    return key


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _json(model: BaseModel, status: int = 200) -> web.Response:
    return web.json_response(
        text=model.model_dump_json(), status=status, content_type="application/json"
    )


@web.middleware
async def _errors_as_json(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as error:
        response = _json(error.body, error.status)
        if error.status == 401:
            response.headers.update(UNAUTHORIZED_HEADERS)
        return response
    except DatabaseUnavailable as error:
        log.warning("%s %s: %s (%s)", request.method, request.path, error.message, error.detail)
        body = ErrorOut(error=error.code, field=None, reason=error.message)
        busy = isinstance(error, DatabaseBusy)
        headers = {"Retry-After": str(BUSY_RETRY_AFTER_S)} if busy else {}
        return web.json_response(text=body.model_dump_json(), status=503, headers=headers)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        code = error.reason.lower().replace(" ", "_")
        body = ErrorOut(error=code, field=None, reason=error.reason)
        return web.json_response(
            text=body.model_dump_json(), status=error.status, headers=_allow(error)
        )
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        body = ErrorOut(error="internal", field=None, reason="Something went wrong on our side.")
        return web.json_response(text=body.model_dump_json(), status=500)


def _allow(error: web.HTTPException) -> dict[str, str] | None:
    allow = error.headers.get("Allow")
    return {"Allow": allow} if allow else None


def build_api(services: Services, notify: NoticeSink) -> web.Application:
    """The API as an application to mount at API_PREFIX (see `mount_api`)."""
    api = Api(services, notify)
    app = web.Application(middlewares=[_errors_as_json])
    app.router.add_post("/events", api.post_event)
    app.router.add_get("/contacts/{contact_id}", api.get_contact)
    app.router.add_get("/healthz", api.healthz)
    app.router.add_get("/openapi.json", api.openapi)
    return app


def mount_api(app: web.Application, services: Services, notify: NoticeSink) -> None:
    app.add_subapp(API_PREFIX, build_api(services, notify))


def _openapi() -> dict[str, Any]:
    schemas: dict[str, Any] = {}
    for model in (EventIn, EventOut, ContactOut, ErrorOut, HealthOut):
        generator = _OptionalMeansAbsent if model is EventIn else GenerateJsonSchema
        schema = model.model_json_schema(
            ref_template="#/components/schemas/{model}", schema_generator=generator
        )
        schemas.update(schema.pop("$defs", {}))
        schemas[str(schema["title"])] = schema

    def ref(name: str) -> dict[str, Any]:
        return {
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}
        }

    def error(description: str) -> dict[str, Any]:
        return {"description": description, **ref("Error")}

    unauthorized = error("No API key, or an unknown or revoked one.")
    unavailable = error(
        "The database is busy (another write held it too long: Retry-After says when to try "
        "again), full or failing; nothing was changed."
    )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stagekeeper",
            "version": "1",
            "description": "Events that move contacts through lifecycle stages, and contacts.",
        },
        "servers": [{"url": API_PREFIX}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/events": {
                "post": {
                    "operationId": "postEvent",
                    "summary": "Record an event; automation moves the contact's stage.",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "Idempotency-Key",
                            "in": "header",
                            "required": False,
                            "schema": {
                                "type": "string",
                                "minLength": 1,
                                "maxLength": IDEMPOTENCY_KEY_MAX,
                            },
                        }
                    ],
                    "requestBody": {"required": True, **ref("Event")},
                    "responses": {
                        "200": {"description": "Recorded (or replayed).", **ref("EventResult")},
                        "401": unauthorized,
                        "404": error("A replayed event's contact was deleted since."),
                        "409": error("The contact kept changing meanwhile; send it again."),
                        "413": error("The body is over 64 KiB (inflated)."),
                        "415": error("A Content-Encoding other than gzip or deflate."),
                        "422": error("The event is invalid: `field` and `reason` say why."),
                        "503": unavailable,
                    },
                }
            },
            "/contacts/{contact_id}": {
                "get": {
                    "operationId": "getContact",
                    "summary": "A contact with its stage, owner and company.",
                    "security": [{"bearer": []}],
                    "parameters": [
                        {
                            "name": "contact_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "integer"},
                        }
                    ],
                    "responses": {
                        "200": {"description": "The contact.", **ref("Contact")},
                        "401": unauthorized,
                        "404": error("No such contact."),
                        "503": unavailable,
                    },
                }
            },
            "/healthz": {
                "get": {
                    "operationId": "health",
                    "summary": "Whether the service and its database answer.",
                    "security": [],
                    "responses": {
                        "200": {"description": "Healthy.", **ref("Health")},
                        "503": {"description": "The database does not answer.", **ref("Health")},
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "operationId": "openapi",
                    "summary": "This document.",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "OpenAPI 3.1",
                            "content": {"application/json": {"schema": {"type": "object"}}},
                        }
                    },
                }
            },
        },
    }


OPENAPI = _openapi()
