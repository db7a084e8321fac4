"""The device form, on the organisation page (adding) and on a device's own page (editing): as
many channel rows as wanted, turned into the service's input, and its errors filed back beside
the row they belong to."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData

from labhooks.domain.catalogue import EVENT_TYPES
from labhooks.domain.errors import FieldError, InvalidInput
from labhooks.storage.models import Channel, Device
from labhooks.web.forms import Input, labelled, validated

EVENT_NAMES = list(EVENT_TYPES)
# a row naming a channel the device no longer has (removed in another tab, say): not made again
GONE = (
    "This channel no longer exists (it was removed meanwhile): remove the row or reload the page."
)


@dataclass
class ChannelRow:
    """One channel's inputs. `token` names them on the page (a row added by the script gets a
    new one), so a row's ticked events stay its own whichever rows are removed. `channel_id`
    names the stored channel the row shows; its key is read-only (see DeviceForm.input)."""

    token: str
    key: str = ""
    name: str = ""
    unit: str = ""
    events: list[str] = field(default_factory=list)
    channel_id: str = ""  # empty: a channel to add
    errors: dict[str, str] = field(default_factory=dict)

    def blank(self) -> bool:
        return not (
            self.channel_id
            or self.key.strip()
            or self.name.strip()
            or self.unit.strip()
            or self.events
        )


@dataclass
class DeviceForm:
    name: str = ""
    model: str = ""
    rows: list[ChannelRow] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def blank_form(cls) -> DeviceForm:
        return cls(rows=[ChannelRow("0")])

    @classmethod
    def of(cls, device: Device) -> DeviceForm:
        rows = [
            ChannelRow(str(i), c.key, c.name, c.unit or "", list(c.trigger_events), c.id)
            for i, c in enumerate(device.channels)
        ]
        return cls(device.name, device.model or "", rows or [ChannelRow("0")])

    @classmethod
    def parse(cls, form: FormData) -> DeviceForm:
        """Rows by position (each has a token, a channel id, a key, a name and a unit input, in
        that order); events as `<token>|<event>`."""
        tokens, ids, keys, names, units = (
            [str(v) for v in form.getlist(name)]
            for name in ("channel_row", "channel_id", "channel_key", "channel_name", "channel_unit")
        )

        def at(values: list[str], i: int, missing: str = "") -> str:
            return values[i] if i < len(values) else missing

        count = max(len(tokens), len(ids), len(keys), len(names), len(units))
        rows = [
            ChannelRow(
                at(tokens, i, str(i)),
                at(keys, i),
                at(names, i),
                at(units, i),
                channel_id=at(ids, i).strip(),
            )
            for i in range(count)
        ]
        by_token = {row.token: row for row in rows}
        for raw in form.getlist("trigger_events"):
            token, marked, event = str(raw).partition("|")
            if marked and (row := by_token.get(token)) is not None:
                row.events.append(event)
        return cls(
            name=str(form.get("name", "")),
            model=str(form.get("model", "")),
            rows=rows or [ChannelRow("0")],
        )

    @property
    def template_row(self) -> ChannelRow:
        """The row the page's script copies for "Add channel", its token filled in there."""
        return ChannelRow("__row__")

    @property
    def sent(self) -> list[ChannelRow]:
        """The rows the service gets: an untouched empty row is no channel."""
        return [row for row in self.rows if not row.blank()]

    def data(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "model": self.model.strip() or None,
            "channels": [
                {
                    "key": row.key.strip(),
                    "name": row.name,
                    "unit": row.unit.strip() or None,
                    "trigger_events": row.events,
                }
                for row in self.sent
            ],
        }

    def input(self, model: type[Input], stored: Sequence[Channel] = ()) -> Input:
        """The service's input; InvalidInput names every field that is wrong. A row naming one
        of the device's `stored` channels gets that channel's key, whatever key came with it:
        the service keeps channels by key, so a changed key would delete the channel (its
        access grants and subscriptions' selections with it) and make a new one."""
        keys = {channel.id: channel.key for channel in stored}
        errors = []
        for i, row in enumerate(self.sent):
            if row.channel_id in keys:
                row.key = keys[row.channel_id]
            elif row.channel_id:
                errors.append(FieldError(f"channels.{i}.key", GONE))
        try:
            found = validated(model, self.data())
        except InvalidInput as exc:
            errors += exc.errors
        if errors:
            raise InvalidInput(errors)
        return found

    def show(self, errors: list[FieldError]) -> None:
        """Each error beside its field: `channels.<i>.<field>` beside the i-th row sent."""
        sent = self.sent
        for error in errors:
            parts = error.field.split(".")
            row = int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else len(sent)
            if parts[0] == "channels" and row < len(sent):
                sent[row].errors.setdefault(parts[2], labelled(parts[2], error.message))
                continue
            self.errors.setdefault(parts[0], labelled(parts[0], error.message))
