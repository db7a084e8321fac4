"""`labhooks opcua-bridge`: changes on OPC UA servers become labhooks events (docs/devices.md).

Per endpoint of the config, the bridge connects, finds what to watch (LADS devices under
DeviceSet, see ingestion.lads, and the nodes the config maps), has the server report changes
(a subscription; numeric values with the configured deadband, applied by the server) and turns
each change into an event published through ingestion.publisher:

- a sensor value → `data_point.created` {value, unit, measured_at} on the function's channel;
- a device state → `device.status_changed` {status, previous_status, message} on `status`;
- a program entering Running → `run.started` {run_id, program}, leaving it → `run.completed`
  {run_id, program, outcome, summary, supervisory_job_id} on `program`.

The value a server reports on subscribing is a snapshot, never an event; after a reconnect it
is an event only where it differs from what the bridge last saw (it changed while the bridge
was away). A lost connection publishes `offline` for the endpoint's devices, and reconnecting
publishes their status again. Every event's idempotency key is made from the endpoint, the node
and the change's source timestamp, so whatever the bridge sees twice is one event.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from asyncua import Client, ua

from labhooks.ingestion import lads
from labhooks.ingestion.directory import ChannelSpec, DeviceSpec, Directory
from labhooks.ingestion.logs import line
from labhooks.ingestion.opcua_config import (
    BridgeConfig,
    BridgeOptions,
    DeviceStatus,
    Endpoint,
    NodeMapping,
)
from labhooks.ingestion.publisher import Publisher, PublishingRefused

log = logging.getLogger("labhooks.opcua")
STATUS_CHANNEL, PROGRAM_CHANNEL = "status", "program"
# Device states (LADS, Machinery, and plain words) → labhooks status; the config adds its own.
DEFAULT_STATES: dict[str, DeviceStatus] = {
    **dict.fromkeys(("operate", "operating", "executing", "notexecuting", "online"), "online"),
    **dict.fromkeys(
        ("initialization", "sleep", "shutdown", "stopped", "notavailable", "offline"), "offline"
    ),
    **dict.fromkeys(("error", "outofservice", "fault"), "error"),
}
# A program's state → its phase; "running" and the three outcomes of run.completed matter.
PHASES = {
    "running": "running",
    **dict.fromkeys(("completed", "complete", "stopped", "succeeded"), "succeeded"),
    **dict.fromkeys(("failed", "error"), "failed"),
    "aborted": "aborted",
}
Kind = Literal["value", "device_state", "program_state", "run_id", "template"]
Change = tuple[int, ua.DataValue]  # a monitored item's handle and its new value


@dataclass(frozen=True)
class Watch:
    """A node the bridge monitors, and what its changes become."""

    kind: Kind
    node: ua.NodeId
    device_id: str
    channel: str = ""
    unit: str | None = None
    deadband: float = 0.0  # applied by the server; 0 for values that are not numbers
    numeric: bool = True  # else every write is a reading: a barcode scanned twice is two
    program: str = ""  # the program state node whose run this describes
    results: ua.NodeId | None = None


@dataclass
class _Run:
    """What the bridge knows of a program, across reconnects."""

    phase: str | None = None
    run_id: str | None = None
    program: str | None = None
    started: str | None = None  # the run ids announced, so a reconnect announces none twice
    completed: str | None = None


class _Changes:
    """asyncua's subscription handler: queues every change as it comes. Synchronous, so all
    the changes of one server message are queued before the bridge looks: one batch."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[Change] = asyncio.Queue()

    def datachange_notification(self, node: Any, value: Any, data: Any) -> None:
        self.queue.put_nowait((data.monitored_item.ClientHandle, data.monitored_item.Value))

    def status_change_notification(self, status: Any) -> None:
        # BadShutdown and the like: the connection check that follows acts on them
        code = getattr(getattr(status, "Status", None), "name", status)
        log.info(line("subscription status", status=code))


def _socket_open(client: Client) -> None:
    """Raises if the server closed the connection. asyncua 1.1.8 notices that only when a
    request times out (it sends into the closed socket and waits): a restarted server would
    stay unnoticed for request_timeout_s, and its changes with it."""
    protocol = client.uaclient.protocol
    if protocol is None or protocol.state == protocol.CLOSED:
        raise ConnectionError("the server closed the connection")


def channel_key(name: str) -> str:
    """The channel key a LADS function's name becomes: "Pump pressure" → pump_pressure."""
    return re.sub(r"[^a-z0-9_.\-]+", "_", name.lower()).strip("_.-") or "value"


def _keys(items: list[tuple[str, str]], taken: set[str]) -> list[str]:
    """Channel keys for (functional unit, name) pairs: the name's slug, the unit's before it
    where two units share a name (or it is taken), a number after that if need be."""
    slugs = Counter(channel_key(name) for _, name in items)
    keys: list[str] = []
    for unit, name in items:
        key = channel_key(name)
        if slugs[key] > 1 or key in taken:
            key = f"{channel_key(unit)}.{key}"
        base, number = key, 2
        while key in taken:
            key, number = f"{base}-{number}", number + 1
        taken.add(key)
        keys.append(key)
    return keys


def lads_spec(device: lads.FoundDevice) -> tuple[DeviceSpec, list[str], list[str]]:
    """The labhooks device a LADS device becomes, and the channel keys of its sensors and of
    its programs, in order."""
    taken = {STATUS_CHANNEL}
    sensor_keys = _keys([(s.unit, s.function) for s in device.sensors], taken)
    program_keys = _keys([(p.unit, PROGRAM_CHANNEL) for p in device.programs], taken)
    status = ChannelSpec(STATUS_CHANNEL, "Status", None, ("device.status_changed",))
    sensors = [
        ChannelSpec(key, s.function, s.engineering_unit, ("data_point.created",))
        for key, s in zip(sensor_keys, device.sensors, strict=True)
    ]
    programs = [
        ChannelSpec(key, f"Program ({p.unit})", None, ("run.started", "run.completed"))
        for key, p in zip(program_keys, device.programs, strict=True)
    ]
    channels = (status, *sensors, *programs) if device.state else (*sensors, *programs)
    return DeviceSpec(device.name, device.model, channels), sensor_keys, program_keys


def reading(value: Any) -> float | str | bool | None:
    """A value as data_point.created carries it; None for what it cannot (arrays, NaN…)."""
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, datetime):
        return _iso(value)
    return None


def _iso(moment: datetime) -> str:
    utc = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return utc.isoformat().replace("+00:00", "Z")


class Link:
    """One endpoint: connects, discovers, subscribes and turns changes into events; after a
    lost connection, the same again with backoff. What it knows of values, statuses and
    programs outlives a connection: that is what tells a change from a snapshot."""

    def __init__(
        self,
        endpoint: Endpoint,
        options: BridgeOptions,
        directory: Directory,
        out: asyncio.Queue[dict[str, Any]],
        counts: Counter[str],
    ) -> None:
        self.endpoint = endpoint
        self.options = options
        self.directory = directory
        self.out = out
        self.counts = counts
        self.status = "connecting"  # connecting, online, offline
        self.states = DEFAULT_STATES | {k.lower(): v for k, v in endpoint.device_states.items()}
        self._last: dict[str, float | str | bool] = {}  # node → the value last seen
        self._statuses: dict[str, DeviceStatus] = {}  # device id → its status
        self._status_channels: dict[str, str] = {}  # device id → where its status goes
        self._runs: dict[str, _Run] = {}  # program state node → its run
        self._unmatched: set[str] = set()
        self._sessions = 0

    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._session()
            except (PublishingRefused, asyncio.CancelledError):  # the bridge is wrong
                raise
            except Exception as exc:
                reason = f"{type(exc).__name__}: {exc}"
                if not isinstance(exc, OSError | TimeoutError | ua.UaError):
                    # not the network: a server this bridge does not understand, or a bug
                    log.exception(line("failed", endpoint=self.endpoint.label))
                if self.status == "online":
                    failures = 0
                    await self._lost(reason)
                self.status = "offline"
                waits = self.options.reconnect_backoff_s
                log.warning(line("not connected", endpoint=self.endpoint.label, reason=reason))
                await asyncio.sleep(waits[min(failures, len(waits) - 1)])
                failures += 1

    async def _session(self) -> None:
        options = self.options
        client = Client(
            self.endpoint.url,
            timeout=options.request_timeout_s,
            watchdog_intervall=options.watchdog_s,
        )
        if self.endpoint.username is not None:
            client.set_user(self.endpoint.username)
            client.set_password(self.endpoint.password or "")
        await client.connect()
        try:
            watches = await self._discover(client)
            changes = _Changes()
            subscription = await client.create_subscription(options.publishing_interval_ms, changes)
            watched = await self._subscribe(subscription, watches)
            self.counts["reconnects" if self._sessions else "connections"] += 1
            self._sessions += 1
            self.status = "online"
            await self._connected(client, watches)
            log.info(line("subscribed", endpoint=self.endpoint.label, nodes=len(watched)))
            fresh: set[int] = set()  # handles whose first value (the snapshot) came
            while True:
                await self._process(client, await self._take(changes.queue), watched, fresh)
                try:
                    await client.check_connection()
                    _socket_open(client)
                except Exception:
                    # what came before the loss is still news
                    await self._process(client, _drain(changes.queue), watched, fresh)
                    raise
        finally:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2):
                    await client.disconnect()

    async def _take(self, queue: asyncio.Queue[Change]) -> list[Change]:
        """What came, waiting up to a watchdog interval for something to come."""
        try:
            async with asyncio.timeout(self.options.watchdog_s):
                first = await queue.get()
        except TimeoutError:
            return []
        return [first, *_drain(queue)]

    # --- what to watch ---

    async def _discover(self, client: Client) -> list[Watch]:
        self._status_channels = {}
        watches: list[Watch] = []
        if self.endpoint.lads:
            for device in await lads.discover(client):
                watches += await self._lads_watches(device)
        by_device: dict[str, list[NodeMapping]] = {}
        for mapping in self.endpoint.nodes:
            by_device.setdefault(mapping.device_id or f"name:{mapping.device}", []).append(mapping)
        for mappings in by_device.values():
            device_id, name = mappings[0].device_id, mappings[0].device
            if name is not None:
                channels = tuple(
                    ChannelSpec(m.channel, m.channel_name or m.channel, m.unit, (m.event,))
                    for m in mappings
                )
                spec = DeviceSpec(name, mappings[0].model, channels)
                if (device_id := await self.directory.device_id(spec)) is None:
                    self._unmatched_device(name)
                    continue
            for mapping in mappings:
                if watch := await self._node_watch(client, mapping, str(device_id)):
                    watches.append(watch)
        return watches

    def _unmatched_device(self, name: str) -> None:
        if name not in self._unmatched:  # reported once, not at every reconnect
            self._unmatched.add(name)
            self.counts["unmatched_devices"] += 1
            hint = "map it under [endpoints.devices], or give a setup token"
            log.warning(
                line("device skipped", endpoint=self.endpoint.label, device=name, hint=hint)
            )

    async def _lads_watches(self, device: lads.FoundDevice) -> list[Watch]:
        spec, sensor_keys, program_keys = lads_spec(device)
        device_id = self.endpoint.devices.get(device.name) or await self.directory.device_id(spec)
        if device_id is None:
            self._unmatched_device(device.name)
            return []
        watches: list[Watch] = []
        if device.state is not None:
            self._status_channels[device_id] = STATUS_CHANNEL
            watches.append(Watch("device_state", device.state, device_id, STATUS_CHANNEL))
        for key, sensor in zip(sensor_keys, device.sensors, strict=True):
            band = self.endpoint.deadbands.get(sensor.function, self.endpoint.deadband)
            band = band if sensor.numeric else 0.0
            unit, numeric = sensor.engineering_unit, sensor.numeric
            watches.append(Watch("value", sensor.node, device_id, key, unit, band, numeric))
        for key, found in zip(program_keys, device.programs, strict=True):
            program = found.state.to_string()
            if found.run_id is not None:
                watches.append(Watch("run_id", found.run_id, device_id, key, program=program))
            if found.template is not None:
                watches.append(Watch("template", found.template, device_id, key, program=program))
            watches.append(
                Watch(
                    "program_state",
                    found.state,
                    device_id,
                    key,
                    program=program,
                    results=found.results,
                )
            )
        return watches

    async def _node_watch(
        self, client: Client, mapping: NodeMapping, device_id: str
    ) -> Watch | None:
        node = ua.NodeId.from_string(mapping.node)
        try:
            if isinstance(node, ua.ExpandedNodeId) and node.NamespaceUri:  # nsu=…: by its URI
                index = await client.get_namespace_index(node.NamespaceUri)
                node = ua.NodeId(node.Identifier, index, node.NodeIdType)
            numeric = await lads.is_numeric(client.get_node(node))
        except (ua.UaError, ValueError) as exc:
            label = self.endpoint.label
            log.warning(line("node skipped", endpoint=label, node=mapping.node, reason=exc))
            return None
        if mapping.event == "device.status_changed":
            self._status_channels[device_id] = mapping.channel
            return Watch("device_state", node, device_id, mapping.channel)
        if self.endpoint.status_channel:
            self._status_channels.setdefault(device_id, self.endpoint.status_channel)
        band = mapping.deadband if numeric else 0.0
        return Watch("value", node, device_id, mapping.channel, mapping.unit, band, numeric)

    async def _subscribe(self, subscription: Any, watches: list[Watch]) -> dict[int, Watch]:
        requests = []
        for handle, watch in enumerate(watches, start=1):
            parameters = ua.MonitoringParameters(
                ClientHandle=handle,
                SamplingInterval=0,  # as fast as the server can: it reports writes as they come
                QueueSize=self.endpoint.queue_size,  # changes between two publishes are kept
                DiscardOldest=True,
            )
            if watch.deadband > 0:
                parameters.Filter = ua.DataChangeFilter(
                    Trigger=ua.DataChangeTrigger.StatusValue,
                    DeadbandType=ua.DeadbandType.Absolute,
                    DeadbandValue=watch.deadband,
                )
            elif watch.kind == "value" and not watch.numeric:
                parameters.Filter = ua.DataChangeFilter(
                    Trigger=ua.DataChangeTrigger.StatusValueTimestamp
                )
            requests.append(
                ua.MonitoredItemCreateRequest(
                    ItemToMonitor=ua.ReadValueId(
                        NodeId_=watch.node, AttributeId=ua.AttributeIds.Value
                    ),
                    MonitoringMode_=ua.MonitoringMode.Reporting,
                    RequestedParameters=parameters,
                )
            )
        results = await subscription.create_monitored_items(requests) if requests else []
        watched: dict[int, Watch] = {}
        for handle, (watch, result) in enumerate(zip(watches, results, strict=True), start=1):
            if isinstance(result, ua.StatusCode):
                log.warning(line("node not watched", node=watch.node.to_string(), status=result))
            else:
                watched[handle] = watch
        return watched

    # --- changes into events ---

    async def _connected(self, client: Client, watches: list[Watch]) -> None:
        """Each device's status now; where the bridge knew another, that change is an event
        (after a lost connection: offline → online, or whatever the device says it is)."""
        now: dict[str, DeviceStatus] = dict.fromkeys(self._status_channels, "online")
        for watch in watches:
            if watch.kind == "device_state":
                state = await lads.read_text(client.get_node(watch.node))
                if (status := self._status_of(state, watch.node.to_string())) is not None:
                    now[watch.device_id] = status
                else:  # unknown now: as it was, if the bridge knew it
                    now.pop(watch.device_id, None)
        moment = datetime.now(UTC)
        message = f"connection to {self.endpoint.label} restored"
        for device_id, status in now.items():
            previous, self._statuses[device_id] = self._statuses.get(device_id), status
            if previous is not None and previous != status:
                data = {"status": status, "previous_status": previous, "message": message}
                channel = self._status_channels[device_id]
                identity = (device_id, "connected", _iso(moment))
                await self._emit(
                    device_id, channel, "device.status_changed", data, moment, identity
                )

    async def _lost(self, reason: str) -> None:
        moment = datetime.now(UTC)
        message = f"connection to {self.endpoint.label} lost ({reason})"
        for device_id, channel in self._status_channels.items():
            previous = self._statuses.get(device_id)
            if previous is not None and previous != "offline":
                self._statuses[device_id] = "offline"
                data = {"status": "offline", "previous_status": previous, "message": message}
                identity = (device_id, "lost", _iso(moment))
                await self._emit(
                    device_id, channel, "device.status_changed", data, moment, identity
                )

    async def _process(
        self, client: Client, batch: list[Change], watched: dict[int, Watch], fresh: set[int]
    ) -> None:
        """In the order the changes happened (by source timestamp): a run's id is known
        before the state that starts it, whatever order the server listed them in."""
        self.counts["received"] += len(batch)
        changes = []
        for order, (handle, data) in enumerate(batch):
            if (watch := watched.get(handle)) is None:
                continue
            snapshot = handle not in fresh
            fresh.add(handle)
            if data.StatusCode is not None and not data.StatusCode.is_good():
                self.counts["bad_values"] += 1  # a sensor fault is no reading
                continue
            at = data.SourceTimestamp or data.ServerTimestamp or datetime.now(UTC)
            at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
            value = data.Value.Value if data.Value is not None else None
            changes.append((at, order, watch, value, snapshot))
        for at, _, watch, value, snapshot in sorted(changes, key=lambda c: (c[0], c[1])):
            node = watch.node.to_string()
            made = await self._change(client, watch, node, value, at, snapshot)
            if made is not None:
                identity = (node, _iso(at))
                await self._emit(watch.device_id, watch.channel, *made, at, identity)

    def _status_of(self, state: str | None, node: str) -> DeviceStatus | None:
        """The labhooks status a device state stands for; None (and a log line) for a state
        neither the defaults nor the config map, or no state at all."""
        if not state:
            return None
        status = self.states.get(state.lower())
        if status is None:
            log.warning(line("device state not mapped", node=node, state=state))
        return status

    async def _change(
        self, client: Client, watch: Watch, node: str, value: Any, at: datetime, snapshot: bool
    ) -> tuple[str, dict[str, Any]] | None:
        """The event (type, data) a change makes, if any."""
        if watch.kind in ("run_id", "template"):
            run = self._runs.setdefault(watch.program, _Run())
            if watch.kind == "run_id":
                run.run_id = lads.text(value) or None
            else:
                run.program = lads.text(value) or None
            return None
        if watch.kind == "program_state":
            return await self._program(client, watch, lads.text(value) or "", at, snapshot)
        if watch.kind == "device_state":
            state = lads.text(value) or ""
            if (status := self._status_of(state, node)) is None:
                return None
            previous, self._statuses[watch.device_id] = self._statuses.get(watch.device_id), status
            if previous is None or previous == status:
                return None
            message = f"device state {state}"
            return "device.status_changed", {
                "status": status,
                "previous_status": previous,
                "message": message,
            }
        if (current := reading(value)) is None:
            self.counts["unsupported_values"] += 1
            return None
        previous_value, self._last[node] = self._last.get(node), current
        if snapshot and (previous_value is None or previous_value == current):
            return None  # as it was, or as it was first seen: no news
        return "data_point.created", {"value": current, "unit": watch.unit, "measured_at": _iso(at)}

    async def _program(
        self, client: Client, watch: Watch, state: str, at: datetime, snapshot: bool
    ) -> tuple[str, dict[str, Any]] | None:
        run = self._runs.setdefault(watch.program, _Run())
        phase = PHASES.get(state.lower(), "idle")
        before, run.phase = run.phase, phase
        # a server without run ids: the run is named by when it started
        run_id = run.run_id or (run.started if phase != "running" else None) or f"run-{_iso(at)}"
        if snapshot and before is None:  # what ran before the bridge looked is no news
            run.started = run_id if phase != "idle" else None
            run.completed = run_id if phase not in ("idle", "running") else None
            return None
        if phase == "running" and (before != "running" or run.started != run_id):
            run.started = run_id
            return "run.started", {"run_id": run_id, "program": run.program}
        if phase in ("idle", "running") or (before != "running" and run.completed == run_id):
            return None
        run.completed = run_id
        data: dict[str, Any] = {"run_id": run_id, "program": run.program, "outcome": phase}
        if watch.results is not None:
            try:
                found = await lads.newest_result(client, watch.results, run.run_id)
            except (ua.UaError, OSError, TimeoutError) as exc:
                log.warning(line("result not read", node=watch.node.to_string(), reason=exc))
            else:
                data |= {key: value for key, value in found.items() if value is not None}
        return "run.completed", data

    async def _emit(
        self,
        device_id: str,
        channel: str,
        event_type: str,
        data: dict[str, Any],
        at: datetime,
        identity: tuple[str, ...],
    ) -> None:
        """Queues the event for labhooks. Its idempotency key is made of the endpoint, the
        event type and `identity` (the node and the change's source timestamp), so the same
        change seen again is the same event, which labhooks stores once."""
        source = "\n".join((self.endpoint.url, event_type, *identity))
        self.counts["events"] += 1
        label = self.endpoint.label
        log.info(line("event", endpoint=label, type=event_type, device=device_id, channel=channel))
        await self.out.put(
            {
                "device_id": device_id,
                "channel_key": channel,
                "type": event_type,
                "data": data,
                "occurred_at": _iso(at),
                "idempotency_key": "opcua-" + hashlib.sha256(source.encode()).hexdigest()[:40],
            }
        )


def _drain(queue: asyncio.Queue[Change]) -> list[Change]:
    return [queue.get_nowait() for _ in range(queue.qsize())]


class OpcUaBridge:
    """Runs the links of every endpoint and publishes their events in batches until `stop`
    is set (or it is cancelled). `counts` and `status()` say how it goes."""

    def __init__(self, config: BridgeConfig, api_url: str, token: str) -> None:
        self.config = config
        self.api_url = api_url
        self.token = token
        self.links: list[Link] = []
        self._counts: Counter[str] = Counter()
        self._publisher: Publisher | None = None
        self._sending = 0

    @property
    def counts(self) -> Counter[str]:
        """received, events, published, duplicates, refused, retries, connections,
        reconnects, unmatched_devices, bad_values, unsupported_values."""
        return self._counts + (self._publisher.counts if self._publisher else Counter())

    def status(self) -> dict[str, str]:
        return {link.endpoint.url: link.status for link in self.links}

    async def run(self, stop: asyncio.Event) -> None:
        options = self.config.bridge
        events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        async with (
            Publisher(self.api_url, self.token) as publisher,
            Directory(
                self.api_url,
                options.setup_token or self.token,
                options.manage_devices,
                options.reconnect_backoff_s,
            ) as directory,
        ):
            self._publisher = publisher
            self.links = [
                Link(endpoint, options, directory, events, self._counts)
                for endpoint in self.config.endpoints
            ]
            try:
                async with asyncio.TaskGroup() as group:
                    sending = group.create_task(self._send(publisher, events))
                    linked = [group.create_task(link.run()) for link in self.links]
                    await stop.wait()
                    for task in linked:
                        task.cancel()
                    await asyncio.wait(linked)
                    await self._flush(events)
                    sending.cancel()
            except ExceptionGroup as failed:  # one task failed (a refused token): that is why
                raise failed.exceptions[0] from None
            finally:
                log.info(line("stopped", **dict(sorted(self.counts.items()))))

    async def _send(self, publisher: Publisher, events: asyncio.Queue[dict[str, Any]]) -> None:
        size = self.config.bridge.batch_size
        while True:
            batch = [await events.get()]
            while len(batch) < size and not events.empty():
                batch.append(events.get_nowait())
            self._sending = len(batch)
            outcome = await publisher.publish(batch)
            for refused in outcome.refused:
                event = batch[refused.index]
                log.warning(
                    line(
                        "event refused",
                        type=event["type"],
                        device=event["device_id"],
                        channel=event["channel_key"],
                        detail=refused.problem.get("detail"),
                        errors=json.dumps(refused.problem.get("errors", []), ensure_ascii=False),
                    )
                )
            self._sending = 0
            for _ in batch:
                events.task_done()

    async def _flush(self, events: asyncio.Queue[dict[str, Any]]) -> None:
        """What the bridge holds goes out first, for as long as the config allows."""
        try:
            async with asyncio.timeout(self.config.bridge.flush_s):
                await events.join()
        except TimeoutError:
            left = events.qsize() + self._sending
            log.warning(line("stopped before publishing everything", unpublished=left))


async def run_bridge(
    config: BridgeConfig, api_url: str, token: str, stop: asyncio.Event
) -> Counter[str]:
    """`labhooks opcua-bridge`: runs until `stop` is set; returns the counts. `api_url` is
    labhooks' API root (…/api/v1)."""
    bridge = OpcUaBridge(config, api_url, token)
    await bridge.run(stop)
    return bridge.counts
