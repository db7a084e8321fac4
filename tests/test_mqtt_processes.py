"""`labhooks mqtt-bridge` as an operator runs it, a process of its own: killed mid-stream with
SIGKILL and started again, it loses none of the messages and duplicates none (every event
arrives once, under one webhook-id)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.api import new_lab
from tests.conftest import first_server_admin, settings_for
from tests.delivery_helpers import wire
from tests.live import (
    LiveServer,
    free_port,
    fresh_database,
    labhooks_process,
    taken_port,
    wait_until,
)
from tests.mqtt_helpers import BROKER, fresh_prefix, gateway
from tests.observability_helpers import BRIDGE_EVENTS, scrape, value
from tests.receiver import Receiver
from tests.test_cli import assert_one_line_error, run

MESSAGES = 300


@contextmanager
def bridge_process(
    api: str, token: str, prefix: str, log: Path, *more: str
) -> Iterator[subprocess.Popen[bytes]]:
    """`labhooks mqtt-bridge`, yielded once it has subscribed: nothing sent then is missed."""
    options = ("--broker", BROKER, "--url", api, "--token", token, "--prefix", prefix)
    with labhooks_process(
        log, "mqtt-bridge", *options, "--client-id", f"bridge-{prefix}", *more
    ) as process:
        deadline = time.monotonic() + 30
        while "MQTT bridge on" not in log.read_text():
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield process


def test_a_bridge_killed_mid_stream_loses_nothing_and_duplicates_nothing(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    with fresh_database(database_url, tmp_path) as url:
        settings = settings_for(url, tmp_path)
        with LiveServer(settings) as server, first_server_admin(server) as root:
            lab = new_lab(root)
            wired = wire(lab, receiver)
            path = wired.path()
            wired.subscribe(wired.receiver.script(path))
            token, prefix = lab.gateway_token(), fresh_prefix()
            topic = f"{prefix}/{wired.device['id']}/weight/data_point.created"
            log = tmp_path / "bridge.log"
            with gateway() as lab_gateway:
                with bridge_process(server.url, token, prefix, log) as first:
                    for value in range(MESSAGES):
                        lab_gateway.send(topic, {"data": {"value": value}})
                    wired.receiver.wait_for(path, MESSAGES // 5, timeout=60)
                    first.send_signal(signal.SIGKILL)  # mid-stream: messages taken, unacknowledged
                    first.wait(timeout=10)
                assert first.returncode == -signal.SIGKILL
                assert len(wired.receiver.received(path)) < MESSAGES  # work was left over
                with bridge_process(server.url, token, prefix, log):
                    wired.receiver.wait_for(path, MESSAGES, timeout=120)
            received = wired.receiver.received(path)
    assert sorted(r.json["data"]["value"] for r in received) == list(range(MESSAGES))
    assert set(Counter(r.headers["webhook-id"] for r in received).values()) == {1}


def test_a_bridge_waiting_for_labhooks_stops_at_once_when_told(tmp_path: Path) -> None:
    """SIGTERM while labhooks does not answer: the bridge leaves at once (exit 0), its
    message unacknowledged for the next bridge, rather than waiting out its backoff."""
    nobody = f"http://127.0.0.1:{free_port()}"
    prefix, log = fresh_prefix(), tmp_path / "bridge.log"
    with gateway() as lab_gateway, bridge_process(nobody, "lh_x", prefix, log) as bridge:
        lab_gateway.send(f"{prefix}/dev_1/weight/data_point.created", {"data": {"value": 1}})
        wait_until(lambda: log.read_text().count("trying again") >= 3, "the bridge to wait")
        bridge.send_signal(signal.SIGTERM)
        assert bridge.wait(timeout=10) == 0, log.read_text()


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        (("mqtt-bridge", "--url", "127.0.0.1:8000"), "--url"),
        (("mqtt-bridge", "--prefix", "site1/+"), "--prefix"),
        (
            ("mqtt-bridge", "--broker", "mqtts://127.0.0.1", "--ca-file", "/nowhere.pem"),
            "--ca-file",
        ),
        (("mqtt-bridge", "--broker", "tcp://127.0.0.1"), "broker URL"),
        (("simulate", "--via", "mqtt", "--broker", "nowhere"), "broker URL"),
    ],
)
def test_bridge_commands_refuse_bad_options_in_one_line(
    arguments: tuple[str, ...], named: str, tmp_path: Path
) -> None:
    assert_one_line_error(run(tmp_path, *arguments, "--token", "lh_x"), named)


def test_a_bridge_counts_for_prometheus_what_it_did(
    database_url: str, tmp_path: Path, receiver: Receiver
) -> None:
    """`--metrics-port`: the bridge's counters on loopback, parsed as Prometheus reads them."""
    with fresh_database(database_url, tmp_path) as url:
        settings = settings_for(url, tmp_path)
        with LiveServer(settings) as server, first_server_admin(server) as root:
            lab = new_lab(root)
            wired = wire(lab, receiver)
            prefix, port = fresh_prefix(), free_port()
            good = f"{prefix}/{wired.device['id']}/weight/data_point.created"
            log = tmp_path / "bridge.log"
            metrics = ("--metrics-port", str(port))
            with (
                gateway() as lab_gateway,
                bridge_process(server.url, lab.gateway_token(), prefix, log, *metrics),
            ):
                lab_gateway.send(good, {"data": {"value": 1}})
                lab_gateway.send(good, {"data": {"value": 2}})
                lab_gateway.send(good, b"{not json")

                def counted(outcome: str) -> float:
                    samples = scrape(f"http://127.0.0.1:{port}")
                    return value(samples, BRIDGE_EVENTS, bridge="mqtt", outcome=outcome)

                wait_until(lambda: counted("dead_lettered") == 1, "the bridge's counters")
                wait_until(lambda: counted("published") == 2, "the bridge's counters")


def test_a_bridge_metrics_port_taken_is_said_in_one_line(tmp_path: Path) -> None:
    with taken_port() as port:
        options = ("--metrics-port", str(port), "--url", f"http://127.0.0.1:{free_port()}")
        result = run(tmp_path, "mqtt-bridge", "--token", "lh_x", *options)
    assert_one_line_error(result, f"cannot serve metrics on 127.0.0.1:{port}")
