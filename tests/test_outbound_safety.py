"""Outbound safety (SPEC §4): deliveries reach only public addresses unless a network is allowed.

The sender tests run under an audit hook that blocks any connection to a non-loopback address,
so a broken guard fails the test instead of sending traffic anywhere.
"""

from __future__ import annotations

import asyncio
import ipaddress
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from labhooks.delivery.http import HttpSender
from labhooks.delivery.sender import Request
from labhooks.domain.network import AddressPolicy, parse_networks
from tests.api import Api, Lab, new_lab, subscription_body
from tests.conftest import first_server_admin, settings_for
from tests.delivery_helpers import Wired, wire
from tests.live import LiveServer, fresh_database
from tests.receiver import Receiver

_GUARD = {"on": False}


def _block_non_loopback(event: str, args: tuple[object, ...]) -> None:
    if _GUARD["on"] and event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and not ipaddress.ip_address(str(address[0])).is_loopback:
            raise ConnectionRefusedError(f"test guard: blocked a connection to {address[0]}")


sys.addaudithook(_block_non_loopback)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("fd00::1", "private"),
        ("::ffff:10.0.0.1", "private"),
        ("0.0.0.0", "unspecified"),  # noqa: S104
        ("64:ff9b::a9fe:a9fe", "link-local"),  # NAT64: a gateway sends it to 169.254.169.254
        ("64:ff9b:1::a00:1", "private"),  # NAT64, local use
        ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
        ("::127.0.0.1", "loopback"),  # IPv4-compatible
    ],
)
def test_non_public_addresses_are_refused_and_named(address: str, kind: str) -> None:
    refusal = AddressPolicy().refusal(ipaddress.ip_address(address))
    assert refusal is not None and kind in refusal


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1", "64:ff9b::808:808"]
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert AddressPolicy().refusal(ipaddress.ip_address(address)) is None


def test_with_public_deliveries_off_only_the_allowed_networks_are_reachable() -> None:
    policy = AddressPolicy(parse_networks("10.20.0.0/16"), public=False)
    assert policy.refusal(ipaddress.ip_address("10.20.3.4")) is None
    refusal = policy.refusal(ipaddress.ip_address("8.8.8.8"))
    assert refusal is not None and "LABHOOKS_DELIVER_TO_PUBLIC" in refusal


def test_allowed_networks_open_exactly_those_networks() -> None:
    policy = AddressPolicy(parse_networks("10.20.0.0/16, 127.0.0.0/8"))
    assert policy.refusal(ipaddress.ip_address("10.20.3.4")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("10.21.0.1")) is not None
    with pytest.raises(ValueError, match="not a network"):
        parse_networks("10.0.0.0/8, lims")


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.1/in",
        "http://[::ffff:10.0.0.1]/in",
        "http://[fd00::1]/in",
        "http://127.0.0.1:9/in",
        "http://localhost:9/in",
    ],
)
def test_the_sender_refuses_before_connecting(url: str) -> None:
    async def attempt() -> str | None:
        async with HttpSender(AddressPolicy(), timeout=2, max_connections=4) as sender:
            attempt = await sender.send(Request("dlv_x", 1, url, {}, {}, b"{}"))
        assert attempt.response_status is None
        return attempt.error

    _GUARD["on"] = True
    try:
        error = asyncio.run(attempt())
    finally:
        _GUARD["on"] = False
    assert error is not None and error.count("refused to connect") == 1, error
    assert "test guard" not in error


@pytest.fixture(scope="module")
def strict(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, receiver: Receiver
) -> Iterator[tuple[Api, Receiver]]:
    """A server whose deliveries may not reach loopback, and that deactivates subscriptions
    after one second of nothing but failures."""
    folder = tmp_path_factory.mktemp("strict")
    with fresh_database(database_url, folder) as url:
        settings = settings_for(
            url, Path(folder), allowed_networks="", auto_disable_after_days=1 / 86400
        )
        with LiveServer(settings) as server, first_server_admin(server) as admin:
            yield admin, receiver


@pytest.fixture
def strict_wired(strict: tuple[Api, Receiver]) -> Wired:
    admin, receiver = strict
    return wire(new_lab(admin), receiver)


def test_deliveries_to_loopback_are_refused_and_logged_as_the_attempts_error(
    strict_wired: Wired,
) -> None:
    lab, receiver = strict_wired.lab, strict_wired.receiver
    urls = [
        receiver.url("/ssrf/v4"),
        f"http://[::ffff:127.0.0.1]:{receiver.port}/ssrf/mapped",
        receiver.url("/ssrf/name", host="localhost"),
    ]
    for url in urls[1:]:
        lab.register(url)
    subscriptions = [strict_wired.subscribe(url, retry_schedule=[0]) for url in urls]
    strict_wired.publish(strict_wired.event())
    for subscription in subscriptions:
        [delivery] = strict_wired.settle(subscription["id"], "failed")
        assert "refused to connect" in delivery["last_error"]
        assert "loopback" in delivery["last_error"]
        [attempt] = strict_wired.delivery(delivery["id"])["attempts"]
        assert attempt["response_status"] is None and "refused" in attempt["error"]
    assert [r for r in receiver.requests if r.path.startswith("/ssrf/")] == []


def test_a_subscription_failing_for_the_configured_time_is_deactivated(strict_wired: Wired) -> None:
    subscription = strict_wired.subscribe(
        strict_wired.receiver.url("/never"), retry_schedule=[0, 0.6, 0.6, 0.6]
    )
    strict_wired.publish(strict_wired.event())
    path = f"/webhook-subscriptions/{subscription['id']}"
    deadline = time.monotonic() + 10
    while (after := strict_wired.admin.ok("GET", path))["active"]:
        assert time.monotonic() < deadline, "the subscription was not deactivated"
        time.sleep(0.1)
    assert "every delivery attempt failed" in after["disabled_reason"]
    # its remaining retries are held, not lost
    [delivery] = strict_wired.deliveries(subscription["id"])
    assert delivery["status"] == "pending" and delivery["attempt_count"] >= 2


def test_a_target_deliveries_may_not_reach_is_registered_with_a_warning(lab: Lab) -> None:
    """A private LIMS outside LABHOOKS_ALLOWED_NETWORKS would fail every attempt for days:
    registering or subscribing to it says so at once, naming the setting."""
    private = lab.admin.ok("POST", "/target-urls", {"url": "http://10.1.2.3/hooks/"}, 201)
    assert "LABHOOKS_ALLOWED_NETWORKS" in private["warning"]
    assert "private address" in private["warning"]
    device = lab.add_device()
    body = subscription_body(device["channels"][0]["id"], "http://10.1.2.3/hooks/weights")
    subscription = lab.admin.ok("POST", "/webhook-subscriptions", body, 201)
    assert "LABHOOKS_ALLOWED_NETWORKS" in subscription["warning"]
    # loopback is allowed on the test servers, and a name DNS cannot resolve now says nothing
    for url in ("http://127.0.0.1:9/in/", "http://localhost:9/in/", "http://lims.invalid/in/"):
        assert lab.admin.ok("POST", "/target-urls", {"url": url}, 201)["warning"] is None
