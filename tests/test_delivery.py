"""Deliveries against a real receiver on 127.0.0.1: signed, retried, logged, answered."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from labhooks import __version__
from labhooks.settings import Settings
from tests.api import Lab, problem_fields
from tests.delivery_helpers import Wired, claimable, make_due, run_sql, wire
from tests.receiver import RawReceiver, Receiver, Reply

OK = Reply()
FAIL = Reply(status=500, body=b"down")


@pytest.fixture
def wired(lab: Lab, receiver: Receiver) -> Wired:
    return wire(lab, receiver)


def test_a_delivery_is_signed_verifiable_and_carries_the_event(wired: Wired) -> None:
    url = wired.receiver.script(wired.path(), OK)
    subscription = wired.subscribe(url)
    published = wired.publish(wired.event(value=12.5))
    assert published["deliveries_created"] == 1

    [request] = wired.receiver.wait_for(url.split(str(wired.receiver.port))[1], 1)
    secret = wired.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}/secret")["key"]
    body = Webhook(secret).verify(request.body, request.headers)  # raises if the signature is bad
    assert body["type"] == "data_point.created"
    assert body["data"]["value"] == 12.5 and body["data"]["unit"] == "g"
    assert body["data"]["event_id"] == published["event_ids"][0]
    assert body["data"]["device"] == {"id": wired.device["id"], "name": "Balance XS205"}
    assert body["data"]["channel"]["key"] == "weight"
    assert request.headers["Authorization"] == "Bearer lims-token"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"] == f"labhooks/{__version__}"

    [delivery] = wired.settle(subscription["id"], "succeeded")
    assert request.headers["webhook-id"] == delivery["id"]
    detail = wired.delivery(delivery["id"])
    [attempt] = detail["attempts"]
    assert attempt["response_status"] == 200 and attempt["response_body"] == '{"received": true}'
    assert attempt["request_headers"]["Authorization"] == "••••••••"  # secrets stay secret in logs
    assert detail["request_body"] == body


def test_our_signer_reproduces_the_standard_webhooks_test_vector() -> None:
    from labhooks.domain.signing import Signer

    signer = Signer(["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
    signature = signer.signature("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, '{"test": 2432232314}')
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_retries_after_500s_until_success_and_logs_each_attempt(wired: Wired) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, FAIL, FAIL, OK))
    wired.publish(wired.event())
    [delivery] = wired.settle(subscription["id"], "succeeded")
    received = wired.receiver.received(path)
    assert len(received) == 3
    assert len({r.headers["webhook-id"] for r in received}) == 1  # stable across retries
    detail = wired.delivery(delivery["id"])
    assert detail["attempt_count"] == 3
    assert [a["response_status"] for a in detail["attempts"]] == [500, 500, 200]
    assert [a["number"] for a in detail["attempts"]] == [1, 2, 3]


def test_after_the_last_attempt_the_delivery_is_failed_and_can_be_resent(wired: Wired) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, FAIL, FAIL, FAIL, FAIL, OK))
    wired.publish(wired.event())
    [delivery] = wired.settle(subscription["id"], "failed")
    assert delivery["attempt_count"] == 4 and delivery["last_status_code"] == 500
    resent = wired.admin.ok("POST", f"/deliveries/{delivery['id']}/resend", expect=202)
    assert resent["status"] == "pending"
    wired.settle(subscription["id"], "succeeded")
    assert len({r.headers["webhook-id"] for r in wired.receiver.received(path)}) == 1


def test_replay_requeues_failed_deliveries_since_a_time(wired: Wired) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, FAIL), retry_schedule=[0])
    since = datetime.now(UTC).isoformat()
    wired.publish(wired.event(1), wired.event(2))
    wired.settle(subscription["id"], "failed", count=2)
    wired.receiver.script(path, OK)
    replayed = wired.admin.ok(
        "POST", f"/webhook-subscriptions/{subscription['id']}/replay", {"since": since}, 202
    )
    assert replayed == {"deliveries_queued": 2}
    wired.settle(subscription["id"], "succeeded", count=2)


def test_timeout_and_connection_refused_are_logged_errors(wired: Wired, lab: Lab) -> None:
    slow = wired.subscribe(wired.receiver.script(wired.path(), Reply(delay=3)), retry_schedule=[0])
    from tests.live import free_port

    closed_port = free_port()
    lab.register(f"http://127.0.0.1:{closed_port}/")
    refused = wired.subscribe(f"http://127.0.0.1:{closed_port}/in", retry_schedule=[0])
    wired.publish(wired.event())
    [timed_out] = wired.settle(slow["id"], "failed")
    assert "timed out" in timed_out["last_error"]
    [attempt] = wired.delivery(timed_out["id"])["attempts"]
    assert attempt["response_status"] is None and attempt["duration_ms"] >= 900  # it waited
    [unreachable] = wired.settle(refused["id"], "failed")
    assert "could not connect" in unreachable["last_error"]


def test_429_retry_after_is_honoured(wired: Wired) -> None:
    path = wired.path()
    busy = Reply(status=429, headers={"Retry-After": "1"}, body=b"slow down")
    subscription = wired.subscribe(wired.receiver.script(path, busy, OK))
    wired.publish(wired.event())
    wired.settle(subscription["id"], "succeeded")
    first, second = wired.receiver.received(path)
    assert second.at - first.at >= 0.95  # the schedule alone would retry after 0.2 s


def test_410_gone_deactivates_the_subscription_with_a_reason(wired: Wired) -> None:
    subscription = wired.subscribe(wired.receiver.script(wired.path(), Reply(status=410)))
    wired.publish(wired.event())
    [delivery] = wired.settle(subscription["id"], "failed")
    assert delivery["attempt_count"] == 1
    after = wired.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}")
    assert after["active"] is False and "410" in after["disabled_reason"]


def test_redirects_are_not_followed(wired: Wired) -> None:
    path = wired.path()
    elsewhere = wired.path()
    moved = Reply(status=302, headers={"Location": wired.receiver.url(elsewhere)}, body=b"")
    subscription = wired.subscribe(wired.receiver.script(path, moved), retry_schedule=[0])
    wired.publish(wired.event())
    [delivery] = wired.settle(subscription["id"], "failed")
    assert "not followed" in delivery["last_error"] and delivery["last_status_code"] == 302
    assert wired.receiver.received(elsewhere) == []


def test_a_huge_answer_is_cut_to_64_kib(wired: Wired) -> None:
    huge = Reply(body=b"x" * (5 * 1024 * 1024), headers={"Content-Type": "text/plain"})
    subscription = wired.subscribe(wired.receiver.script(wired.path(), huge))
    wired.publish(wired.event())
    [delivery] = wired.settle(subscription["id"], "succeeded")
    [attempt] = wired.delivery(delivery["id"])["attempts"]
    assert len(attempt["response_body"]) == 64 * 1024


def test_feature_off_holds_queued_deliveries_and_publishes_nothing_new(
    wired: Wired, lab: Lab, settings: Settings
) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, FAIL, OK), retry_schedule=[0, 3600])
    wired.publish(wired.event())
    [delivery] = wired.attempted(subscription["id"], attempts=1)
    assert claimable(settings.database_url, delivery["id"], seconds_from_now=5000)  # once due
    lab.server_admin.ok("PATCH", f"/organizations/{lab.id}", {"webhooks_enabled": False})
    assert wired.publish(wired.event())["deliveries_created"] == 0
    # held: even when its retry is due, no worker claims it, and it keeps its one attempt
    assert not claimable(settings.database_url, delivery["id"], seconds_from_now=5000)
    [held] = wired.deliveries(subscription["id"], status="pending")
    assert held["attempt_count"] == 1
    make_due(settings.database_url, delivery["id"])
    lab.server_admin.ok("PATCH", f"/organizations/{lab.id}", {"webhooks_enabled": True})
    wired.settle(subscription["id"], "succeeded")
    assert len(wired.receiver.received(path)) == 2


def test_deactivation_holds_retries_and_reactivation_resumes_them(
    wired: Wired, settings: Settings
) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, FAIL, OK), retry_schedule=[0, 3600])
    wired.publish(wired.event())
    [delivery] = wired.attempted(subscription["id"], attempts=1)
    wired.admin.ok("POST", f"/webhook-subscriptions/{subscription['id']}/deactivate")
    assert wired.publish(wired.event())["deliveries_created"] == 0
    assert not claimable(settings.database_url, delivery["id"], seconds_from_now=5000)
    assert wired.delivery(delivery["id"])["attempt_count"] == 1
    make_due(settings.database_url, delivery["id"])
    wired.admin.ok("POST", f"/webhook-subscriptions/{subscription['id']}/activate")
    wired.settle(subscription["id"], "succeeded")
    assert len(wired.receiver.received(path)) == 2


def test_deletion_cancels_queued_deliveries_and_keeps_their_history(
    wired: Wired, settings: Settings
) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, FAIL, OK), retry_schedule=[0, 3600])
    wired.publish(wired.event())
    [delivery] = wired.attempted(subscription["id"], attempts=1)
    assert wired.admin.delete(f"/webhook-subscriptions/{subscription['id']}").status_code == 204
    assert not claimable(settings.database_url, delivery["id"], seconds_from_now=5000)
    kept = wired.delivery(delivery["id"])
    assert kept["status"] == "cancelled" and len(kept["attempts"]) == 1


def test_a_delivery_of_a_deleted_subscription_cannot_be_resent(wired: Wired) -> None:
    subscription = wired.subscribe(wired.receiver.script(wired.path(), FAIL), retry_schedule=[0])
    wired.publish(wired.event())
    [delivery] = wired.settle(subscription["id"], "failed")
    assert wired.admin.delete(f"/webhook-subscriptions/{subscription['id']}").status_code == 204
    refused = wired.admin.post(f"/deliveries/{delivery['id']}/resend")
    assert refused.status_code == 409 and "deleted" in refused.json()["detail"]
    assert wired.delivery(delivery["id"])["status"] == "failed"  # not pending for ever


def test_after_rotation_both_secrets_verify_for_a_day(wired: Wired) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, OK))
    base = f"/webhook-subscriptions/{subscription['id']}"
    old = wired.admin.ok("GET", base + "/secret")["key"]
    new = wired.admin.ok("POST", base + "/rotate-secret")["key"]
    wired.publish(wired.event())
    [request] = wired.receiver.wait_for(path, 1)
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    for secret in (old, new):
        Webhook(secret).verify(request.body, request.headers)


def test_ordered_subscriptions_send_one_at_a_time_in_event_order(wired: Wired) -> None:
    path = wired.path()
    slow_ok = Reply(delay=0.05)
    subscription = wired.subscribe(wired.receiver.script(path, FAIL, FAIL, slow_ok), ordered=True)
    published = wired.publish(*[wired.event(value=i) for i in range(6)])
    wired.settle(subscription["id"], "succeeded", count=6)
    received = wired.receiver.received(path)
    assert wired.receiver.max_in_flight[path] == 1
    first_seen: list[str] = []
    for request in received:
        if request.event_id not in first_seen:
            first_seen.append(request.event_id)
    assert first_seen == published["event_ids"]


def test_unordered_deliveries_go_out_in_parallel(wired: Wired) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, Reply(delay=0.3)))
    wired.publish(*[wired.event(value=i) for i in range(8)])
    wired.settle(subscription["id"], "succeeded", count=8)
    assert wired.receiver.max_in_flight[path] > 1


def test_rate_limit_spaces_deliveries(wired: Wired) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, OK), rate_limit_per_s=5)
    wired.publish(*[wired.event(value=i) for i in range(10)])
    wired.settle(subscription["id"], "succeeded", count=10)
    arrivals = [r.at for r in wired.receiver.received(path)]
    assert len(arrivals) == 10
    assert arrivals[-1] - arrivals[0] >= 0.9  # 5 go at once, then 5 per second


def test_request_response_returns_the_targets_json(wired: Wired) -> None:
    answer = Reply(body=b'{"sample": "S-17", "method": {"name": "Karl Fischer"}}')
    subscription = wired.subscribe(wired.receiver.script(wired.path(), answer))
    published = wired.publish(wired.event(value="S-17"), wait=5)
    [got] = published["answers"]
    assert got["subscription_id"] == subscription["id"] and got["timed_out"] is False
    assert got["response_status"] == 200
    assert got["response"] == {"sample": "S-17", "method": {"name": "Karl Fischer"}}
    event = wired.admin.ok("GET", f"/events/{published['event_ids'][0]}")
    assert event["deliveries"][0]["status"] == "succeeded"


def test_request_response_marks_a_slow_target_as_timed_out(wired: Wired) -> None:
    subscription = wired.subscribe(wired.receiver.script(wired.path(), Reply(delay=0.8)))
    published = wired.publish(wired.event(), wait=0.2)
    assert published["answers"] == [
        {
            "subscription_id": subscription["id"],
            "delivery_id": published["answers"][0]["delivery_id"],
            "timed_out": True,
            "status": None,
            "response_status": None,
            "response": None,
            "response_body": None,
            "error": None,
        }
    ]


def test_test_event_reaches_only_this_subscription_and_shows_in_the_log(wired: Wired) -> None:
    path, other = wired.path(), wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, OK))
    wired.subscribe(wired.receiver.script(other, OK))
    sent = wired.admin.ok("POST", f"/webhook-subscriptions/{subscription['id']}/test", expect=202)
    [request] = wired.receiver.wait_for(path, 1)
    # a ping by default: about no device, so a LIMS that ignores `test` records no reading
    assert request.json["type"] == "ping" and request.json["data"]["test"] is True
    assert "device" not in request.json["data"] and "value" not in request.json["data"]
    [delivery] = wired.settle(subscription["id"], "succeeded")
    assert delivery["id"] == sent["id"] and len(wired.delivery(sent["id"])["attempts"]) == 1
    assert wired.receiver.received(other) == []


def test_a_sample_of_a_subscribed_type_is_shown_before_it_is_sent(wired: Wired) -> None:
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, OK))
    test = f"/webhook-subscriptions/{subscription['id']}/test"
    preview = wired.admin.ok("GET", f"{test}?event_type=data_point.created")
    assert preview["choices"] == ["ping", "data_point.created"]
    assert preview["body"]["type"] == "data_point.created" and preview["body"]["data"]["test"]
    wired.admin.ok("POST", test, {"event_type": "data_point.created"}, 202)
    [request] = wired.receiver.wait_for(path, 1)
    sent, shown = request.json, preview["body"]
    for body in (sent, shown):
        body["data"].pop("event_id")
        body.pop("timestamp")
    assert sent == shown  # what was shown is what went out
    unselected = wired.admin.get(test, params={"event_type": "run.started"})
    assert unselected.status_code == 422 and "event_type" in problem_fields(unselected)


def test_fan_out_reaches_each_matching_active_subscription_once(
    wired: Wired, other_lab: Lab
) -> None:
    a, b, off, other_event = (wired.path() for _ in range(4))
    first = wired.subscribe(wired.receiver.script(a, OK))
    second = wired.subscribe(wired.receiver.script(b, OK))
    inactive = wired.subscribe(wired.receiver.script(off, OK), active=False)
    wired.subscribe(
        wired.receiver.script(other_event, OK),
        channels=[{"channel_id": wired.channel_id, "events": ["command.completed"]}],
    )
    published = wired.publish(wired.event(), wired.event())
    assert published["deliveries_created"] == 4
    wired.settle(first["id"], "succeeded", count=2)
    wired.settle(second["id"], "succeeded", count=2)
    assert wired.deliveries(inactive["id"]) == []
    assert wired.receiver.received(other_event) == []


def test_a_member_who_lost_access_receives_nothing_new(wired: Wired, lab: Lab) -> None:
    member, member_id = lab.add_member()
    grant = lab.grant(member_id, wired.channel_id)
    path = wired.path()
    subscription = wired.subscribe(wired.receiver.script(path, OK), api=member)
    assert wired.publish(wired.event())["deliveries_created"] == 1
    lab.admin.delete(f"/channel-grants/{grant['id']}")
    assert wired.publish(wired.event())["deliveries_created"] == 0
    wired.settle(subscription["id"], "succeeded")


def test_idempotency_key_makes_a_second_publish_a_no_op(wired: Wired) -> None:
    subscription = wired.subscribe(wired.receiver.script(wired.path(), OK))
    first = wired.publish(wired.event(idempotency_key="scan-42"))
    again = wired.publish(
        wired.event(idempotency_key="scan-42"), wired.event(idempotency_key="scan-43")
    )
    assert again["event_ids"][0] == first["event_ids"][0]
    assert again["duplicates"] == [True, False] and again["deliveries_created"] == 1
    wired.settle(subscription["id"], "succeeded", count=2)


BAD_EVENTS = [
    ({"data": {"value": {"nested": 1}}}, "data.value"),
    ({"data": {}}, "data.value"),
    ({"type": "run.started"}, "type"),
    ({"type": "boiled"}, "type"),
    ({"channel_key": "nope"}, "channel_key"),
    ({"device_id": "dev_nope"}, "device_id"),
    ({"occurred_at": "yesterday"}, "occurred_at"),
]


@pytest.mark.parametrize(("change", "field"), BAD_EVENTS)
def test_invalid_events_are_refused_naming_the_field(
    wired: Wired, change: dict, field: str
) -> None:
    response = wired.admin.post("/events", wired.event() | change)
    assert response.status_code == 422
    assert field in problem_fields(response)


def test_a_batch_is_all_or_nothing_and_limited(wired: Wired) -> None:
    good = wired.event(idempotency_key="batch-good")
    response = wired.admin.post("/events", [good, wired.event(type="boiled")])
    assert response.status_code == 422 and "1.type" in problem_fields(response)
    assert wired.publish(good)["duplicates"] == [False]  # the good one was not stored before
    too_many = wired.admin.post("/events", [{}] * 1001)
    assert too_many.status_code == 422
    assert problem_fields(too_many) == {"body": "at most 1000 events per request"}


def test_members_cannot_publish_but_gateway_tokens_can(wired: Wired, lab: Lab) -> None:
    member, _ = lab.add_member()
    assert member.post("/events", wired.event()).status_code == 403
    gateway = lab.admin.as_(None).ok(
        "POST",
        "/tokens",
        {
            "email": f"admin@{lab.name}.example",
            "password": "correct horse battery",
            "scope": "publish",
        },
        201,
    )["token"]
    assert lab.admin.as_(gateway).post("/events", wired.event()).status_code == 202


def test_a_slow_target_does_not_hold_back_the_others(wired: Wired) -> None:
    slow_path, fast_path = wired.path(), wired.path()
    held = threading.Event()
    slow = wired.subscribe(wired.receiver.script(slow_path, Reply(gate=held)))
    fast = wired.subscribe(wired.receiver.script(fast_path, OK))
    wired.publish(*[wired.event(value=i) for i in range(10)])  # 20 deliveries, one batch
    try:
        # every fast delivery is sent and recorded while the slow target answers none
        wired.settle(fast["id"], "succeeded", count=10)
        assert wired.receiver.answered_at[slow_path] == []
    finally:
        held.set()
    wired.settle(slow["id"], "succeeded", count=10)


def test_deleting_a_user_cancels_the_queued_deliveries_of_its_subscriptions(
    wired: Wired, lab: Lab
) -> None:
    member, member_id = lab.add_member()
    lab.grant(member_id, wired.channel_id)
    path = wired.path()
    subscription = wired.subscribe(
        wired.receiver.script(path, FAIL), api=member, retry_schedule=[0, 3600]
    )
    wired.publish(wired.event())
    [delivery] = wired.attempted(subscription["id"], attempts=1)
    assert lab.admin.delete(f"/users/{member_id}").status_code == 204
    kept = wired.delivery(delivery["id"])
    assert kept["status"] == "cancelled" and kept["completed_at"] is not None
    assert len(kept["attempts"]) == 1  # its history stays readable


def test_a_secret_that_cannot_be_decrypted_fails_its_own_deliveries_alone(
    wired: Wired, settings: Settings
) -> None:
    """A damaged signing secret or header value (or a changed LABHOOKS_SECRET_KEY) fails the
    deliveries of that subscription with an attempt that says so; the batch goes out."""
    bad_secret_path, bad_header_path, good_path = wired.path(), wired.path(), wired.path()
    bad_secret = wired.subscribe(wired.receiver.script(bad_secret_path), retry_schedule=[0, 3600])
    bad_header = wired.subscribe(wired.receiver.script(bad_header_path), retry_schedule=[0, 3600])
    good = wired.subscribe(wired.receiver.script(good_path))
    damaged = "gAAAAABdamaged"
    run_sql(
        settings.database_url,
        "UPDATE webhook_subscriptions SET secret_encrypted = :v WHERE id = :id",
        v=damaged,
        id=bad_secret["id"],
    )
    run_sql(
        settings.database_url,
        "UPDATE subscription_headers SET value_encrypted = :v WHERE subscription_id = :id",
        v=damaged,
        id=bad_header["id"],
    )
    wired.publish(wired.event())  # three deliveries, claimed in one batch
    wired.receiver.wait_for(good_path, 1)
    wired.settle(good["id"], "succeeded")
    for subscription, what in ((bad_secret, "signing secret"), (bad_header, "header")):
        [delivery] = wired.attempted(subscription["id"], attempts=1)
        assert delivery["status"] == "pending"  # retried on the schedule, like any failure
        [attempt] = wired.delivery(delivery["id"])["attempts"]
        assert attempt["response_status"] is None
        assert what in attempt["error"] and "LABHOOKS_SECRET_KEY" in attempt["error"]
    assert wired.receiver.received(bad_secret_path) == []
    assert wired.receiver.received(bad_header_path) == []


LATIN1_HEADER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/csv\r\n"
    b"Content-Disposition: attachment; filename=M\xfcller.csv\r\nContent-Length: 2\r\n\r\nok"
)
NUL_BODY = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\na\x00b\xffc"


def test_odd_answers_are_stored_as_far_as_they_can_be_and_never_stall_other_deliveries(
    wired: Wired, lab: Lab
) -> None:
    """A Latin-1 byte in a response header: the header is kept by name, its value left out and
    the note says so (the HTTP client hands over printable ASCII values only). A NUL and an
    invalid UTF-8 byte in a body: stored escaped, with a note. Every other delivery is
    recorded as usual."""
    with RawReceiver(LATIN1_HEADER) as latin1, RawReceiver(NUL_BODY) as nul:
        for raw in (latin1, nul):
            lab.register(raw.url())
        odd_header = wired.subscribe(latin1.url("/in"))
        odd_body = wired.subscribe(nul.url("/in"))
        good_path = wired.path()
        good = wired.subscribe(wired.receiver.script(good_path))
        wired.publish(wired.event(1))
        wired.settle(good["id"], "succeeded")
        [header_delivery] = wired.settle(odd_header["id"], "succeeded")
        [body_delivery] = wired.settle(odd_body["id"], "succeeded")
        wired.publish(wired.event(2))  # and the worker goes on recording
        wired.settle(good["id"], "succeeded", count=2)
    [attempt] = wired.delivery(header_delivery["id"])["attempts"]
    assert attempt["response_headers"]["content-disposition"] == ""
    assert "content-disposition is not kept" in attempt["response_note"]
    [attempt] = wired.delivery(body_delivery["id"])["attempts"]
    assert attempt["response_body"] == "a\\x00b\\xffc"
    assert "escaped" in attempt["response_note"] and "body" in attempt["response_note"]
