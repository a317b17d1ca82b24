"""What a fault test measured, for ``make chaos``'s table (bench/RELIABILITY.md).

A fault test asserts its outcome (0 missing, 0 duplicated) either way; with
``SPCWATCH_FAULT_REPORT`` set to a file, it also appends one JSON line of figures there.
``SPCWATCH_CHAOS=1`` asks the tests for their longer streams (``make chaos``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

CHAOS = os.environ.get("SPCWATCH_CHAOS") == "1"


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
