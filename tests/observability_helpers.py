"""/metrics read as Prometheus reads it, and `labhooks serve` as a process of its own (for
what only a separate process shows: its log lines, metrics summed across processes)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from labhooks.settings import Settings
from tests import live

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
BRIDGE_EVENTS = "labhooks_bridge_events_total"  # a bridge's counters, with --metrics-port


def scrape(base_url: str, **headers: str) -> Samples:
    """Every sample of GET /metrics, parsed by prometheus_client's own parser."""
    response = httpx.get(f"{base_url}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value; 0 for a labelled series not yet seen (as Prometheus treats it)."""
    return samples.get((name, frozenset(labels.items())), 0.0)


def labels_of(samples: Samples, name: str, label: str) -> set[str]:
    return {dict(key)[label] for (sample, key) in samples if sample == name}


@dataclass
class ServedProcess:
    """What tests.conftest.first_server_admin needs of a server: its URL and settings."""

    url: str
    settings: Settings
    process: subprocess.Popen[bytes]
    log: Path


@contextmanager
def served(
    settings: Settings, log: Path, *args: str, env: dict[str, str] | None = None
) -> Iterator[ServedProcess]:
    """`labhooks serve <args>` on a free loopback port, with `settings`' database and secret
    key, until the block ends; waits until it answers /readyz."""
    port = live.free_port()
    environment = (env or live.command_environment()) | {
        "LABHOOKS_DATABASE_URL": settings.database_url,
        "LABHOOKS_SECRET_KEY": str(settings.secret_key),
        "LABHOOKS_ALLOWED_NETWORKS": settings.allowed_networks,
        "LABHOOKS_DELIVER_TO_PUBLIC": "false",
        "LABHOOKS_RETRY_SCHEDULE": settings.retry_schedule,
        "LABHOOKS_DELIVERY_TIMEOUT": str(settings.delivery_timeout),
        "LABHOOKS_POLL_INTERVAL": str(settings.poll_interval),
        "LABHOOKS_PASSWORD_TIME_COST": "1",
        "LABHOOKS_PASSWORD_MEMORY_KIB": "8",
    }
    with live.labhooks_process(
        log, "serve", "--port", str(port), *args, env=environment
    ) as process:
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        live.wait_until(ready, "labhooks serve to answer", timeout=30)
        yield ServedProcess(url, settings, process, log)
