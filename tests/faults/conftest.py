"""What a fault test measured, for ``make chaos``'s table (bench/RELIABILITY.md).

A fault test asserts its outcome (0 missing, 0 duplicated) either way; with
``SPCWATCH_FAULT_REPORT`` set to a file, it also appends one JSON line of figures there.
``SPCWATCH_CHAOS=1`` asks the tests for their longer streams (``make chaos``).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

CHAOS = os.environ.get("SPCWATCH_CHAOS") == "1"
ROOT = Path(__file__).resolve().parent.parent.parent


def services(env: dict[str, str], *args: str) -> None:
    """``scripts/services.sh ARGS`` for a PRIVATE instance (``env`` names its run dir and ports)."""
    result = subprocess.run([str(ROOT / "scripts" / "services.sh"), *args], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        pytest.fail(f"services.sh {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}", pytrace=False)


def scaled(short: int, long: int) -> int:
    """The suite's size of a stream, or ``make chaos``'s."""
    return long if CHAOS else short


@pytest.fixture
def fault_report(request: pytest.FixtureRequest) -> Callable[..., None]:
    """``fault_report(fault=..., use_case=..., rows_missing=0, ...)``: one row of the reliability table."""
    target = os.environ.get("SPCWATCH_FAULT_REPORT")

    def record(**figures: Any) -> None:
        if not target:
            return
        row = {"test": request.node.nodeid, "recorded_at": time.time(), **figures}
        with Path(target).open("ab") as out:
            out.write(orjson.dumps(row) + b"\n")

    return record
