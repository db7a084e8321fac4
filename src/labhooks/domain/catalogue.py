"""The event catalogue: each trigger event type, what it means, and the shape of its `data`.

Each type's data is a Pydantic model, so one definition both validates published events and
produces the JSON Schema that `GET /event-types` serves. Extra fields are kept: instruments add
vendor-specific values, and a receiver should get them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labhooks.domain.errors import FieldError, InvalidInput


class _EventData(BaseModel):
    model_config = ConfigDict(extra="allow")


DeviceStatus = Literal["online", "offline", "error"]


class DataPointCreated(_EventData):
    value: float | str | bool = Field(
        description="The reading: a number, or text such as a barcode"
    )
    unit: str | None = Field(None, description="Unit of the value, e.g. 'g' or 'pH'")
    measured_at: datetime | None = Field(None, description="When the device measured it")


class DeviceStatusChanged(_EventData):
    status: DeviceStatus
    previous_status: DeviceStatus | None = None
    message: str | None = None


class IncidentChanged(_EventData):
    level: Literal["warning", "critical"]
    comparator: Literal[">", ">=", "<", "<=", "==", "!="]
    threshold: float
    value: float


class CommandCompleted(_EventData):
    command: str = Field(description="e.g. tare, get_weight, start")
    result: Any = None


class CommandFailed(_EventData):
    command: str
    error: str


class RunStarted(_EventData):
    run_id: str
    program: str | None = None


class RunCompleted(_EventData):
    run_id: str
    program: str | None = None
    outcome: Literal["succeeded", "failed", "aborted"]


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    data_model: type[BaseModel]

    @cached_property
    def schema(self) -> dict[str, Any]:
        return self.data_model.model_json_schema()

    def validate(self, data: Any, field: str = "data") -> dict[str, Any]:
        """The data as JSON-ready values, or InvalidInput naming each bad field."""
        try:
            return self.data_model.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            raise InvalidInput(
                [FieldError(".".join([field, *map(str, e["loc"])]), e["msg"]) for e in exc.errors()]
            ) from None


EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType("data_point.created", "A channel reports a new value.", DataPointCreated),
        EventType(
            "device.status_changed",
            "A device goes online, offline, or into error.",
            DeviceStatusChanged,
        ),
        EventType("incident.opened", "A channel threshold is crossed.", IncidentChanged),
        EventType("incident.closed", "A channel threshold is cleared.", IncidentChanged),
        EventType("command.completed", "A command sent to the device finished.", CommandCompleted),
        EventType("command.failed", "A command sent to the device failed.", CommandFailed),
        EventType("run.started", "A run, program or sequence starts.", RunStarted),
        EventType("run.completed", "A run, program or sequence finishes.", RunCompleted),
    )
}


def unknown_event_types(names: list[str]) -> list[str]:
    return [n for n in names if n not in EVENT_TYPES]
