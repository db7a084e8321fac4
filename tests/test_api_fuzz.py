"""Every operation of the served OpenAPI document, fed generated input by schemathesis: no
input may make the API answer a server error, and every status must be one the document lists.

Drives schemathesis' command line (its pytest plugin does not support pytest 9).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.api import Lab
from tests.live import LiveServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_no_generated_input_makes_the_api_fail(
    server: LiveServer, lab: Lab, tmp_path: Path
) -> None:
    lab.register("http://127.0.0.1:9/")  # the server refuses public targets in tests anyway
    lab.add_device()
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            "run",
            f"{server.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {lab.admin.token}",
            "--checks",
            "not_a_server_error,status_code_conformance",
            "--max-examples",
            "10",
            "--seed",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    summary = result.stdout[-3000:]
    assert result.returncode == 0, summary
    counted = re.search(r"(\d+) generated, (\d+) passed", summary)
    assert counted and counted.group(1) == counted.group(2) and int(counted.group(1)) > 500
