"""The bridges' counters for Prometheus. A bridge is a process of its own without an HTTP
server, so `--metrics-port` gives it one on loopback, serving only what it counts: what it
received, published, dead-lettered, refused, retried (docs/observability.md)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector


class BridgeCounts(Collector):
    """`labhooks_bridge_events_total{bridge, outcome}`, read from the bridge's counts."""

    def __init__(self, bridge: str, counts: Callable[[], Mapping[str, int]]) -> None:
        self._bridge = bridge
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "labhooks_bridge_events",
            "What a device bridge did with what it was handed, by outcome",
            labels=["bridge", "outcome"],
        )
        for outcome, count in sorted(self._counts().items()):
            family.add_metric([self._bridge, outcome], count)
        yield family


def serve_bridge_metrics(
    bridge: str, counts: Callable[[], Mapping[str, int]], port: int, host: str = "127.0.0.1"
) -> None:
    """Serves the bridge's counts on http://host:port/metrics, in a thread (OSError: the port
    cannot be used)."""
    registry = CollectorRegistry(auto_describe=True)
    registry.register(BridgeCounts(bridge, counts))
    start_http_server(port, addr=host, registry=registry)
