"""The event catalogue: each trigger event type, what it means, and the shape of its `data`.

Each type's data is a Pydantic model, so one definition both validates published events and
produces the JSON Schema that `GET /event-types` serves. Extra fields are kept: instruments add
vendor-specific values, and a receiver should get them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from labhooks.domain.errors import FieldError, InvalidInput
from labhooks.domain.text import json_problems


class _EventData(BaseModel):
    model_config = ConfigDict(extra="allow")


DeviceStatus = Literal["online", "offline", "error"]
DEVICE_STATUS_CHANGED = "device.status_changed"


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
    """labhooks publishes these itself, from channel thresholds (services.lab_rules); a gateway
    that judges its own limits may publish them too."""

    level: Literal["warning", "critical"]
    comparator: Literal[">", ">=", "<", "<=", "==", "!=", "outside"]
    threshold: float = Field(description="The limit; with `outside`, the range's low end")
    upper: float | None = Field(None, description="With `outside`: the range's high end")
    value: float = Field(description="The value that opened (or closed) the incident")
    incident_id: str | None = None
    incident_url: str | None = Field(None, description="The incident in labhooks' API")
    opened_at: datetime | None = None
    closed_at: datetime | None = None


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


EARLIEST_OCCURRED_AT = datetime(1970, 1, 1, tzinfo=UTC)
LATEST_AHEAD = timedelta(days=1)  # clocks of lab devices drift, but not by days


def as_utc(moment: datetime) -> datetime:
    """`moment` in UTC, a time without an offset taken as UTC; ValueError when it has none
    (year 1 with an offset east of UTC, 9999-12-31 west of it)."""
    try:
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except OverflowError:
        raise ValueError("lies outside the years 1 to 9999 once in UTC") from None


def occurred_in_utc(moment: datetime, now: datetime) -> datetime:
    """When an event occurred, in UTC (a time without an offset is taken as UTC); ValueError
    outside the window labhooks accepts: from 1970 to a day ahead of now."""
    try:
        utc = as_utc(moment)
    except ValueError:
        utc = EARLIEST_OCCURRED_AT - timedelta(days=1)
    if not EARLIEST_OCCURRED_AT <= utc <= now + LATEST_AHEAD:
        raise ValueError(
            "must be between 1970-01-01T00:00:00Z and a day from now "
            f"({(now + LATEST_AHEAD):%Y-%m-%dT%H:%M}Z)"
        )
    return utc


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    data_model: type[BaseModel]
    example: dict[str, Any]

    @cached_property
    def schema(self) -> dict[str, Any]:
        return self.data_model.model_json_schema()

    def validate(self, data: Any, field: str = "data") -> dict[str, Any]:
        """The data as JSON-ready values, or InvalidInput naming each bad field."""
        if problems := json_problems(data, field):
            raise InvalidInput([FieldError(path, why) for path, why in problems])
        try:
            return self.data_model.model_validate(data).model_dump(mode="json")
        except ValidationError as exc:
            # A union field (value: number | text | bool) fails once per member type; report
            # it once, at the field, with every way it could have been right.
            by_field: dict[str, list[str]] = {}
            for error in exc.errors():
                name = str(error["loc"][0]) if error["loc"] else ""
                by_field.setdefault(name, []).append(error["msg"])
            raise InvalidInput(
                [
                    FieldError(f"{field}.{name}" if name else field, " or ".join(messages))
                    for name, messages in by_field.items()
                ]
            ) from None


_INCIDENT = {
    "level": "warning",
    "comparator": ">",
    "threshold": 8.5,
    "value": 8.62,
    "incident_id": "inc_01JD7Q2K8Y3M4N5P6R7S8T9V0W",
    "incident_url": "/api/v1/incidents/inc_01JD7Q2K8Y3M4N5P6R7S8T9V0W",
    "opened_at": "2026-11-29T10:15:00Z",
}

EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType(
            "data_point.created",
            "A channel reports a new value.",
            DataPointCreated,
            {"value": 12.3456, "unit": "g"},
        ),
        EventType(
            "device.status_changed",
            "A device goes online, offline, or into error.",
            DeviceStatusChanged,
            {"status": "online", "previous_status": "offline"},
        ),
        EventType("incident.opened", "A channel threshold is crossed.", IncidentChanged, _INCIDENT),
        EventType("incident.closed", "A channel threshold is cleared.", IncidentChanged, _INCIDENT),
        EventType(
            "command.completed",
            "A command sent to the device finished.",
            CommandCompleted,
            {"command": "tare", "result": "ok"},
        ),
        EventType(
            "command.failed",
            "A command sent to the device failed.",
            CommandFailed,
            {"command": "tare", "error": "balance not stable"},
        ),
        EventType(
            "run.started",
            "A run, program or sequence starts.",
            RunStarted,
            {"run_id": "R-1001", "program": "Assay A"},
        ),
        EventType(
            "run.completed",
            "A run, program or sequence finishes.",
            RunCompleted,
            {"run_id": "R-1001", "program": "Assay A", "outcome": "succeeded"},
        ),
    )
}


RESERVED_DATA_KEYS = frozenset({"event_id", "device", "channel", "test"})

# The default test event, like GitHub's `ping`: about no device and no channel, so a receiver
# that ignores `data.test` still records no reading from it.
PING = "ping"


def ping_payload(*, event_id: str, occurred_at: datetime, subscription_id: str) -> str:
    body = {
        "type": PING,
        "timestamp": occurred_at.isoformat().replace("+00:00", "Z"),
        "data": {
            "event_id": event_id,
            "subscription_id": subscription_id,
            "test": True,
            "message": "A test event from labhooks: the subscription reaches this URL and its "
            "signature verifies. It is about no device.",
        },
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def webhook_payload(
    *,
    event_id: str,
    event_type: str,
    occurred_at: datetime,
    device: dict[str, Any],
    channel: dict[str, Any],
    data: dict[str, Any],
    test: bool = False,
) -> str:
    """The Standard Webhooks body every delivery of an event signs and sends, byte for byte."""
    fields = {k: v for k, v in data.items() if k not in RESERVED_DATA_KEYS}
    body = {
        "type": event_type,
        "timestamp": occurred_at.isoformat().replace("+00:00", "Z"),
        "data": {"event_id": event_id, "device": device, "channel": channel, **fields}
        | ({"test": True} if test else {}),
    }
    # allow_nan=False: a NaN that got past validation fails here, never as an invalid body
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


# -- operational events: about the organisation's subscriptions, not about a device ----------


class SubscriptionReference(BaseModel):
    id: str
    target_url: str
    description: str | None = None
    owner_id: str | None = Field(None, description="The user who owns the subscription")


class SubscriptionDisabled(_EventData):
    subscription: SubscriptionReference
    reason: str = Field(description="Why labhooks deactivated it, as its owner sees it")


class SubscriptionSecretRotated(_EventData):
    subscription: SubscriptionReference
    signature_scheme: Literal["hmac", "ed25519"]
    previous_secret_expires_at: datetime | None = Field(
        None, description="Until when the previous secret keeps signing alongside the new one"
    )
    rotated_by: str | None = Field(None, description="The id of the user who rotated it")


class DeliveryExhausted(_EventData):
    subscription: SubscriptionReference
    delivery_id: str = Field(description="The failed delivery; it can still be resent")
    failed_event_id: str
    failed_event_type: str
    attempts: int
    last_status_code: int | None = None
    last_error: str | None = None


SUBSCRIPTION_DISABLED = "subscription.disabled"
SUBSCRIPTION_SECRET_ROTATED = "subscription.secret_rotated"  # noqa: S105 (a type name)
DELIVERY_EXHAUSTED = "delivery.exhausted"

_SUBSCRIPTION = {
    "id": "sub_01JD7Q2K8Y3M4N5P6R7S8T9V0W",
    "target_url": "https://lims.example.org/hooks/balances",
    "description": "Balances to the LIMS",
    "owner_id": "usr_01JD7Q2K8Y3M4N5P6R7S8T9V0X",
}

# Separate from EVENT_TYPES: no channel offers these and nobody publishes them; labhooks sends
# them to organisation-level subscriptions (WebhookSubscription.organization_events).
ORGANIZATION_EVENT_TYPES: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType(
            SUBSCRIPTION_DISABLED,
            "labhooks deactivated a subscription: its deliveries failed for too long, or its "
            "target answered 410 Gone.",
            SubscriptionDisabled,
            {
                "subscription": _SUBSCRIPTION,
                "reason": "The target answered 410 Gone on 2026-11-29 10:15 UTC.",
            },
        ),
        EventType(
            SUBSCRIPTION_SECRET_ROTATED,
            "A subscription's signing secret was rotated; the previous one signs for 24 hours "
            "more.",
            SubscriptionSecretRotated,
            {
                "subscription": _SUBSCRIPTION,
                "signature_scheme": "hmac",
                "previous_secret_expires_at": "2026-11-30T10:15:00Z",
                "rotated_by": "usr_01JD7Q2K8Y3M4N5P6R7S8T9V0X",
            },
        ),
        EventType(
            DELIVERY_EXHAUSTED,
            "A delivery's last retry failed: it is failed now, and can be resent.",
            DeliveryExhausted,
            {
                "subscription": _SUBSCRIPTION,
                "delivery_id": "dlv_01JD7Q2K8Y3M4N5P6R7S8T9V0Y",
                "failed_event_id": "evt_01JD7Q2K8Y3M4N5P6R7S8T9V0Z",
                "failed_event_type": "data_point.created",
                "attempts": 8,
                "last_status_code": 503,
                "last_error": None,
            },
        ),
    )
}


def organization_payload(
    *,
    event_id: str,
    event_type: str,
    occurred_at: datetime,
    organization_id: str,
    data: dict[str, Any],
) -> str:
    """The body of an operational event: about the organisation, so no device and no channel."""
    fields = {k: v for k, v in data.items() if k not in RESERVED_DATA_KEYS}
    body = {
        "type": event_type,
        "timestamp": occurred_at.isoformat().replace("+00:00", "Z"),
        "data": {"event_id": event_id, "organization_id": organization_id, **fields},
    }
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
