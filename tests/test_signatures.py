"""ed25519 (Standard Webhooks `v1a`) signatures beside HMAC (`v1`): per subscription, verified
here as a receiver would, with the public key fetched without an account (`cryptography`; the
`standardwebhooks` library verifies only `v1` and skips `v1a` signatures, which is checked too).
"""

from __future__ import annotations

import asyncio
import base64
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook

from labhooks.domain.signing import SignatureScheme, Signer, public_key_of
from labhooks.security import SecretBox, new_signing_key
from labhooks.settings import Settings
from labhooks.storage.database import Database
from labhooks.storage.models import WebhookSubscription, utcnow
from tests.api import Api, Lab, problem_fields
from tests.delivery_helpers import Wired, run_sql, wire
from tests.receiver import Received, Receiver, Reply, verifies, versions

SUBS = "/webhook-subscriptions"


def stored(database_url: str, subscription_id: str) -> WebhookSubscription:
    async def read() -> WebhookSubscription:
        database = Database(database_url)
        try:
            async with database.session() as db:
                found = await db.scalar(
                    select(WebhookSubscription).where(WebhookSubscription.id == subscription_id)
                )
                assert found is not None
                return found
        finally:
            await database.dispose()

    return asyncio.run(read())


def end_overlap(database_url: str, subscription_id: str) -> None:
    """As if the 24 hours after a rotation had passed (a new version, so workers reload it)."""

    async def run() -> None:
        database = Database(database_url)
        try:
            async with database.engine.begin() as connection:
                await connection.execute(
                    update(WebhookSubscription)
                    .where(WebhookSubscription.id == subscription_id)
                    .values(
                        previous_secret_expires_at=utcnow() - timedelta(seconds=1),
                        updated_at=utcnow(),
                    )
                )
        finally:
            await database.dispose()

    asyncio.run(run())


@pytest.fixture
def wired(lab: Lab, receiver: Receiver) -> Wired:
    return wire(lab, receiver)


# -- the rules, without a server -------------------------------------------------------------


def test_our_signer_reproduces_the_reference_librarys_v1a_vector() -> None:
    """The vector of the spec's Go library (`whsk_` is base64 of the 32-byte seed)."""
    signer = Signer(["whsk_VEVTVFNJR05JTkdLRVlET05PVFVTRVRISVNGT1JBTlk="])
    signature = signer.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')
    assert signature == (
        "v1a,tQ9V2XOqn7jL/DQenEFpqIugdBVtiMmER5mhSkXBNwM0mkATuDe6KYYUuxqtaiHeYGb7KaaBRdM5WqyeFiL8Ag=="
    )


def test_a_new_key_pair_signs_what_its_public_key_verifies() -> None:
    private = new_signing_key(SignatureScheme.ED25519)
    public = public_key_of(private)
    assert private.startswith("whsk_") and public and public.startswith("whpk_")
    assert len(base64.b64decode(public.removeprefix("whpk_"))) == 32
    assert public_key_of(new_signing_key(SignatureScheme.HMAC)) is None
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(int(time.time()))}
    body = b'{"type": "x"}'
    other = public_key_of(new_signing_key(SignatureScheme.ED25519))
    assert other
    for secrets in ([private], [private, new_signing_key(SignatureScheme.HMAC)]):
        signature = Signer(secrets).signature("msg_1", int(headers["webhook-timestamp"]), body)
        request = Received("/", headers | {"webhook-signature": signature}, body, 0)
        assert verifies(public, request)
        assert not verifies(other, request)


def test_the_standard_webhooks_library_skips_v1a_and_verifies_v1_beside_it() -> None:
    """During a switch between schemes both go out; an HMAC receiver is not disturbed."""
    secret = new_signing_key(SignatureScheme.HMAC)
    timestamp = int(time.time())
    body = '{"type": "x"}'
    signature = Signer([new_signing_key(SignatureScheme.ED25519), secret]).signature(
        "msg_2", timestamp, body
    )
    headers = {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
    assert Webhook(secret).verify(body, headers) == {"type": "x"}


# -- through the API and a real receiver, on both databases ----------------------------------


def test_an_ed25519_subscription_is_verified_with_its_published_key(
    wired: Wired, anonymous: Api, settings: Settings
) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, Reply()), signature_scheme="ed25519")
    assert subscription["signature_scheme"] == "ed25519"
    [shown] = subscription["public_keys"]
    assert shown["key"].startswith("whpk_") and shown["expires_at"] is None
    base = f"{SUBS}/{subscription['id']}"

    # anyone fetches it, no token; the owner's routes show the same key
    response = anonymous.get(base + "/public-key")
    assert response.status_code == 200, response.text
    assert response.json() == {"keys": [shown]}
    assert "max-age" in response.headers["cache-control"]
    assert wired.admin.ok("GET", base + "/secret") == {"key": shown["key"]}
    assert wired.admin.ok("GET", base)["public_keys"] == [shown]

    # the private key is encrypted at rest, as an HMAC secret is, and is the public key's pair
    row = stored(settings.database_url, subscription["id"])
    assert "whsk_" not in row.secret_encrypted
    private = SecretBox(settings.resolved_secret_key()).decrypt(row.secret_encrypted)
    assert private.startswith("whsk_") and public_key_of(private) == shown["key"]

    wired.publish(wired.event(value=3.25))
    [request] = wired.receiver.wait_for(path, 1)
    assert versions(request) == ["v1a"]
    assert verifies(shown["key"], request)
    assert request.json["data"]["value"] == 3.25


def test_the_public_key_route_tells_nothing_about_other_subscriptions(
    wired: Wired, anonymous: Api
) -> None:
    hmac = wired.subscribe(wired.receiver.url(wired.path()))
    assert hmac["signature_scheme"] == "hmac" and hmac["public_keys"] == []
    ed = wired.subscribe(wired.receiver.url(wired.path()), signature_scheme="ed25519")
    assert wired.admin.delete(f"{SUBS}/{ed['id']}").status_code == 204
    answers = [
        anonymous.get(f"{SUBS}/{subscription_id}/public-key")
        for subscription_id in (hmac["id"], ed["id"], "sub_unknown")
    ]
    assert {r.status_code for r in answers} == {404}
    assert len({r.text for r in answers}) == 1  # the same answer for each


def test_rotation_keeps_the_previous_key_signing_for_a_day(
    wired: Wired, anonymous: Api, settings: Settings
) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, Reply()), signature_scheme="ed25519")
    base = f"{SUBS}/{subscription['id']}"
    old = subscription["public_keys"][0]["key"]
    new = wired.admin.ok("POST", base + "/rotate-secret")["key"]
    assert new.startswith("whpk_") and new != old

    current, previous = anonymous.get(base + "/public-key").json()["keys"]
    assert current == {"key": new, "expires_at": None}
    assert previous["key"] == old
    expires = datetime.fromisoformat(previous["expires_at"])
    assert abs(expires - (datetime.now(UTC) + timedelta(hours=24))) < timedelta(minutes=1)
    assert wired.admin.ok("GET", base)["public_keys"] == [current, previous]

    wired.publish(wired.event())
    [request] = wired.receiver.wait_for(path, 1)
    assert versions(request) == ["v1a", "v1a"]
    assert verifies(new, request) and verifies(old, request)  # a receiver with a cached key too

    end_overlap(settings.database_url, subscription["id"])
    assert anonymous.get(base + "/public-key").json() == {"keys": [current]}
    wired.publish(wired.event())
    _, later = wired.receiver.wait_for(path, 2)
    assert versions(later) == ["v1a"]
    assert verifies(new, later) and not verifies(old, later)


def test_switching_schemes_makes_a_new_key_and_signs_with_both_for_a_day(
    wired: Wired, anonymous: Api
) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, Reply()))
    base = f"{SUBS}/{subscription['id']}"
    secret = wired.admin.ok("GET", base + "/secret")["key"]

    # hmac → ed25519: receivers holding the secret keep verifying while they move to the key
    switched = wired.admin.ok("PATCH", base, {"signature_scheme": "ed25519"})
    [key] = switched["public_keys"]
    assert switched["signature_scheme"] == "ed25519" and key["expires_at"] is None
    wired.publish(wired.event())
    [request] = wired.receiver.wait_for(path, 1)
    assert versions(request) == ["v1a", "v1"]
    assert verifies(key["key"], request)
    Webhook(secret).verify(request.body, request.headers)

    # PUT without the field keeps the scheme and its key; the same scheme again changes nothing
    body = {
        "target_url": subscription["target_url"],
        "channels": [{"channel_id": wired.channel_id, "events": ["data_point.created"]}],
    }
    kept = wired.admin.ok("PUT", base, body)
    assert kept["signature_scheme"] == "ed25519" and kept["public_keys"][0] == key
    again = wired.admin.ok("PATCH", base, {"signature_scheme": "ed25519"})
    assert again["public_keys"][0] == key

    # ed25519 → hmac: a new secret; the key is still published while it signs
    back = wired.admin.ok("PUT", base, body | {"signature_scheme": "hmac"})
    assert back["signature_scheme"] == "hmac"
    [previous] = back["public_keys"]
    assert previous["key"] == key["key"] and previous["expires_at"] is not None
    assert anonymous.get(base + "/public-key").json() == {"keys": [previous]}
    new_secret = wired.admin.ok("GET", base + "/secret")["key"]
    assert new_secret.startswith("whsec_") and new_secret != secret
    wired.publish(wired.event())
    _, later = wired.receiver.wait_for(path, 2)
    assert versions(later) == ["v1", "v1a"]
    assert verifies(key["key"], later)
    Webhook(new_secret).verify(later.body, later.headers)


def test_an_unknown_scheme_is_refused_naming_the_field(wired: Wired) -> None:
    body: dict[str, Any] = {
        "target_url": wired.receiver.url(wired.path()),
        "channels": [{"channel_id": wired.channel_id, "events": ["data_point.created"]}],
        "signature_scheme": "rsa",
    }
    response = wired.admin.post(SUBS, body)
    assert response.status_code == 422
    assert "signature_scheme" in problem_fields(response)


def test_a_private_key_that_cannot_be_decrypted_fails_its_own_deliveries_alone(
    wired: Wired, settings: Settings
) -> None:
    bad_path, good_path = wired.path(), wired.path()
    bad = wired.subscribe(
        wired.receiver.script(bad_path), signature_scheme="ed25519", retry_schedule=[0, 3600]
    )
    good = wired.subscribe(wired.receiver.script(good_path), signature_scheme="ed25519")
    run_sql(
        settings.database_url,
        "UPDATE webhook_subscriptions SET secret_encrypted = :v WHERE id = :id",
        v="gAAAAABdamaged",
        id=bad["id"],
    )
    wired.publish(wired.event())
    [request] = wired.receiver.wait_for(good_path, 1)
    assert verifies(good["public_keys"][0]["key"], request)
    [delivery] = wired.attempted(bad["id"], attempts=1)
    assert delivery["status"] == "pending"  # retried on the schedule, like any failure
    [attempt] = wired.delivery(delivery["id"])["attempts"]
    assert "ed25519 private key cannot be decrypted" in attempt["error"]
    assert "LABHOOKS_SECRET_KEY" in attempt["error"]
    assert wired.receiver.received(bad_path) == []
