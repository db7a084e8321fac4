"""Identifiers: a type prefix (`sub_`, `dev_`…) and a time-ordered UUIDv7.

The prefix tells a reader what an id names; the time order lets cursor pagination walk a table
by primary key alone.
"""

from __future__ import annotations

import uuid_utils


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid_utils.uuid7().hex}"
