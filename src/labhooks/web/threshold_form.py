"""The "Add threshold" form on a device's page: what the browser posts, turned into the service's
input with every field's error at once, and the words a threshold and an incident are shown in."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from starlette.datastructures import FormData

from labhooks.domain.errors import FieldError, InvalidInput
from labhooks.domain.thresholds import LEVELS, Rule
from labhooks.services.lab_rules import ThresholdIn, channel_problem, rule_of
from labhooks.storage.models import Channel, Incident, Threshold
from labhooks.web.forms import LABELS, labelled, validated

# in the order the form offers them; the first is proposed
COMPARATORS = {
    ">": "> above the value",
    ">=": ">= at or above the value",
    "<": "< below the value",
    "<=": "<= at or below the value",
    "outside": "outside a range (below the value or above the upper end)",
}
NUMBERS = ("value", "upper", "hysteresis", "hold_s")
DEFAULTS = {"upper": None, "hysteresis": 0.0, "hold_s": 0.0}  # what an empty field means
GONE = "This channel no longer exists (it was removed meanwhile): reload the page."
_LABELS = LABELS | {
    "level": "The level",
    "comparator": "The comparison",
    "upper": "The upper end",
    "hysteresis": "The hysteresis",
    "hold_s": "The hold time",
}


def rule_in_words(threshold: Threshold) -> str:
    return rule_of(threshold).in_words()


def limit_in_words(incident: Incident) -> str:
    """An incident keeps its threshold's limit as it was (the threshold may be gone)."""
    return Rule(incident.comparator, incident.threshold_value, incident.upper).describe()  # type: ignore[arg-type]


def judged(channels: Sequence[Channel]) -> list[Channel]:
    """The channels a threshold may be set on, as the service decides."""
    return [channel for channel in channels if channel_problem(channel) is None]


@dataclass
class ThresholdForm:
    """The fields as typed (kept as they were when refused)."""

    channel_id: str = ""
    level: str = LEVELS[0]
    comparator: str = next(iter(COMPARATORS))
    value: str = ""
    upper: str = ""
    hysteresis: str = "0"
    hold_s: str = "0"
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, form: FormData) -> ThresholdForm:
        def text(name: str) -> str:
            return str(form.get(name, ""))

        return cls(
            channel_id=text("channel_id").strip(),
            level=text("level"),
            comparator=text("comparator"),
            value=text("value"),
            upper=text("upper"),
            hysteresis=text("hysteresis"),
            hold_s=text("hold_s"),
        )

    def input(self, channels: Sequence[Channel]) -> ThresholdIn:
        """The service's input; InvalidInput names every field that is wrong, the device's
        `channels` checked too. Refused before the service sees it, the rule's own problems
        (a hysteresis below zero) are added, so that every field's error shows at once."""
        errors: list[FieldError] = []
        numbers: dict[str, float | None] = {}
        for name in NUMBERS:
            typed = getattr(self, name).strip()
            if not typed:
                if name not in DEFAULTS:
                    errors.append(FieldError(name, "is required"))
                else:
                    numbers[name] = DEFAULTS[name]
                continue
            try:
                numbers[name] = float(typed)
            except ValueError:
                errors.append(FieldError(name, "must be a number, such as 8.5"))
        errors += self._channel_errors(channels)
        refused = {error.field for error in errors}
        data = {"level": self.level, "comparator": self.comparator, **numbers}
        try:
            found = validated(ThresholdIn, data)
        except InvalidInput as exc:  # a level or comparison the form does not offer
            errors += [e for e in exc.errors if e.field not in refused]
        else:
            if not errors:
                return found
        # a number not understood is NaN here: the rule then judges nothing that depends on it
        rule = Rule(
            self.comparator,  # type: ignore[arg-type]  # one it does not know, it names
            *(numbers.get(name, math.nan) for name in NUMBERS),  # type: ignore[arg-type]
        )
        refused = {error.field for error in errors}
        errors += [FieldError(n, m) for n, m in rule.problems().items() if n not in refused]
        raise InvalidInput(errors)

    def _channel_errors(self, channels: Sequence[Channel]) -> list[FieldError]:
        if not self.channel_id:
            return [FieldError("channel_id", "is required")]
        chosen = next((c for c in channels if c.id == self.channel_id), None)
        if chosen is None:
            return [FieldError("channel_id", GONE)]
        problem = channel_problem(chosen)
        return [FieldError("channel_id", problem)] if problem else []

    def show(self, errors: list[FieldError]) -> None:
        """Each error, in words, beside its field; one about no field above the form."""
        fields = {"channel_id", "level", "comparator", *NUMBERS}
        for error in errors:
            name = error.field.split(".")[0]
            key = name if name in fields else "form"
            message = error.message if key == "form" else labelled(name, error.message, _LABELS)
            self.errors.setdefault(key, message)
