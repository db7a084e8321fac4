"""The LADS shape (OPC 30500, "Laboratory and Analytical Device Standard"): the browse names a
bridge looks for and how it discovers devices by them (ingestion.lads_server builds a server
that has them).

What a LADS server holds, and what of it labhooks uses (names as LADS, DI and Machinery give
them; every path below is by browse name, whatever namespace a server puts a name in):

    Objects/DeviceSet/<device>                         LADSDeviceType
      Identification/ComponentName, Model              Machinery identification: name, model
      DeviceState/CurrentState                         LADSDeviceStateMachineType
      FunctionalUnitSet/<unit>/
        FunctionSet/<function>/SensorValue             a sensor function's AnalogItem
                                  (or CurrentValue)    (EngineeringUnits: the unit)
        ProgramManager/ActiveProgram/                  the program running now:
          CurrentState, DeviceProgramRunId, CurrentProgramTemplate
        ProgramManager/ResultSet/<result>/             finished runs: Description (the
          DeviceProgramRunId, SupervisoryJobId, Stopped  summary), the job that asked for it

The server with this shape that the simulator and the tests run is ingestion.lads_server.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from asyncua import Client, Node, ua

log = logging.getLogger("labhooks.opcua")

DI_URI = "http://opcfoundation.org/UA/DI/"
MACHINERY_URI = "http://opcfoundation.org/UA/Machinery/"
LADS_URI = "http://opcfoundation.org/UA/LADS/"
SIMULATED_URI = "urn:labhooks:simulated-lab"  # where this server's devices and node ids live

DEVICE_SET = "DeviceSet"
IDENTIFICATION, COMPONENT_NAME, MODEL = "Identification", "ComponentName", "Model"
DEVICE_STATE = ("DeviceState", "CurrentState")
FUNCTIONAL_UNIT_SET, FUNCTION_SET = "FunctionalUnitSet", "FunctionSet"
VALUE_NAMES = ("SensorValue", "CurrentValue")  # a sensor's value, a controller's actual value
ENGINEERING_UNITS = "EngineeringUnits"
PROGRAM_MANAGER, ACTIVE_PROGRAM, RESULT_SET = "ProgramManager", "ActiveProgram", "ResultSet"
PROGRAM_STATE_PATHS = (
    (PROGRAM_MANAGER, ACTIVE_PROGRAM, "CurrentState"),
    ("FunctionalUnitState", "CurrentState"),  # LADS' own place for it
)
RUN_ID, PROGRAM_TEMPLATE = "DeviceProgramRunId", "CurrentProgramTemplate"
DESCRIPTION, SUPERVISORY_JOB_ID, STARTED, STOPPED = (
    "Description",
    "SupervisoryJobId",
    "Started",
    "Stopped",
)

DEVICE_STATES = ("Initialization", "Operate", "Sleep", "Shutdown", "Error")
IDLE, RUNNING = "Idle", "Running"
FINISHED = {"succeeded": "Completed", "failed": "Failed", "aborted": "Aborted"}
# Data types whose values are numbers (a deadband applies), the abstract ones included
NUMERIC_TYPES = frozenset(
    ua.NodeId(getattr(ua.ObjectIds, name))
    for name in (
        *("SByte", "Byte", "Int16", "UInt16", "Int32", "UInt32", "Int64", "UInt64"),
        *("Float", "Double", "Number", "Integer", "UInteger"),
    )
)
MAX_RESULTS = 50  # results a device keeps, newest last; LADS leaves the number to the device


def text(value: Any) -> str | None:
    """A name, state or description as text: LocalizedText, String, a NameNodeId's name."""
    if value is None:
        return None
    if isinstance(value, ua.LocalizedText):
        return value.Text
    if isinstance(value, str):
        return value
    name = getattr(value, "Name", None)
    return name if isinstance(name, str) else str(value)


# --- discovery: what a bridge finds on a LADS server -------------------------------------------


@dataclass(frozen=True)
class FoundSensor:
    unit: str  # the functional unit
    function: str
    node: ua.NodeId
    engineering_unit: str | None
    numeric: bool  # a deadband applies


@dataclass(frozen=True)
class FoundProgram:
    unit: str
    state: ua.NodeId
    run_id: ua.NodeId | None
    template: ua.NodeId | None
    results: ua.NodeId | None


@dataclass(frozen=True)
class FoundDevice:
    name: str
    model: str | None
    state: ua.NodeId | None
    sensors: tuple[FoundSensor, ...]
    programs: tuple[FoundProgram, ...]


async def _children(node: Node) -> dict[str, Node]:
    found = await node.get_children_descriptions()
    return {ref.BrowseName.Name: Node(node.session, ref.NodeId) for ref in found}


async def _walk(node: Node, *names: str) -> Node | None:
    for name in names:
        child = (await _children(node)).get(name)
        if child is None:
            return None
        node = child
    return node


async def read_text(node: Node | None) -> str | None:
    """The node's value as text; None where the server says it has none (a Bad status)."""
    if node is None:
        return None
    value = await node.read_data_value(raise_on_bad_status=False)
    return text(value.Value.Value) if value.StatusCode.is_good() and value.Value else None


async def is_numeric(node: Node) -> bool:
    """Whether the variable holds numbers, by its declared data type: its value may be Bad
    now (a sensor warming up), which says nothing of what it will hold."""
    return await node.read_data_type() in NUMERIC_TYPES


async def discover(client: Client) -> list[FoundDevice]:
    """Every device under Objects/DeviceSet, with its sensor values and programs."""
    device_set = await _walk(client.nodes.objects, DEVICE_SET)
    if device_set is None:
        return []
    return [await _device(name, node) for name, node in (await _children(device_set)).items()]


async def _device(browse_name: str, node: Node) -> FoundDevice:
    identification = await _walk(node, IDENTIFICATION)
    name = model = None
    if identification is not None:
        parts = await _children(identification)
        name = await read_text(parts.get(COMPONENT_NAME))
        model = await read_text(parts.get(MODEL))
    state = await _walk(node, *DEVICE_STATE)
    sensors: list[FoundSensor] = []
    programs: list[FoundProgram] = []
    units = await _walk(node, FUNCTIONAL_UNIT_SET)
    for unit_name, unit in (await _children(units)).items() if units else ():
        functions = await _walk(unit, FUNCTION_SET)
        if functions is not None:
            sensors += await _sensors(unit_name, functions, depth=2)
        if (program := await _program(unit_name, unit)) is not None:
            programs.append(program)
    return FoundDevice(
        name=name or browse_name,
        model=model,
        state=state.nodeid if state else None,
        sensors=tuple(sensors),
        programs=tuple(programs),
    )


async def _sensors(unit: str, functions: Node, depth: int) -> list[FoundSensor]:
    """Sensor functions of a FunctionSet, and of the FunctionSets functions nest (LADS allows
    a function of functions), `depth` levels down."""
    found: list[FoundSensor] = []
    for function_name, function in (await _children(functions)).items():
        parts = await _children(function)
        value = next((parts[name] for name in VALUE_NAMES if name in parts), None)
        if value is not None:
            try:
                found.append(await _sensor(unit, function_name, value))
            except ua.UaError as exc:  # this sensor alone is left out, and said so
                log.warning("sensor %s/%s not watched: %s", unit, function_name, exc)
        if depth > 0 and FUNCTION_SET in parts:
            found += await _sensors(unit, parts[FUNCTION_SET], depth - 1)
    return found


async def _sensor(unit: str, function: str, value: Node) -> FoundSensor:
    units = (await _children(value)).get(ENGINEERING_UNITS)
    information = None
    if units is not None:
        read = await units.read_data_value(raise_on_bad_status=False)
        information = read.Value.Value if read.StatusCode.is_good() and read.Value else None
    return FoundSensor(
        unit=unit,
        function=function,
        node=value.nodeid,
        engineering_unit=text(getattr(information, "DisplayName", None)) or None,
        numeric=await is_numeric(value),
    )


async def _program(unit_name: str, unit: Node) -> FoundProgram | None:
    for path in PROGRAM_STATE_PATHS:
        if (state := await _walk(unit, *path)) is not None:
            break
    else:
        return None
    active = await _walk(unit, PROGRAM_MANAGER, ACTIVE_PROGRAM)
    parts = await _children(active) if active is not None else {}
    results = await _walk(unit, PROGRAM_MANAGER, RESULT_SET)
    return FoundProgram(
        unit=unit_name,
        state=state.nodeid,
        run_id=parts[RUN_ID].nodeid if RUN_ID in parts else None,
        template=parts[PROGRAM_TEMPLATE].nodeid if PROGRAM_TEMPLATE in parts else None,
        results=results.nodeid if results else None,
    )


async def newest_result(client: Client, results: ua.NodeId, run_id: str | None) -> dict[str, Any]:
    """What the ResultSet says of the run (keys summary, supervisory_job_id): the result
    with its DeviceProgramRunId; where results carry no run ids, the one stopped last; {}
    when there is none (never another run's result)."""
    found: list[tuple[str | None, datetime, dict[str, Any]]] = []
    for result in (await _children(client.get_node(results))).values():
        parts = await _children(result)
        values = {
            name: await parts[name].read_value()
            for name in (RUN_ID, DESCRIPTION, SUPERVISORY_JOB_ID, STOPPED)
            if name in parts
        }
        stopped = values.get(STOPPED)
        moment = stopped.replace(tzinfo=None) if isinstance(stopped, datetime) else datetime.min
        said = {
            "summary": text(values.get(DESCRIPTION)) or None,
            "supervisory_job_id": text(values.get(SUPERVISORY_JOB_ID)) or None,
        }
        found.append((text(values.get(RUN_ID)) or None, moment, said))
    if any(result_run for result_run, _, _ in found):
        return next((said for result_run, _, said in found if result_run == run_id), {})
    return max(found, key=lambda result: result[1])[2] if found else {}
