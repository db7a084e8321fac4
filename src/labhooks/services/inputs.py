"""`Input`, the base of every request body the services take, whichever route or form it comes
from: each text field is plain text (domain.text) or the field is refused by name. Free-form
JSON (an event's `data`) is the catalogue's to check."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, StringConstraints, field_validator
from pydantic_core import PydanticCustomError

from labhooks.domain.text import text_problem

# A name people read (an organisation, a user, a device, a channel): surrounding blanks dropped,
# so a name of blanks alone is missing, not empty.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def _not_true_or_false(value: Any) -> Any:
    if isinstance(value, bool):  # JSON's true is not 1 to a person writing it
        raise PydanticCustomError("number_type", "must be a number, not true or false")
    return value


# A number a person gives (a limit, a heartbeat): JSON numbers and numeric text, never true/false.
Number = Annotated[float, BeforeValidator(_not_true_or_false)]


def problem_in(value: Any) -> str | None:
    """Why a field's value is not plain text: a string, or a list of strings, checked."""
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if isinstance(item, str) and (problem := text_problem(item)):
                return f"item {index} {problem}"
    return None


class Input(BaseModel):
    @field_validator("*", mode="after")
    @classmethod
    def _plain_text(cls, value: Any) -> Any:
        if problem := problem_in(value):
            raise PydanticCustomError("plain_text", problem)
        return value
