"""`labhooks status` as an operator runs it, against the test server's real database: the
queue, the rate, a failing subscription with its owner and last error, the worker seen."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests import live
from tests.api import Lab
from tests.delivery_helpers import wire
from tests.receiver import Receiver, Reply


def status(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    environment = live.command_environment(LABHOOKS_DATABASE_URL=database_url)
    return subprocess.run(
        [sys.executable, "-m", "labhooks", "status", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def status_json(database_url: str) -> dict[str, Any]:
    result = status(database_url, "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_status_names_a_failing_subscription_and_the_worker(
    server: live.LiveServer, lab: Lab, receiver: Receiver
) -> None:
    wired = wire(lab, receiver)
    path = wired.path()
    failing = wired.subscribe(receiver.script(path, Reply(status=500)))
    wired.publish(wired.event())
    wired.settle(failing["id"], "failed", timeout=30)

    found = status_json(server.settings.database_url)
    [entry] = [f for f in found["failing_subscriptions"] if f["id"] == failing["id"]]
    assert entry["owner"] == f"admin@{lab.name}.example"
    assert entry["organization"] == lab.name
    assert entry["target_url"] == receiver.url(path)
    assert entry["last_error"] == "HTTP 500"
    assert entry["active"] is True
    assert entry["failing_since"].endswith("Z")
    assert found["attempts_last_minute"] >= 4  # this delivery's four, at least
    assert found["deliveries_per_s"] == round(found["attempts_last_minute"] / 60, 3)
    assert set(found["queue"]) == {"due", "in_flight", "scheduled", "held", "oldest_due_age_s"}
    # the test server's own worker, beating every 5 s
    assert any(w["seen_s_ago"] < 15 and not w["stale"] for w in found["workers"])

    table = status(server.settings.database_url)
    assert table.returncode == 0, table.stderr
    assert "Failing subscriptions" in table.stdout
    assert lab.name in table.stdout and "HTTP 500" in table.stdout
    assert "Workers" in table.stdout and "s ago" in table.stdout


def test_status_without_a_usable_database_says_so_in_one_line(tmp_path: Path) -> None:
    for url in (
        f"postgresql://nobody@127.0.0.1:{live.free_port()}/nothing",
        f"sqlite:///{tmp_path}/missing/labhooks.db",
        f"sqlite:///{tmp_path}/labhooks.db",
        "mysql://somewhere/db",
    ):
        result = status(url, "--json")
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("labhooks: "), result.stderr
        assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no empty database was left behind
