"""Publishing keeps what it reads about an organisation (devices, channels, who subscribes to
what) per process, until the organisation's publishing revision moves. Changes made behind the
server's back, as another process or an operator's SQL would make them, must reach the very
next publish; writes that publishing does not read must leave the revision (and the cache) be."""

from __future__ import annotations

import pytest

from labhooks.settings import Settings
from tests import live
from tests.api import Lab
from tests.delivery_helpers import Wired, query, run_sql, wire
from tests.receiver import Receiver, Reply


@pytest.fixture
def wired(lab: Lab, receiver: Receiver) -> Wired:
    return wire(lab, receiver)


def _revision(settings: Settings, lab: Lab) -> int:
    [(revision,)] = query(
        settings.database_url,
        "SELECT publishing_revision FROM organizations WHERE id = :id",
        id=lab.id,
    )
    return int(revision)


def test_a_subscription_switched_off_elsewhere_gets_nothing_from_the_next_publish(
    wired: Wired, settings: Settings
) -> None:
    subscription = wired.subscribe(wired.receiver.script(wired.path()))
    assert wired.publish(wired.event())["deliveries_created"] == 1

    run_sql(
        settings.database_url,
        "UPDATE webhook_subscriptions SET active = false WHERE id = :id",
        id=subscription["id"],
    )
    assert wired.publish(wired.event())["deliveries_created"] == 0

    run_sql(
        settings.database_url,
        "UPDATE webhook_subscriptions SET active = true WHERE id = :id",
        id=subscription["id"],
    )
    assert wired.publish(wired.event())["deliveries_created"] == 1


def test_a_channel_renamed_elsewhere_is_known_by_its_new_key_at_once(
    wired: Wired, settings: Settings
) -> None:
    assert wired.publish(wired.event())["event_ids"]
    run_sql(
        settings.database_url,
        "UPDATE channels SET key = 'mass' WHERE id = :id",
        id=wired.channel_id,
    )
    refused = wired.admin.post("/events", wired.event())
    assert refused.status_code == 422
    assert "its channel keys: mass, status" in refused.text
    accepted = wired.admin.post("/events", wired.event(channel_key="mass"))
    assert accepted.status_code == 202, accepted.text


def test_a_grant_withdrawn_elsewhere_stops_its_holders_subscription_at_once(
    wired: Wired, settings: Settings
) -> None:
    member, member_id = wired.lab.add_member()
    grant = wired.lab.grant(member_id, wired.channel_id)
    wired.subscribe(wired.receiver.script(wired.path()), api=member)
    assert wired.publish(wired.event())["deliveries_created"] == 1

    run_sql(settings.database_url, "DELETE FROM channel_grants WHERE id = :id", id=grant["id"])
    assert wired.publish(wired.event())["deliveries_created"] == 0


def test_only_what_publishing_reads_moves_the_revision(wired: Wired, settings: Settings) -> None:
    """A device seen, a subscription failing: written all day, read by no publish."""
    subscription = wired.subscribe(wired.receiver.script(wired.path()))
    before = _revision(settings, wired.lab)
    run_sql(
        settings.database_url,
        "UPDATE devices SET last_seen_at = created_at WHERE id = :id",
        id=wired.device["id"],
    )
    run_sql(
        settings.database_url,
        "UPDATE webhook_subscriptions SET failing_since = created_at WHERE id = :id",
        id=subscription["id"],
    )
    assert _revision(settings, wired.lab) == before

    wired.admin.ok("PATCH", f"/devices/{wired.device['id']}", {"name": "Balance renamed"})
    assert _revision(settings, wired.lab) > before


def test_a_target_starting_to_fail_moves_nothing_publishing_keeps(
    wired: Wired, settings: Settings
) -> None:
    """The worker's failing-streak bookkeeping is not a change of the subscription: neither
    its version nor the organisation's publishing revision moves."""
    subscription = wired.subscribe(wired.receiver.script(wired.path(), Reply(status=500)))
    before = _revision(settings, wired.lab)
    wired.publish(wired.event())
    live.wait_until(
        lambda: bool(
            query(
                settings.database_url,
                "SELECT failing_since FROM webhook_subscriptions WHERE id = :id",
                id=subscription["id"],
            )[0][0]
        ),
        "the subscription's failing streak to start",
    )
    assert _revision(settings, wired.lab) == before
    now = wired.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}")
    assert now["updated_at"] == subscription["updated_at"]
