"""API keys: shown once, stored as hashes, managed by admins only."""

from __future__ import annotations

import hashlib

import pytest

from domain.errors import AccessDenied, InvalidInput, NotFound
from domain.services.apikeys import TRUSTED_FOR, ApiKeyService
from tests.unit.conftest import Clock, People
from tests.unit.fakes import FakeDatabase


@pytest.fixture
def keys(db: FakeDatabase, clock: Clock) -> ApiKeyService:
    return ApiKeyService(db.uow, clock)


async def test_a_key_is_stored_as_the_hash_of_its_secret_only(
    db: FakeDatabase, keys: ApiKeyService, people: People
) -> None:
    key, secret = await keys.create(people.admin, "website")
    [stored] = db.state.api_keys.values()
    assert stored.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(stored)
    assert secret.startswith(key.prefix)
    assert key.created_by_id == people.admin.id


async def test_the_secret_authenticates_its_key(keys: ApiKeyService, people: People) -> None:
    key, secret = await keys.create(people.admin, "website")
    assert await keys.authenticate(secret) == key


@pytest.mark.parametrize("wrong", ["", "sk_", "Bearer x", "sk_" + "A" * 43, "sk_" + "x" * 200])
async def test_other_secrets_authenticate_nothing(
    keys: ApiKeyService, people: People, wrong: str
) -> None:
    await keys.create(people.admin, "website")
    assert await keys.authenticate(wrong) is None


async def test_a_secret_with_the_right_prefix_but_wrong_rest_authenticates_nothing(
    keys: ApiKeyService, people: People
) -> None:
    key, secret = await keys.create(people.admin, "website")
    forged = key.prefix + ("A" if secret[-1] != "A" else "B") * (len(secret) - len(key.prefix))
    assert await keys.authenticate(forged) is None


async def test_a_revoked_key_no_longer_authenticates(keys: ApiKeyService, people: People) -> None:
    _, secret = await keys.create(people.admin, "website")
    revoked = await keys.revoke(people.admin, "Website")
    assert not revoked.active
    assert await keys.authenticate(secret) is None


async def test_a_name_is_taken_until_its_key_is_revoked(
    keys: ApiKeyService, people: People
) -> None:
    await keys.create(people.admin, "website")
    with pytest.raises(InvalidInput):
        await keys.create(people.admin, "WEBSITE")
    await keys.revoke(people.admin, "website")
    _, secret = await keys.create(people.admin, "website")
    assert await keys.authenticate(secret) is not None
    assert len(await keys.list(people.admin)) == 2


async def test_revoking_an_unknown_key_says_so(keys: ApiKeyService, people: People) -> None:
    with pytest.raises(NotFound):
        await keys.revoke(people.admin, "nope")


async def test_only_admins_manage_keys(keys: ApiKeyService, people: People) -> None:
    with pytest.raises(AccessDenied):
        await keys.create(people.manager, "website")
    with pytest.raises(AccessDenied):
        await keys.list(people.agent)


async def test_a_key_revoked_elsewhere_is_refused_once_no_longer_trusted(
    db: FakeDatabase, keys: ApiKeyService, clock: Clock, people: People
) -> None:
    _, secret = await keys.create(people.admin, "website")
    assert await keys.authenticate(secret) is not None
    await ApiKeyService(db.uow, clock).revoke(people.admin, "website")  # another process
    assert await keys.authenticate(secret) is not None
    clock.advance(seconds=TRUSTED_FOR.total_seconds())
    assert await keys.authenticate(secret) is None


async def test_many_secrets_are_checked_at_once_in_their_order(
    keys: ApiKeyService, people: People
) -> None:
    web, web_secret = await keys.create(people.admin, "website")
    shop, shop_secret = await keys.create(people.admin, "shop")
    found = await keys.authenticate_many([shop_secret, "sk_wrong", web_secret, shop_secret])
    assert found == [shop, None, web, shop]
