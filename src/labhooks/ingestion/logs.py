"""How the bridges write their logs: one line per thing that happened, greppable by its words,
its details as key=value pairs."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any


def line(what: str, **fields: Any) -> str:
    """A structured log line: `what key=value …`, values with spaces quoted as JSON."""
    parts = [what]
    for key, value in fields.items():
        shown = str(value)
        if not shown or re.search(r'[\s="]', shown):
            shown = json.dumps(shown, ensure_ascii=False)
        parts.append(f"{key}={shown}")
    return " ".join(parts)


def counts_line(counts: Counter[str]) -> str:
    """A bridge's counts, for the line it logs when it stops."""
    return ", ".join(f"{name} {number}" for name, number in sorted(counts.items())) or "nothing yet"
