"""labhooks' devices as a bridge or the simulator sees them: found by name, or made with the
channels they need, through the API and a token of the organisation."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import httpx

from labhooks.ingestion.logs import line
from labhooks.ingestion.publisher import TokenRefused, pause

log = logging.getLogger("labhooks.devices")


@dataclass(frozen=True)
class ChannelSpec:
    key: str
    name: str
    unit: str | None
    events: tuple[str, ...] = ("data_point.created",)


@dataclass(frozen=True)
class DeviceSpec:
    name: str
    model: str | None
    channels: tuple[ChannelSpec, ...]


class Directory:
    """labhooks' devices by name: found, or created with their channels (or given channels
    they lack) when the token may. A publish-only token may do neither: it is told once, and
    only the config's device ids are used. With `stop`, a wait for labhooks ends when it is
    set, raising publisher.Stopped."""

    def __init__(
        self,
        api_url: str,
        token: str,
        manage: bool,
        backoff_s: list[float],
        stop: asyncio.Event | None = None,
    ) -> None:
        self.manage = manage
        self.may_look_up = True
        self._backoff_s = backoff_s
        self._stop = stop
        self._known: dict[str, tuple[str, set[ChannelSpec]]] = {}
        self._client = httpx.AsyncClient(
            base_url=api_url.rstrip("/"), headers={"Authorization": f"Bearer {token}"}, timeout=30
        )

    async def __aenter__(self) -> Directory:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._client.aclose()

    async def device_id(self, spec: DeviceSpec) -> str | None:
        known = self._known.get(spec.name)
        if known is not None and set(spec.channels) <= known[1]:
            return known[0]
        if not self.may_look_up:
            return None
        status, body = await self._call("GET", "/devices", params={"q": spec.name, "limit": 200})
        if status != 200:  # 403: a publish-only token; it will not change its mind
            self.may_look_up = False
            log.warning(line("devices cannot be looked up", status=status, detail=body))
            return None
        found = [d for d in body.get("items", []) if d.get("name") == spec.name]
        if len(found) > 1:
            log.warning(line("device name is ambiguous", device=spec.name, matches=len(found)))
            return None
        if not found and not self.manage:
            return None
        if not found:
            channels = [_channel_body(c) for c in spec.channels]
            status, body = await self._call(
                "POST",
                "/devices",
                json={"name": spec.name, "model": spec.model, "channels": channels},
            )
            if status != 201:
                log.warning(line("device not created", device=spec.name, detail=body))
                return None
            log.info(line("device created", device=spec.name, id=body["id"]))
        else:
            body = found[0]
            if self.manage:
                await self._add_channels(body, spec)
        self._known[spec.name] = (str(body["id"]), set(spec.channels))
        return str(body["id"])

    async def _add_channels(self, device: dict[str, Any], spec: DeviceSpec) -> None:
        channels = {c["key"]: c for c in device.get("channels", [])}
        lacking = [
            c
            for c in spec.channels
            if c.key not in channels or not set(c.events) <= set(channels[c.key]["trigger_events"])
        ]
        if not lacking:
            return
        for wanted in lacking:
            had = channels.get(wanted.key)
            events = list(dict.fromkeys([*(had or {}).get("trigger_events", []), *wanted.events]))
            channels[wanted.key] = _channel_body(wanted) | (had or {}) | {"trigger_events": events}
        listed = [
            {k: c.get(k) for k in ("key", "name", "unit", "trigger_events")}
            for c in channels.values()
        ]
        status, body = await self._call(
            "PATCH", f"/devices/{device['id']}", json={"channels": listed}
        )
        keys = ",".join(c.key for c in lacking)
        if status == 200:
            log.info(line("channels added", device=spec.name, channels=keys))
        else:
            log.warning(line("channels not added", device=spec.name, channels=keys, detail=body))

    async def _call(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        """The answer that is not "try again later"; waits while labhooks cannot answer."""
        failures = 0
        while True:
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                reason: str = type(exc).__name__
            else:
                if response.status_code == 401:
                    raise TokenRefused(response.text[:500])
                if response.status_code < 500 and response.status_code != 429:
                    return response.status_code, _json(response)
                reason = f"status {response.status_code}"
            delay = self._backoff_s[min(failures, len(self._backoff_s) - 1)]
            failures += 1
            log.warning(line("labhooks cannot answer", reason=reason, retry_in_s=delay))
            await pause(delay, self._stop)


def _channel_body(channel: ChannelSpec) -> dict[str, Any]:
    return {
        "key": channel.key,
        "name": channel.name,
        "unit": channel.unit,
        "trigger_events": list(channel.events),
    }


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return {"detail": response.text[:500]}
