"""The TOML file `labhooks opcua-bridge --config` reads: the endpoints, what to take from each
(LADS discovery, explicit node mappings), and how the bridge behaves (docs/devices.md).

Validated by Pydantic with unknown keys refused, so a misspelt option is an error at start-up
rather than a setting silently ignored.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Literal

from asyncua import ua
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DeviceStatus = Literal["online", "offline", "error"]
CHANNEL_KEY = r"^[A-Za-z0-9_.\-]+$"  # what labhooks accepts as a channel key
SETUP_TOKEN_VARIABLE = "LABHOOKS_SETUP_TOKEN"  # noqa: S105 (its name, not a token)


class ConfigError(ValueError):
    """The config file cannot be read or does not fit; the message names the place."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeMapping(_Strict):
    """One variable of a server that is not LADS, and the events its changes become."""

    node: str = Field(description="The node id, e.g. ns=2;s=Reactor1.Temperature")
    device_id: str | None = Field(None, description="The labhooks device's id")
    device: str | None = Field(None, description="Or its name, looked up (and created) by name")
    model: str | None = Field(None, description="The model, for a device the bridge creates")
    channel: str = Field(pattern=CHANNEL_KEY, max_length=100)
    channel_name: str | None = None
    event: Literal["data_point.created", "device.status_changed"] = "data_point.created"
    unit: str | None = Field(None, max_length=50)
    deadband: float = Field(0.0, ge=0, description="Absolute; numeric values only")

    @field_validator("node")
    @classmethod
    def _node_id(cls, node: str) -> str:
        try:
            ua.NodeId.from_string(node)
        except (ValueError, ua.UaError):  # asyncua raises either for a bad id
            raise ValueError(f"{node!r} is not a node id such as ns=2;s=Name") from None
        return node

    @model_validator(mode="after")
    def _one_device(self) -> NodeMapping:
        if (self.device_id is None) == (self.device is None):
            raise ValueError("give either device_id or device (a name), not both nor neither")
        return self


class Endpoint(_Strict):
    url: str = Field(pattern=r"^opc\.tcp://", description="opc.tcp://host:port/path")
    name: str | None = Field(None, description="How logs name it; default: the URL")
    lads: bool = Field(True, description="Discover LADS devices under Objects/DeviceSet")
    username: str | None = None
    password: str | None = None
    deadband: float = Field(0.0, ge=0, description="Absolute deadband of every sensor value")
    deadbands: dict[str, float] = Field(
        default_factory=dict, description="Per LADS function name, instead of `deadband`"
    )
    devices: dict[str, str] = Field(
        default_factory=dict,
        description="LADS device name → labhooks device id, for a token that cannot look up",
    )
    device_states: dict[str, DeviceStatus] = Field(
        default_factory=dict, description="Device states → labhooks status, over the defaults"
    )
    status_channel: str | None = Field(
        None,
        pattern=CHANNEL_KEY,
        description="For mapped nodes: the channel that tells a lost connection (LADS: status)",
    )
    queue_size: int = Field(100, ge=1, le=10_000, description="Changes a server keeps per node")
    nodes: list[NodeMapping] = Field(default_factory=list)

    @property
    def label(self) -> str:
        return self.name or self.url

    @field_validator("deadbands")
    @classmethod
    def _non_negative(cls, deadbands: dict[str, float]) -> dict[str, float]:
        if bad := [name for name, value in deadbands.items() if value < 0]:
            raise ValueError(f"deadbands must not be negative: {', '.join(bad)}")
        return deadbands

    @model_validator(mode="after")
    def _something_to_watch(self) -> Endpoint:
        if not self.lads and not self.nodes:
            raise ValueError("with lads = false, map some [[endpoints.nodes]]")
        return self


class BridgeOptions(_Strict):
    publishing_interval_ms: float = Field(250, gt=0, description="How often servers send")
    batch_size: int = Field(500, ge=1, le=1000, description="Most events per POST /events")
    reconnect_backoff_s: list[float] = Field(
        default_factory=lambda: [0.5, 1, 2, 5, 10, 30], min_length=1
    )
    manage_devices: bool = Field(
        True, description="Create missing devices and channels when the token may"
    )
    setup_token: str | None = Field(
        None,
        description="A full token of an organisation administrator, used only to look up "
        f"and create devices (or {SETUP_TOKEN_VARIABLE}); default: the publishing token",
    )
    request_timeout_s: float = Field(10, gt=0, description="An OPC UA request's deadline")
    watchdog_s: float = Field(1, gt=0, description="How often a connection is checked")
    flush_s: float = Field(10, ge=0, description="On stop: how long held events may take")

    @field_validator("reconnect_backoff_s")
    @classmethod
    def _positive(cls, waits: list[float]) -> list[float]:
        if any(wait <= 0 for wait in waits):
            raise ValueError("every wait must be more than 0 seconds")
        return waits


class BridgeConfig(_Strict):
    bridge: BridgeOptions = Field(default_factory=BridgeOptions)
    endpoints: list[Endpoint] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> BridgeConfig:
        urls = [endpoint.url for endpoint in self.endpoints]
        if len(set(urls)) != len(urls):
            raise ValueError("an endpoint URL is listed twice")
        return self


def parse_config(text: str, environ: dict[str, str] | None = None) -> BridgeConfig:
    """The config in `text`; the setup token from LABHOOKS_SETUP_TOKEN when the text has none."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not TOML: {exc}") from None
    try:
        config = BridgeConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'config'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ConfigError(problems) from None
    token = (os.environ if environ is None else environ).get(SETUP_TOKEN_VARIABLE)
    if config.bridge.setup_token is None and token:
        options = config.bridge.model_copy(update={"setup_token": token})
        config = config.model_copy(update={"bridge": options})
    return config


def load_config(path: str | Path, environ: dict[str, str] | None = None) -> BridgeConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    try:
        return parse_config(text, environ)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
