"""GET /metrics, read with prometheus_client's parser as Prometheus reads it: counters move as
events are published and delivered, the queue gauges say where deliveries wait.

The live server is shared by the session, so process counters are compared before and after
what a test does; another test's leftover retries may add attempts, never take them away."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests import live
from tests.api import Lab
from tests.conftest import settings_for
from tests.delivery_helpers import wire
from tests.observability_helpers import Samples, scrape, value
from tests.receiver import Receiver, Reply

ACCEPTED = "labhooks_events_accepted_total"
FINISHED = "labhooks_deliveries_finished_total"


def grown(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def test_counters_move_as_events_are_published_and_delivered(
    server: live.LiveServer, lab: Lab, receiver: Receiver
) -> None:
    wired = wire(lab, receiver)
    good, bad = wired.path(), wired.path()
    answered = wired.subscribe(receiver.script(good, Reply()))
    failing = wired.subscribe(receiver.script(bad, Reply(status=500)))
    before = scrape(server.url)

    wired.publish(*[wired.event(value=i) for i in range(3)])
    wired.publish(wired.event(idempotency_key="once"))
    wired.publish(wired.event(idempotency_key="once"))  # a duplicate: not accepted again
    wired.settle(answered["id"], "succeeded", count=4)
    wired.settle(failing["id"], "failed", count=4, timeout=30)

    def recorded() -> bool:
        now = scrape(server.url)
        return grown(before, now, FINISHED, outcome="failed") >= 4 and (
            grown(before, now, FINISHED, outcome="succeeded") >= 4
        )

    live.wait_until(recorded, "the finished deliveries to be counted")
    after = scrape(server.url)
    assert grown(before, after, ACCEPTED, type="data_point.created") == 4
    # the schedule is 0,0.2,0.2,0.2: four attempts per failing delivery, three retries
    assert grown(before, after, "labhooks_delivery_attempts_total", result="5xx") >= 16
    assert grown(before, after, "labhooks_delivery_attempts_total", result="2xx") >= 4
    assert grown(before, after, "labhooks_delivery_retries_scheduled_total") >= 12
    assert grown(before, after, "labhooks_delivery_attempt_duration_seconds_count") >= 20
    assert value(after, "labhooks_database_up") == 1
    assert grown(before, after, "labhooks_subscriptions_failing") == 1


def test_queue_gauges_say_where_deliveries_wait(
    server: live.LiveServer, lab: Lab, receiver: Receiver
) -> None:
    """A retry the target asked to come back for in an hour is scheduled; once the
    organisation's webhooks are switched off it is held, and a 410 deactivates."""
    wired = wire(lab, receiver)
    later, gone = wired.path(), wired.path()
    wait_an_hour = Reply(status=503, headers={"Retry-After": "3600"})
    waiting = wired.subscribe(receiver.script(later, wait_an_hour))
    wired.subscribe(receiver.script(gone, Reply(status=410)))
    before = scrape(server.url)

    wired.publish(wired.event())
    wired.attempted(waiting["id"], 1)

    def counted() -> bool:
        now = scrape(server.url)
        return (
            grown(before, now, "labhooks_queue_deliveries", state="scheduled") == 1
            and grown(before, now, "labhooks_subscriptions_auto_disabled", reason="gone") == 1
        )

    live.wait_until(counted, "the retry and the deactivation to show")
    lab.server_admin.ok("PATCH", f"/organizations/{lab.id}", {"webhooks_enabled": False})
    after = scrape(server.url)
    assert grown(before, after, "labhooks_queue_deliveries", state="held") == 1
    assert grown(before, after, "labhooks_queue_deliveries", state="scheduled") == 0


def test_metrics_hold_no_secret_and_a_token_guards_them_when_set(
    server: live.LiveServer, lab: Lab, receiver: Receiver, tmp_path: Path
) -> None:
    wired = wire(lab, receiver)
    path = wired.path()
    subscription = wired.subscribe(receiver.script(path, Reply()))
    secret = wired.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}/secret")["key"]
    wired.publish(wired.event())
    wired.settle(subscription["id"], "succeeded")
    text = httpx.get(f"{server.url}/metrics").text
    for private in ("lims-token", lab.id, lab.name, path, secret, wired.admin.token):
        assert private not in text

    guarded = settings_for(server.settings.database_url, tmp_path, metrics_token="scrape-me")
    with live.LiveServer(guarded, with_worker=False) as other:
        refused = httpx.get(f"{other.url}/metrics")
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == "Bearer"
        wrong = httpx.get(f"{other.url}/metrics", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        samples = scrape(other.url, Authorization="Bearer scrape-me")
        assert value(samples, "labhooks_database_up") == 1
