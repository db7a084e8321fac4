"""The custom-header rules (SPEC §2.3), as pure functions: examples, then properties."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from labhooks.domain.headers import (
    MAX_HEADERS,
    RESERVED_HEADER_NAMES,
    header_name_problem,
    header_value_problem,
    validate_headers,
)

TOKEN_CHARS = "!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits


def test_a_valid_list_has_no_errors() -> None:
    assert validate_headers([("Authorization", "Bearer abc"), ("X-Api-Key", "k\t1")]) == []


@pytest.mark.parametrize("name", sorted(RESERVED_HEADER_NAMES))
def test_reserved_names_are_refused_in_any_case(name: str) -> None:
    assert "set by labhooks" in (header_name_problem(name.upper()) or "")


@pytest.mark.parametrize(
    ("value", "what"),
    [("a\rb", "carriage return"), ("a\nb", "line feed"), ("a\x00b", "NUL"), ("a\x1bb", "U+001B")],
)
def test_control_characters_in_values_are_named(value: str, what: str) -> None:
    assert what in (header_value_problem(value) or "")


def test_duplicates_count_and_size_are_limited() -> None:
    errors = validate_headers([("X-A", "1"), ("x-a", "2")])
    assert [e.field for e in errors] == ["headers.1.key"]
    assert any(e.field == "headers" for e in validate_headers([("X-A", "1")] * (MAX_HEADERS + 1)))
    big = [(f"X-{i}", "v" * 2000) for i in range(9)]
    assert [e.field for e in validate_headers(big)] == ["headers"]


@given(st.text(alphabet=TOKEN_CHARS, min_size=1, max_size=40))
def test_every_token_that_is_not_reserved_is_a_valid_name(name: str) -> None:
    assert (header_name_problem(name) is None) == (name.lower() not in RESERVED_HEADER_NAMES)


@given(st.text(min_size=1, max_size=40))
def test_a_name_is_valid_only_if_it_is_a_token(name: str) -> None:
    if header_name_problem(name) is None:
        assert set(name) <= set(TOKEN_CHARS)


@given(st.text(min_size=1, max_size=200))
def test_a_value_is_valid_exactly_when_it_has_no_control_character_but_tab(value: str) -> None:
    has_control = any((ord(c) < 32 and c != "\t") or ord(c) == 127 for c in value)
    assert (header_value_problem(value) is None) == (not has_control)


@given(st.lists(st.tuples(st.text(max_size=20), st.text(max_size=50)), max_size=40))
def test_errors_name_the_offending_index(headers: list[tuple[str, str]]) -> None:
    for error in validate_headers(headers):
        if error.field != "headers":
            _, index, part = error.field.split(".")
            name, value = headers[int(index)]
            problem = header_name_problem(name) if part == "key" else header_value_problem(value)
            assert problem is not None or part == "key"  # a duplicate name is valid on its own
