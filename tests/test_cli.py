"""The `labhooks` command as an operator runs it: a subprocess in an empty folder."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from labhooks.storage.migrate import head_revision
from tests.live import command_environment, free_port, taken_port

LABHOOKS = [sys.executable, "-m", "labhooks"]


def run(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = command_environment(**env)
    return subprocess.run(
        [*LABHOOKS, *args], cwd=folder, env=environment, capture_output=True, text=True, timeout=60
    )


@contextmanager
def running(folder: Path, *args: str) -> Iterator[str]:
    """`labhooks <args> --port P` as a subprocess in `folder`, until it answers /healthz;
    yields its base URL and stops it with SIGTERM afterwards."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = folder / f"{args[0]}.log"
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            [*LABHOOKS, *args, "--port", str(port)],
            cwd=folder,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=command_environment(),
        ) as process,
    ):
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    httpx.get(f"{base}/healthz")
                    break
                except httpx.TransportError:
                    alive = process.poll() is None
                    assert alive and time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.1)
            yield base
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=20)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("labhooks: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def test_migrate_creates_the_default_sqlite_file(tmp_path: Path) -> None:
    result = run(tmp_path, "migrate")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"database at revision {head_revision()}"
    assert (tmp_path / "labhooks.db").exists()
    assert run(tmp_path, "migrate").stdout == result.stdout  # a second run changes nothing


def test_bootstrap_prints_a_working_token_last_and_serve_answers_with_it(tmp_path: Path) -> None:
    first = run(tmp_path, "bootstrap", "--email", "ops@lab.example", "--password", "s3cret-pass")
    assert first.returncode == 0, first.stderr
    token = first.stdout.strip().splitlines()[-1]
    again = run(tmp_path, "bootstrap", "--email", "ops@lab.example", "--password", "s3cret-pass")
    assert again.returncode == 0 and "exists already" in again.stdout
    other = again.stdout.strip().splitlines()[-1]
    assert other != token

    intruder = run(tmp_path, "bootstrap", "--email", "ops@lab.example", "--password", "guessing")
    assert_one_line_error(intruder, "wrong")

    with running(tmp_path, "serve") as base:
        for presented in (token, other):
            me = httpx.get(f"{base}/api/v1/me", headers={"Authorization": f"Bearer {presented}"})
            assert me.status_code == 200 and me.json()["is_server_admin"] is True
        # with no LABHOOKS_SECRET_KEY, a key is made once and kept beside the database
        assert (tmp_path / "labhooks.secret").stat().st_mode & 0o077 == 0


def test_bad_settings_and_input_give_one_line_and_exit_1(tmp_path: Path) -> None:
    assert_one_line_error(
        run(tmp_path, "migrate", LABHOOKS_DATABASE_URL="mysql://x/y"), "LABHOOKS_DATABASE_URL"
    )
    unreachable = run(
        tmp_path, "migrate", LABHOOKS_DATABASE_URL="postgresql://nobody@127.0.0.1:1/x"
    )
    assert_one_line_error(unreachable, "cannot use the database")
    assert_one_line_error(
        run(tmp_path, "migrate", LABHOOKS_DELIVERY_TIMEOUT="soon"), "LABHOOKS_DELIVERY_TIMEOUT"
    )
    short = run(tmp_path, "bootstrap", "--email", "a@b.example", "--password", "short")
    assert_one_line_error(short, "password")
    bad_email = run(tmp_path, "bootstrap", "--email", "nobody", "--password", "long enough")
    assert_one_line_error(bad_email, "e-mail")


def test_demo_serves_a_lab_whose_deliveries_arrive_in_the_inspector(tmp_path: Path) -> None:
    with running(tmp_path, "demo") as base:
        printed = (tmp_path / "demo.log").read_text()
        assert "scientist@example.org" in printed and f"{base}/demo/inspector/" in printed

        scientist = {"Authorization": f"Bearer {demo_token(base, 'scientist@example.org')}"}
        admin = {"Authorization": f"Bearer {demo_token(base, 'lab-admin@example.org')}"}
        [weight] = [
            c
            for c in httpx.get(f"{base}/api/v1/channels", headers=scientist).json()["items"]
            if c["key"] == "weight" and c["device"]["name"] == "Balance XS205"
        ]
        subscribe_inspector(base, scientist, weight["id"], "lims")
        published = httpx.post(
            f"{base}/api/v1/events?wait=10",
            headers=admin,
            json={
                "device_id": weight["device"]["id"],
                "channel_key": "weight",
                "type": "data_point.created",
                "data": {"value": 12.3456, "unit": "g"},
            },
        ).json()
        assert published["answers"][0]["response"] == {"received": True, "path": "lims"}
        inspector = httpx.get(f"{base}/demo/inspector/").text
        assert "12.3456" in inspector and "webhook-signature" in inspector

        # the live simulated lab: its balance is the scientist's to subscribe to, and reports
        deadline = time.monotonic() + 30
        while not (
            simulated := [
                c
                for c in httpx.get(f"{base}/api/v1/channels", headers=scientist).json()["items"]
                if c["device"]["name"] == "Simulated balance XS205"
            ]
        ):
            assert time.monotonic() < deadline, "the simulated lab did not appear"
            time.sleep(0.2)
        subscribe_inspector(base, scientist, simulated[0]["id"], "simulated")
        while "/simulated" not in httpx.get(f"{base}/demo/inspector/").text:
            assert time.monotonic() < deadline + 30, "no simulated reading arrived"
            time.sleep(0.2)
    again = run(tmp_path, "migrate")  # the demo's data is in the working folder's SQLite file
    assert again.returncode == 0


def test_demo_on_a_port_in_use_says_so_and_writes_nothing(tmp_path: Path) -> None:
    with taken_port() as port:
        result = run(tmp_path, "demo", "--port", str(port))
    assert_one_line_error(result, f"port {port} cannot be used", "--port")
    assert result.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no database, no key file


def test_the_demo_inspector_follows_the_port_it_is_served_on(tmp_path: Path) -> None:
    """Run on one port, then on another in the same folder: what is printed, registered and
    subscribed is the inspector of the port served now, and deliveries arrive there."""
    with running(tmp_path, "demo") as first:
        admin = {"Authorization": f"Bearer {demo_token(first, 'lab-admin@example.org')}"}
        channel = httpx.get(f"{first}/api/v1/channels", headers=admin).json()["items"][0]
        subscribe_inspector(first, admin, channel["id"], "lims")
    with running(tmp_path, "demo") as second:
        assert f"{second}/demo/inspector/" in (tmp_path / "demo.log").read_text()
        admin = {"Authorization": f"Bearer {demo_token(second, 'lab-admin@example.org')}"}
        registered = httpx.get(f"{second}/api/v1/target-urls", headers=admin).json()["items"]
        assert [u["url"] for u in registered] == [f"{second}/demo/inspector/"]
        [subscription] = httpx.get(f"{second}/api/v1/webhook-subscriptions", headers=admin).json()[
            "items"
        ]
        assert subscription["target_url"] == f"{second}/demo/inspector/lims"
        assert subscription["active"] is True
        published = httpx.post(
            f"{second}/api/v1/events?wait=10",
            headers=admin,
            json={
                "device_id": channel["device"]["id"],
                "channel_key": channel["key"],
                "type": "data_point.created",
                "data": {"value": 7.5, "unit": "g"},
            },
        ).json()
        assert published["answers"][0]["response"] == {"received": True, "path": "lims"}


def demo_token(base: str, email: str) -> str:
    answer = httpx.post(f"{base}/api/v1/tokens", json={"email": email, "password": "labhooks-demo"})
    return str(answer.json()["token"])


def subscribe_inspector(base: str, headers: dict[str, str], channel_id: str, name: str) -> None:
    """The demo's inspector, at /demo/inspector/<name>, subscribed to a channel's data points."""
    created = httpx.post(
        f"{base}/api/v1/webhook-subscriptions",
        headers=headers,
        json={
            "target_url": f"{base}/demo/inspector/{name}",
            "channels": [{"channel_id": channel_id, "events": ["data_point.created"]}],
        },
    )
    assert created.status_code == 201, created.text
