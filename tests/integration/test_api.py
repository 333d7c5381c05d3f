"""The HTTP API (ISSUE 7) over HTTP, without a bot: keys, limits, validation, replays and the
OpenAPI document, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from bot.api import IDEMPOTENCY_KEY_MAX, MAX_BODY, SERVER_OPTIONS, mount_api
from bot.container import Services
from domain.access import SYSTEM
from domain.model import Notice, Role

PATH = "/api/v1/events"


class Api:
    def __init__(self, client: TestClient[Any, Any], secret: str, told: list[Notice]) -> None:
        self.client = client
        self.secret = secret
        self.told = told

    async def post(
        self, body: Any, *, secret: str | None = None, **headers: str
    ) -> tuple[int, Any]:
        headers.setdefault("Authorization", f"Bearer {secret or self.secret}")
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        async with self.client.post(PATH, data=data, headers=headers) as response:
            return response.status, await response.json()

    async def get(self, path: str, **headers: str) -> tuple[int, Any]:
        headers.setdefault("Authorization", f"Bearer {self.secret}")
        async with self.client.get(path, headers=headers) as response:
            assert response.content_type == "application/json"
            return response.status, await response.json()


@pytest.fixture
async def api(services: Services) -> AsyncIterator[Api]:
    await services.stages.apply_template(SYSTEM, "amis")
    _, secret = await services.api_keys.create(SYSTEM, "website")
    told: list[Notice] = []
    app = web.Application()
    mount_api(app, services, told.extend)
    server = TestServer(app)
    await server.start_server(**SERVER_OPTIONS)  # as the webhook and sandbox servers do
    async with TestClient(server) as client:
        yield Api(client, secret, told)


async def test_an_event_answers_with_the_outcome_and_the_contact(
    api: Api, services: Services
) -> None:
    await services.users.add(SYSTEM, "Lan", Role.AGENT, telegram_id=2003)
    status, body = await api.post(
        {"event": "form_submitted", "phone": "0912 345 678", "custom_fields": {"Plan": "Pro"}}
    )
    assert status == 200
    assert (body["outcome"], body["replayed"], body["created_contact"]) == ("moved", False, True)
    assert body["contact"]["stage"] == {"id": 1, "name": "Lead", "category": "open"}
    assert body["contact"]["custom_fields"] == {"Plan": "Pro"}
    assert [n.contact_id for n in api.told] == [body["contact"]["id"]]


async def test_the_idempotency_key_header_replays_the_first_answer(api: Api) -> None:
    event = {"event": "revenue_booked", "email": "an@example.com", "value": "1500000.50"}
    status, first = await api.post(event, **{"Idempotency-Key": "inv-1"})
    assert status == 200
    status, again = await api.post(event, **{"Idempotency-Key": "inv-1"})
    assert (status, again["replayed"]) == (200, True)
    assert {**again, "replayed": False} == first
    assert first["contact"]["value"] == "1500000.50"


async def test_a_reused_idempotency_key_with_another_event_is_a_422(api: Api) -> None:
    await api.post({"event": "page_viewed", "phone": "0912345678", "idempotency_key": "k"})
    status, body = await api.post(
        {"event": "unsubscribed", "phone": "0912345678", "idempotency_key": "k"}
    )
    assert (status, body["field"]) == (422, "idempotency_key")


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        (b"{not json", None, "not JSON"),
        (b"[1, 2]", None, "dictionary"),
        (b'{"event": "form_submitted", "value": NaN, "phone": "0912345678"}', None, "NaN"),
        ({"phone": "0912345678"}, "event", "required"),
        ({"event": "form_sent", "phone": "0912345678"}, "event", "form_submitted"),
        ({"event": "form_submitted"}, "phone", "phone, email or external_id"),
        ({"event": "form_submitted", "phone": "12"}, "phone", "not a phone number"),
        ({"event": "form_submitted", "email": "nobody"}, "email", "not an email"),
        ({"event": "form_submitted", "phone": 912345678}, "phone", "string"),
        ({"event": "form_submitted", "phone": "0912345678", "colour": "red"}, "colour", "Extra"),
        ({"event": "revenue_booked", "phone": "0912345678", "value": "1.005"}, "value", "2"),
        ({"event": "revenue_booked", "phone": "0912345678", "value": -1}, "value", "0"),
        ({"event": "form_submitted", "phone": "0912345678", "name": "x" * 201}, "name", "200"),
    ],
)
async def test_an_invalid_event_is_a_422_naming_the_field_and_the_reason(
    api: Api, body: Any, field: str | None, reason: str
) -> None:
    status, answer = await api.post(body)
    assert (status, answer["error"], answer["field"]) == (422, "invalid", field)
    assert reason in answer["reason"]


async def test_an_invalid_event_changes_nothing(api: Api, services: Services) -> None:
    await api.post({"event": "form_submitted", "phone": "0912345678", "value": "1.005"})
    assert await services.contacts.find(SYSTEM, "0912345678") == []


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 30_000 + b"]" * 30_000,
        b'{"event": "form_submitted", "phone": "0912345678", "custom_fields": {"a": '
        + b"[" * 20_000
        + b"]" * 20_000
        + b"}}",
    ],
    ids=["array", "inside a field"],
)
async def test_deeply_nested_json_under_64_kib_is_a_422(
    api: Api, services: Services, body: bytes
) -> None:
    """Python's JSON decoder gives up past a thousand levels, with a RecursionError (a 500)."""
    assert len(body) < MAX_BODY
    status, answer = await api.post(body)
    assert (status, answer["error"]) == (422, "invalid")
    assert "nested too deeply" in answer["reason"]
    assert await services.contacts.find(SYSTEM, "0912345678") == []


async def test_an_idempotency_key_header_of_10_kb_is_a_422_naming_the_limit(api: Api) -> None:
    """aiohttp reads headers up to 8 KiB and refuses longer ones with a plain-text 400 before
    any handler runs; the API's servers read more (SERVER_OPTIONS), so that the API can say
    what is wrong."""
    event = {"event": "form_submitted", "phone": "0912345678"}
    status, answer = await api.post(event, **{"Idempotency-Key": "k" * 10_000})
    assert (status, answer["field"]) == (422, "idempotency_key")
    assert f"1 to {IDEMPOTENCY_KEY_MAX} characters" in answer["reason"]
    status, _ = await api.post(event, **{"Idempotency-Key": "k" * IDEMPOTENCY_KEY_MAX})
    assert status == 200


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"name": "An\x00 Nguyen"}, "name"),
        ({"name": "An \x1b[31mred"}, "name"),
        ({"company": "Acme\x7f"}, "company"),
        ({"source": "web\x00"}, "source"),
        ({"external_id": "crm\x00-7"}, "external_id"),
        ({"email": "an\x00@example.com"}, "email"),
        ({"custom_fields": {"Plan": "Pro\x00"}}, "custom_fields.Plan"),
        ({"custom_fields": {"Pl\x00an": "Pro"}}, "custom_fields.Pl\x00an.[key]"),
        ({"idempotency_key": "inv\x00-1"}, "idempotency_key"),
    ],
)
async def test_a_control_character_in_a_text_is_a_422_and_stores_nothing(
    api: Api, services: Services, event: dict[str, Any], field: str
) -> None:
    """As an import refuses it (domain.text.refuse_control_characters); PostgreSQL cannot
    store a NUL at all (it was a 500 there)."""
    status, answer = await api.post({"event": "form_submitted", "phone": "0912345678", **event})
    assert (status, answer["error"], answer["field"]) == (422, "invalid", field)
    assert "contains a control character (U+00" in answer["reason"]
    assert await services.contacts.find(SYSTEM, "0912345678") == []


async def test_a_body_over_64_kib_is_a_413_with_or_without_a_length(api: Api) -> None:
    big = json.dumps({"event": "form_submitted", "name": "x" * MAX_BODY}).encode()
    status, body = await api.post(big)
    assert (status, body["error"]) == (413, "too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(5):
            yield b" " * (MAX_BODY // 4)

    headers = {"Authorization": f"Bearer {api.secret}"}
    async with api.client.post(PATH, data=chunks(), headers=headers) as response:
        assert response.status == 413


@pytest.mark.parametrize(
    "authorization", ["", "Bearer", "Bearer sk_nope", "Basic dXNlcjpwYXNz", "sk_nope"]
)
async def test_without_a_valid_key_it_is_a_401(api: Api, authorization: str) -> None:
    status, body = await api.post({"event": "page_viewed"}, Authorization=authorization)
    assert (status, body["error"]) == (401, "unauthorized")


async def test_a_revoked_key_is_a_401(api: Api, services: Services) -> None:
    await services.api_keys.revoke(SYSTEM, "website")
    status, _ = await api.post({"event": "page_viewed", "phone": "0912345678"})
    assert status == 401
    status, _ = await api.get("/api/v1/contacts/1")
    assert status == 401


async def test_a_contact_is_read_by_id(api: Api) -> None:
    _, posted = await api.post({"event": "opportunity_pool", "external_id": "crm-7"})
    status, contact = await api.get(f"/api/v1/contacts/{posted['contact']['id']}")
    assert status == 200
    assert contact == posted["contact"]


@pytest.mark.parametrize("contact_id", ["999", "0", "abc", "99999999999999999999", "-1"])
async def test_an_unknown_contact_is_a_404(api: Api, contact_id: str) -> None:
    status, body = await api.get(f"/api/v1/contacts/{contact_id}")
    assert (status, body["error"]) == (404, "not_found")


async def test_unknown_paths_and_methods_answer_json(api: Api) -> None:
    status, body = await api.get("/api/v1/nothing")
    assert (status, body["error"]) == (404, "not_found")
    async with api.client.delete("/api/v1/events") as response:
        assert response.status == 405
        assert (await response.json())["error"] == "method_not_allowed"


async def test_health_and_the_openapi_document_need_no_key(api: Api) -> None:
    status, health = await api.get("/api/v1/healthz", Authorization="")
    assert (status, health) == (200, {"status": "ok"})
    status, document = await api.get("/api/v1/openapi.json", Authorization="")
    assert status == 200
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {
        "/events",
        "/contacts/{contact_id}",
        "/healthz",
        "/openapi.json",
    }
