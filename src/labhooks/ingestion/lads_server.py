"""A LADS-shaped OPC UA server built in code, for `labhooks simulate --serve-opcua` and the
tests; the names it uses are ingestion.lads'.

Simplified here, and said so: no type nodes are loaded (objects are plain objects, the sensor
value alone is typed, as AnalogItemType); a state machine is its CurrentState text alone;
LADS' four device states (Initialization, Operate, Sleep, Shutdown) gain Error, where LADS
would put the fault in MachineryItemState (OutOfService) and the functional unit's state; the
program's progress is ActiveProgram/CurrentState (Idle, Running, Completed, Failed, Aborted)
where LADS spreads it over FunctionalUnitState and its RunningStateMachine (the bridge reads
FunctionalUnitState/CurrentState when a server has no ActiveProgram state); the program
template is its name, not a NameNodeId; a result has no files, samples or variables.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from asyncua import Node, Server, ua

from labhooks.ingestion.lads import (
    ACTIVE_PROGRAM,
    COMPONENT_NAME,
    DESCRIPTION,
    DEVICE_SET,
    DEVICE_STATE,
    DEVICE_STATES,
    DI_URI,
    ENGINEERING_UNITS,
    FINISHED,
    FUNCTION_SET,
    FUNCTIONAL_UNIT_SET,
    IDENTIFICATION,
    IDLE,
    LADS_URI,
    MACHINERY_URI,
    MAX_RESULTS,
    MODEL,
    PROGRAM_MANAGER,
    PROGRAM_TEMPLATE,
    RESULT_SET,
    RUN_ID,
    RUNNING,
    SIMULATED_URI,
    STARTED,
    STOPPED,
    SUPERVISORY_JOB_ID,
    VALUE_NAMES,
)


@dataclass
class _Reading:
    value: Any
    at: datetime


@dataclass
class _Result:
    run_id: str
    supervisory_job_id: str
    summary: str
    started: datetime
    stopped: datetime


@dataclass
class LadsDevice:
    """A device the server shows; the handle `add_device` gives. Holds every value with its
    source timestamp, so a server started again shows the same values from the same moments."""

    name: str
    model: str
    unit: str
    sensors: dict[str, tuple[str | None, _Reading]]  # function → (engineering unit, value)
    state: _Reading
    programs: bool
    program_state: _Reading
    run_id: _Reading
    program: _Reading
    job: str = ""
    started: datetime | None = None
    results: list[_Result] = field(default_factory=list)


class LadsServer:
    """A LADS-shaped OPC UA server, for the simulator and the tests.

    `add_device` before or after `await start(port)`; `set_value`, `set_state`,
    `start_program` and `finish_program` change what it shows, also while it is stopped: started
    again (`stop()`, then `start(port)`), it shows the latest values, from the same moments.
    """

    def __init__(self, name: str = "labhooks simulated lab") -> None:
        self.name = name
        self.devices: dict[str, LadsDevice] = {}
        self.url: str | None = None
        self._server: Server | None = None
        self._index: dict[str, int] = {}  # namespace URI → its index on the running server
        self._last = datetime.now(UTC)
        self._building: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> LadsServer:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    @property
    def asyncua(self) -> Server | None:
        """The running asyncua server, for nodes beyond LADS (a test's plain variable)."""
        return self._server

    def add_device(
        self,
        name: str,
        model: str,
        sensors: Sequence[tuple[str, str | None] | tuple[str, str | None, Any]],
        *,
        unit: str = "MainUnit",
        programs: bool = True,
    ) -> LadsDevice:
        """A device in state Operate with one functional unit, `unit`, holding a sensor function
        per (function name, engineering unit[, initial value]); a value keeps its initial
        value's type (float by default; a str for a barcode). `programs`: a ProgramManager."""
        if name in self.devices:
            raise ValueError(f"a device {name!r} exists already")
        at = self._now()
        device = LadsDevice(
            name=name,
            model=model,
            unit=unit,
            sensors={s[0]: (s[1], _Reading(_initial(s), at)) for s in sensors},
            state=_Reading("Operate", at),
            programs=programs,
            program_state=_Reading(IDLE, at),
            run_id=_Reading("", at),
            program=_Reading("", at),
        )
        self.devices[name] = device
        if self._server is not None:
            task = asyncio.get_running_loop().create_task(self._build_device(device))
            self._building.add(task)
            task.add_done_callback(self._building.discard)
        return device

    async def start(self, port: int, host: str = "127.0.0.1") -> str:
        """Serves on opc.tcp://host:port/ and returns that URL."""
        if self._server is not None:
            raise RuntimeError("the server is running already")
        server = Server()
        await server.init()
        server.set_server_name(self.name)
        server.set_endpoint(f"opc.tcp://{host}:{port}/")
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        for uri in (DI_URI, MACHINERY_URI, LADS_URI, SIMULATED_URI):
            self._index[uri] = await server.register_namespace(uri)
        self._server = server
        try:
            await server.nodes.objects.add_object(
                self._id(DEVICE_SET), self._name(DEVICE_SET, DI_URI)
            )
            for device in self.devices.values():
                await self._build_device(device)
            await server.start()
        except BaseException:
            self._server = None  # never served: nothing to stop
            raise
        self.url = f"opc.tcp://{host}:{port}/"
        return self.url

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            await asyncio.gather(*self._building, return_exceptions=True)
            # asyncua closes its listening socket last, after the connections: a client that
            # reconnects at once gets in mid-shutdown, and the shutdown then hangs. First.
            if (listening := server.bserver._server) is not None:
                listening.close()
            await server.stop()

    async def set_value(self, device: LadsDevice | str, function: str, value: Any) -> None:
        found = self._device(device)
        engineering_unit, reading = found.sensors[function]
        kind = type(reading.value)
        reading = _Reading(kind(value), self._now())
        found.sensors[function] = (engineering_unit, reading)
        await self._write(found, _sensor_path(found, function), reading.value, reading.at)

    async def set_state(self, device: LadsDevice | str, state: str) -> None:
        """`state`: one of DEVICE_STATES (Initialization, Operate, Sleep, Shutdown, Error)."""
        if state not in DEVICE_STATES:
            raise ValueError(f"{state!r} is none of {', '.join(DEVICE_STATES)}")
        found = self._device(device)
        found.state = _Reading(state, self._now())
        await self._write(found, DEVICE_STATE, ua.LocalizedText(state), found.state.at)

    async def start_program(
        self, device: LadsDevice | str, run_id: str, program: str, supervisory_job_id: str = ""
    ) -> None:
        """The program `program` starts running as run `run_id` (its DeviceProgramRunId); a
        supervisory job id (a LIMS' own id of the job) goes into the run's result."""
        found = self._device(device)
        found.run_id = _Reading(run_id, self._now())
        found.program = _Reading(program, self._now())
        found.job, found.started = supervisory_job_id, found.run_id.at
        found.program_state = _Reading(RUNNING, self._now())
        active = (*_unit_path(found), PROGRAM_MANAGER, ACTIVE_PROGRAM)
        await self._write(found, (*active, RUN_ID), run_id, found.run_id.at)
        await self._write(found, (*active, PROGRAM_TEMPLATE), program, found.program.at)
        state = ua.LocalizedText(RUNNING)
        await self._write(found, (*active, "CurrentState"), state, found.program_state.at)

    async def finish_program(self, device: LadsDevice | str, outcome: str, summary: str) -> None:
        """`outcome`: succeeded, failed or aborted. The result is in the ResultSet before the
        state changes, as LADS asks, so whoever sees the state finds the result."""
        if outcome not in FINISHED:
            raise ValueError(f"{outcome!r} is none of {', '.join(FINISHED)}")
        found = self._device(device)
        stopped = self._now()
        result = _Result(
            str(found.run_id.value), found.job, summary, found.started or stopped, stopped
        )
        found.results.append(result)
        dropped, found.results = found.results[:-MAX_RESULTS], found.results[-MAX_RESULTS:]
        if self._server is not None:
            await self._settle()
            await self._build_result(found, result)
            for old in dropped:
                node = self._server.get_node(self._id(found.name, *_result_path(found, old)))
                await self._server.delete_nodes([node], recursive=True)
        found.program_state = _Reading(FINISHED[outcome], self._now())
        path = (*_unit_path(found), PROGRAM_MANAGER, ACTIVE_PROGRAM, "CurrentState")
        await self._write(found, path, ua.LocalizedText(FINISHED[outcome]), found.program_state.at)

    # --- the address space: node ids are the browse path, in the simulated lab's namespace ---

    def _now(self) -> datetime:
        # Strictly increasing source timestamps: a bridge orders changes by them and keys its
        # events by them, so two changes must never share one.
        self._last = max(datetime.now(UTC), self._last + timedelta(microseconds=1))
        return self._last

    def _device(self, device: LadsDevice | str) -> LadsDevice:
        return self.devices[device if isinstance(device, str) else device.name]

    def _id(self, *path: str) -> ua.NodeId:
        return ua.NodeId("/".join(path), self._index[SIMULATED_URI])

    def _name(self, name: str, uri: str | None) -> ua.QualifiedName:
        return ua.QualifiedName(name, self._index[uri] if uri else 0)

    async def _settle(self) -> None:
        await asyncio.gather(*self._building)

    async def _write(
        self, device: LadsDevice, path: Sequence[str], value: Any, at: datetime
    ) -> None:
        if self._server is not None:
            await self._settle()
            data = ua.DataValue(_variant(value), SourceTimestamp=at, ServerTimestamp=at)
            await self._server.write_attribute_value(self._id(device.name, *path), data)

    async def _object(self, parent: Node, path: Sequence[str], uri: str) -> Node:
        return await parent.add_object(self._id(*path), self._name(path[-1], uri))

    async def _variable(
        self,
        parent: Node,
        path: Sequence[str],
        value: Any,
        *,
        uri: str | None = LADS_URI,
        at: datetime | None = None,
        kind: int = ua.ObjectIds.PropertyType,
    ) -> Node:
        assert self._server is not None
        variant = _variant(value)
        item = ua.AddNodesItem(
            RequestedNewNodeId=self._id(*path),
            BrowseName=self._name(path[-1], uri),
            NodeClass_=ua.NodeClass.Variable,
            ParentNodeId=parent.nodeid,
            ReferenceTypeId=ua.NodeId(
                ua.ObjectIds.HasProperty
                if kind == ua.ObjectIds.PropertyType
                else ua.ObjectIds.HasComponent
            ),
            TypeDefinition=ua.NodeId(kind),
            NodeAttributes=ua.VariableAttributes(
                DisplayName=ua.LocalizedText(path[-1]),
                DataType=_data_type(value),
                Value=variant,
                ValueRank=ua.ValueRank.Scalar,
                AccessLevel=ua.AccessLevel.CurrentRead.mask,
                UserAccessLevel=ua.AccessLevel.CurrentRead.mask,
            ),
        )
        [added] = await parent.session.add_nodes([item])
        added.StatusCode.check()
        if at is not None:  # the reading's own moment, not the moment the node was made
            data = ua.DataValue(variant, SourceTimestamp=at, ServerTimestamp=at)
            await self._server.write_attribute_value(added.AddedNodeId, data)
        return self._server.get_node(added.AddedNodeId)

    async def _build_device(self, device: LadsDevice) -> None:
        assert self._server is not None
        base = (device.name,)
        root = await self._object(self._server.get_node(self._id(DEVICE_SET)), base, SIMULATED_URI)
        identification = await self._object(root, (*base, IDENTIFICATION), DI_URI)
        for part, value, uri in (
            (COMPONENT_NAME, device.name, MACHINERY_URI),
            (MODEL, device.model, DI_URI),
        ):
            path = (*base, IDENTIFICATION, part)
            await self._variable(identification, path, ua.LocalizedText(value), uri=uri)
        machine = await self._object(root, (*base, DEVICE_STATE[0]), LADS_URI)
        state = ua.LocalizedText(device.state.value)
        variable = ua.ObjectIds.BaseDataVariableType
        await self._variable(
            machine, (*base, *DEVICE_STATE), state, uri=None, at=device.state.at, kind=variable
        )
        units = await self._object(root, (*base, FUNCTIONAL_UNIT_SET), LADS_URI)
        unit = await self._object(units, (*base, *_unit_path(device)), SIMULATED_URI)
        functions = await self._object(unit, (*base, *_unit_path(device), FUNCTION_SET), LADS_URI)
        for function, (engineering_unit, reading) in device.sensors.items():
            sensor = (*base, *_sensor_path(device, function))
            holder = await self._object(functions, sensor[:-1], SIMULATED_URI)
            value = await self._variable(
                holder, sensor, reading.value, at=reading.at, kind=ua.ObjectIds.AnalogItemType
            )
            information = ua.EUInformation(
                NamespaceUri="http://www.opcfoundation.org/UA/units/un/cefact",
                UnitId=-1,  # no UNECE code looked up: the display name carries the unit
                DisplayName=ua.LocalizedText(engineering_unit or ""),
                Description=ua.LocalizedText(engineering_unit or ""),
            )
            await self._variable(value, (*sensor, ENGINEERING_UNITS), information, uri=None)
        if device.programs:
            await self._build_programs(device, unit)

    async def _build_programs(self, device: LadsDevice, unit: Node) -> None:
        manager_path = (device.name, *_unit_path(device), PROGRAM_MANAGER)
        manager = await self._object(unit, manager_path, LADS_URI)
        active = await self._object(manager, (*manager_path, ACTIVE_PROGRAM), LADS_URI)
        for name, reading in ((RUN_ID, device.run_id), (PROGRAM_TEMPLATE, device.program)):
            await self._variable(
                active, (*manager_path, ACTIVE_PROGRAM, name), reading.value, at=reading.at
            )
        await self._variable(
            active,
            (*manager_path, ACTIVE_PROGRAM, "CurrentState"),
            ua.LocalizedText(device.program_state.value),
            uri=None,
            at=device.program_state.at,
            kind=ua.ObjectIds.BaseDataVariableType,
        )
        await self._object(manager, (*manager_path, RESULT_SET), LADS_URI)
        for result in device.results:
            await self._build_result(device, result)

    async def _build_result(self, device: LadsDevice, result: _Result) -> None:
        assert self._server is not None
        path = (device.name, *_result_path(device, result))
        node = await self._object(self._server.get_node(self._id(*path[:-1])), path, SIMULATED_URI)
        for name, value in (
            (RUN_ID, result.run_id),
            (SUPERVISORY_JOB_ID, result.supervisory_job_id),
            (DESCRIPTION, ua.LocalizedText(result.summary)),
            (STARTED, result.started),
            (STOPPED, result.stopped),
        ):
            await self._variable(node, (*path, name), value)


def _initial(sensor: tuple[Any, ...]) -> float | bool | str:
    value = sensor[2] if len(sensor) > 2 else 0.0
    if isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # a number is a Double, whatever it starts as
    if not isinstance(value, float | bool | str):
        raise ValueError(f"{sensor[0]}: a value is a number, a bool or a str, not {value!r}")
    return value


def _unit_path(device: LadsDevice) -> tuple[str, ...]:
    return (FUNCTIONAL_UNIT_SET, device.unit)


def _sensor_path(device: LadsDevice, function: str) -> tuple[str, ...]:
    return (*_unit_path(device), FUNCTION_SET, function, VALUE_NAMES[0])


def _result_path(device: LadsDevice, result: _Result) -> tuple[str, ...]:
    return (*_unit_path(device), PROGRAM_MANAGER, RESULT_SET, result.run_id)


def _variant(value: Any) -> ua.Variant:
    if isinstance(value, ua.EUInformation):
        return ua.Variant(value, ua.VariantType.ExtensionObject)
    return ua.Variant(value, _VARIANTS[type(value)])


_VARIANTS: dict[type, ua.VariantType] = {
    bool: ua.VariantType.Boolean,
    float: ua.VariantType.Double,
    str: ua.VariantType.String,
    datetime: ua.VariantType.DateTime,
    ua.LocalizedText: ua.VariantType.LocalizedText,
}


def _data_type(value: Any) -> ua.NodeId:
    if isinstance(value, ua.EUInformation):
        return ua.NodeId(ua.ObjectIds.EUInformation)
    return ua.NodeId(_VARIANTS[type(value)].value)  # built-in types: VariantType = DataType id
