"""`labhooks simulate --serve-opcua` and `labhooks opcua-bridge` as an operator runs them, two
processes of their own: the simulated lab's LADS server, and the bridge that finds its devices,
makes them in labhooks and turns their changes into signed deliveries."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from standardwebhooks.webhooks import Webhook

from tests.api import Lab, unique
from tests.live import LiveServer, free_port, labhooks_process, taken_port, wait_until
from tests.observability_helpers import BRIDGE_EVENTS, scrape, value
from tests.receiver import Receiver
from tests.test_cli import assert_one_line_error, run

BALANCE = "Simulated balance XS205"


@contextmanager
def stopping_cleanly(log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """`labhooks <args>` until the block ends, then SIGTERM: it must stop cleanly (exit 0)."""
    with labhooks_process(log, *args) as process:
        yield process
    assert process.returncode == 0, log.read_text()[-3000:]


def test_the_simulated_lab_over_opcua_reaches_a_subscriber_through_the_bridge(
    lab: Lab, server: LiveServer, receiver: Receiver, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "lab-opcua.toml"
    config.write_text(
        f'[bridge]\nsetup_token = "{lab.admin.token}"\npublishing_interval_ms = 100\n\n'
        f'[[endpoints]]\nurl = "opc.tcp://127.0.0.1:{port}/"\nname = "simulated lab"\n'
    )
    lab.register(receiver.url("/"))
    path = unique("/opcua/balance")
    log = tmp_path / "processes.log"
    simulation = ("simulate", "--serve-opcua", str(port), "--rate", "20")
    with stopping_cleanly(log, *simulation):
        wait_until(lambda: f"opc.tcp://127.0.0.1:{port}" in log.read_text(), "the LADS server")
        metrics = free_port()
        bridge = ("opcua-bridge", "--config", str(config), "--url", server.url)
        bridge += ("--metrics-port", str(metrics))
        with stopping_cleanly(log, *bridge, "--token", lab.gateway_token()):

            def balance() -> list[dict]:
                listed = lab.admin.ok("GET", f"/devices?q={BALANCE}")["items"]
                return [d for d in listed if d["name"] == BALANCE]

            wait_until(lambda: bool(balance()), "the bridge to make the balance", timeout=60)
            [device] = balance()
            channels = {c["key"]: c for c in device["channels"]}
            assert channels["weight"]["unit"] == "g" and "status" in channels
            subscription = lab.admin.ok(
                "POST",
                "/webhook-subscriptions",
                {
                    "target_url": receiver.url(path),
                    "channels": [
                        {"channel_id": channels["weight"]["id"], "events": ["data_point.created"]}
                    ],
                },
                201,
            )
            received = receiver.wait_for(path, 3, timeout=60)
            counted = scrape(f"http://127.0.0.1:{metrics}")  # what the bridge says it did
            assert value(counted, BRIDGE_EVENTS, bridge="opcua", outcome="published") >= 3
    secret = lab.admin.ok("GET", f"/webhook-subscriptions/{subscription['id']}/secret")["key"]
    for request in received:
        body = Webhook(secret).verify(request.body, request.headers)
        assert body["type"] == "data_point.created"
        assert body["data"]["device"]["name"] == BALANCE and body["data"]["unit"] == "g"
        assert isinstance(body["data"]["value"], float)
    assert "stopped" in log.read_text()  # the bridge's counts, logged as it stopped


def test_opcua_bridge_refuses_a_bad_config_in_one_line(tmp_path: Path) -> None:
    config = tmp_path / "lab-opcua.toml"
    config.write_text('[[endpoints]]\nurl = "opc.tcp://127.0.0.1:4840/"\npublishing = 1\n')
    result = run(tmp_path, "opcua-bridge", "--config", str(config), "--token", "x")
    assert_one_line_error(result, "publishing")
    missing = run(tmp_path, "opcua-bridge", "--config", str(tmp_path / "nope.toml"), "--token", "x")
    assert_one_line_error(missing, "nope.toml")


def test_simulate_through_the_api_needs_a_token(tmp_path: Path) -> None:
    assert_one_line_error(run(tmp_path, "simulate"), "--token")


def test_simulate_on_a_taken_opcua_port_says_so_in_one_line(tmp_path: Path) -> None:
    with taken_port() as port:
        result = run(tmp_path, "simulate", "--serve-opcua", str(port))
    assert_one_line_error(result, f"cannot serve OPC UA on 127.0.0.1:{port}")
