"""The subscription form: what the browser posts, turned into the service's input, and back;
and the words every form's errors are shown in."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from starlette.datastructures import FormData

from labhooks.domain.errors import FieldError, InvalidInput
from labhooks.domain.people import Actor
from labhooks.domain.signing import SignatureScheme
from labhooks.domain.text import text_problem
from labhooks.services.devices import accessible_channels
from labhooks.services.target_urls import parse_field
from labhooks.storage.models import Channel, WebhookSubscription

Input = TypeVar("Input", bound=BaseModel)

# Messages for what the browser sends that Pydantic refuses, by the field's last name, where
# Pydantic's own words ("String should match pattern …") would puzzle.
PLAIN_WORDS = {
    "key": "may contain only letters, digits, '_', '.' and '-' (no spaces)",
}
# A message that goes on from the field's name ("is required") gets the name in front of it.
_GOES_ON = re.compile(r"(is|are|must|may|has|have|contains|should|lies|names|does) ")
_STARTS_LOWER = re.compile(r"[a-z]+ ")


def sentence(label: str, message: str) -> str:
    """A service's message as a sentence beside its field: "Target URL must start with…",
    "Enter a value"; a message starting with a value (a URL, a quoted name) is left as it is."""
    if _GOES_ON.match(message):
        return f"{label} {message}"
    if _STARTS_LOWER.match(message):
        return message[0].upper() + message[1:]
    return message


# How a sentence about a field names it, by the field's last dotted name ("This" for others),
# in every form.
LABELS = {
    "name": "The name",
    "description": "The description",
    "url": "The URL",
    "target_url": "The target URL",
    "headers": "Headers",
    "key": "The key",
    "value": "The value",
    "signature_scheme": "The signature",
    "model": "The model",
    "unit": "The unit",
    "trigger_events": "The trigger events",
    "channels": "The channels",
    "organization_events": "Organisation events",
    "email": "This",  # its messages say what is wrong with it: "This is not an e-mail address"
    "password": "The password",
    "role": "The role",
    "organization_id": "The organisation",
    "user_id": "The user",
    "channel_id": "The channel",
}


def labelled(name: str, message: str, labels: dict[str, str] = LABELS) -> str:
    """A message about the field `name`, as a sentence naming it."""
    return sentence(labels.get(name, "This"), message)


def validated(model: type[Input], data: dict[str, Any]) -> Input:
    """The service's input from what a form posted; Pydantic's refusal as InvalidInput, in
    labhooks' field names and plain words."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput(field_errors(exc)) from None


def field_errors(exc: ValidationError) -> list[FieldError]:
    """Pydantic's errors as labhooks' dotted field names and plain words."""
    found = []
    for error in exc.errors():
        location = [str(part) for part in error["loc"]]
        kind, limits = error["type"], error.get("ctx") or {}
        name = next((p for p in reversed(location) if not p.isdigit()), "")
        if kind in ("missing", "string_too_short") and limits.get("min_length", 1) == 1:
            message = "is required"
        elif kind in ("too_short", "string_pattern_mismatch") and name in PLAIN_WORDS:
            message = PLAIN_WORDS[name]
        elif kind == "string_too_short":
            message = f"must be at least {limits['min_length']} characters long"
        elif kind == "string_too_long":
            message = f"is longer than {limits['max_length']} characters"
        elif kind == "too_long":
            message = f"may hold at most {limits['max_length']}"
        elif kind == "enum":
            message = f"must be {limits['expected']}"
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
        found.append(FieldError(".".join(location) or "form", message))
    return found


@dataclass
class HeaderRow:
    key: str = ""
    value: str = ""
    stored: bool = False  # editing: a value is stored and kept unless a new one is typed


@dataclass
class Selected:
    channel_id: str
    event: str
    device: str = ""
    channel: str = ""


@dataclass(frozen=True)
class SchemeChoice:
    value: str
    label: str
    hint: str  # what the scheme means for receivers, in one line


# in the order the form offers them; the first is the API's default
SCHEMES = {
    choice.value: choice
    for choice in (
        SchemeChoice(
            SignatureScheme.HMAC,
            "HMAC-SHA256 (shared secret, v1)",
            "Receivers verify with a secret (whsec_…) you share with them; every Standard "
            "Webhooks library supports it.",
        ),
        SchemeChoice(
            SignatureScheme.ED25519,
            "Ed25519 (public key, v1a)",
            "Receivers verify with a public key (whpk_…) anyone may fetch; nothing secret to "
            "share, but their library must support v1a.",
        ),
    )
}


# The subscription form calls its channels what its page does.
_SUBSCRIPTION_LABELS = LABELS | {"channels": "The selection"}


@dataclass
class SubscriptionForm:
    target_url: str = ""
    description: str = ""
    headers: list[HeaderRow] = field(default_factory=list)
    selected: list[Selected] = field(default_factory=list)
    organization_events: list[str] = field(default_factory=list)  # administrators only
    ordered: bool = False
    signature_scheme: str = SignatureScheme.HMAC
    current_scheme: str | None = None  # editing: the stored scheme, which the form marks
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(
        cls, form: FormData, stored_keys: set[str], current_scheme: str | None = None
    ) -> SubscriptionForm:
        """`current_scheme`: editing, the stored one; a post without a scheme keeps it (a switch
        makes a new key, so it happens only when chosen)."""
        keys = [str(k) for k in form.getlist("header_key")]
        values = [str(v) for v in form.getlist("header_value")]
        rows = [
            HeaderRow(k.strip(), v, stored=k.strip().lower() in stored_keys)
            for k, v in zip(keys, values, strict=False)
            if k.strip() or v
        ]
        selected = []
        for raw in form.getlist("selected"):
            channel_id, _, event = str(raw).partition("|")
            if channel_id and event:
                selected.append(Selected(channel_id, event))
        return cls(
            target_url=str(form.get("target_url", "")),
            description=str(form.get("description", "")),
            headers=rows,
            selected=selected,
            organization_events=[str(name) for name in form.getlist("organization_events")],
            ordered=form.get("ordered") == "on",
            signature_scheme=str(
                form.get("signature_scheme") or current_scheme or SignatureScheme.HMAC
            ),
            current_scheme=current_scheme,
        )

    @classmethod
    def of(cls, subscription: WebhookSubscription) -> SubscriptionForm:
        return cls(
            target_url=subscription.target_url,
            description=subscription.description or "",
            headers=[HeaderRow(h.name, "", stored=True) for h in subscription.headers],
            selected=[
                Selected(s.channel_id, s.event_type, s.channel.device.name, s.channel.name)
                for s in subscription.selections
            ],
            organization_events=list(subscription.organization_events or []),
            ordered=subscription.ordered,
            signature_scheme=subscription.signature_scheme,
            current_scheme=subscription.signature_scheme,
        )

    def to_input(self, model: type[Input], active: bool | None = None) -> Input:
        """The service's input; empty header values mean 'keep the stored one' (or are missing)."""
        channels: dict[str, list[str]] = {}
        for item in self.selected:
            channels.setdefault(item.channel_id, []).append(item.event)
        data: dict[str, Any] = {
            "target_url": self.target_url,
            "description": self.description.strip() or None,
            "headers": [{"key": h.key, "value": h.value or None} for h in self.headers],
            "channels": [{"channel_id": c, "events": e} for c, e in channels.items()],
            "organization_events": self.organization_events,
            "ordered": self.ordered,
            # always sent: the service changes nothing when it is the stored scheme
            "signature_scheme": self.signature_scheme,
        }
        if active is not None:
            data["active"] = active
        try:
            return validated(model, data)
        except InvalidInput as exc:
            errors = exc.errors
        # Refused here, the service never sees the target URL: say what it would have said of
        # it too (an empty one, above all), so every field's error shows at once.
        if not any(e.field == "target_url" for e in errors):
            try:
                parse_field(self.target_url, "target_url")
            except InvalidInput as bad:
                errors = bad.errors + errors
        raise InvalidInput(errors)

    def show(self, errors: list[FieldError]) -> None:
        """Files each error, in words, under the form control it belongs to."""
        for error in errors:
            parts = error.field.split(".")
            # a header's error goes beside its row (headers.<i>.key / .value), others by field
            key = error.field if parts[0] == "headers" and len(parts) == 3 else parts[0]
            name = parts[-1] if key != parts[0] else key
            self.errors.setdefault(key, labelled(name, error.message, _SUBSCRIPTION_LABELS))

    async def name_selection(self, db: AsyncSession, owner: Actor) -> None:
        """Device and channel names for the selected pairs the owner may access (an id that is
        not plain text names nothing: it was refused beside the field already)."""
        ids = {s.channel_id for s in self.selected if not text_problem(s.channel_id)}
        if not ids:
            return
        found = await db.scalars(
            accessible_channels(owner)
            .where(Channel.id.in_(ids))
            .options(selectinload(Channel.device))
        )
        names = {c.id: (c.device.name, c.name) for c in found}
        for item in self.selected:
            item.device, item.channel = names.get(item.channel_id, ("?", item.channel_id))


def parse_moment(value: str, utc_offset: str) -> datetime:
    """A moment from a datetime-local field and the browser's offset from UTC in minutes (none:
    the moment is in UTC). A value that names its own offset keeps it."""
    try:
        picked = datetime.fromisoformat(value.strip())
        zone = timezone(timedelta(minutes=int(utc_offset))) if utc_offset.strip() else UTC
        return (picked if picked.tzinfo else picked.replace(tzinfo=zone)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput.single(
            "since", "Enter a date and time, for example 2026-03-01T14:30."
        ) from None
