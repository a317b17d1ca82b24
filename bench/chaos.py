"""``make chaos``: the fault suite (tests/faults) with its longer streams; writes bench/RELIABILITY.md.

Each fault test runs against a control (an uninterrupted run or the offline replay of the
same input) and asserts 0 missing and 0 duplicated outputs; with ``SPCWATCH_FAULT_REPORT``
set it also appends its figures, which this turns into the table. A test that fails is a
row marked FAILED: the table never hides one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.__main__ import machine

ROOT = Path(__file__).resolve().parent.parent
REPORT = Path(__file__).resolve().parent / "RELIABILITY.md"
COLUMNS = [("rows_missing", "rows missing"), ("rows_extra", "rows extra"), ("rows_different", "rows different"),
           ("alerts_missing", "alerts missing"), ("alerts_duplicated", "alerts duplicated"),
           ("restarts", "worker restarts"), ("recover_seconds", "time to recover (s)")]
HAND_MARKER = "<!-- measured by hand below: make chaos keeps what follows this line -->"
KNOWN = {"test", "recorded_at", "fault", "use_case", *(key for key, _ in COLUMNS)}


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


HEADER = ["| fault | use case | " + " | ".join(title for _, title in COLUMNS) + " | other figures |",
          "| --- | --- | " + " | ".join("---:" for _ in COLUMNS) + " | --- |"]


def _line(row: dict[str, Any]) -> str:
    other = ", ".join(f"{key.replace('_', ' ')} {_cell(value)}" for key, value in row.items() if key not in KNOWN)
    return (f"| {row.get('fault', row['test'])} | {row.get('use_case', '')} | "
            + " | ".join(_cell(row.get(key)) for key, _ in COLUMNS) + f" | {other} |")


def table(rows: list[dict[str, Any]]) -> str:
    return "\n".join([*HEADER, *map(_line, rows)])


def _table_lines() -> list[str]:
    """The rows of the table in bench/RELIABILITY.md as it stands (none when there is none)."""
    if not REPORT.exists():
        return []
    text = REPORT.read_text().partition(HAND_MARKER)[0]
    return [line for line in text.splitlines() if line.startswith("| ") and line not in HEADER]


def run(pytest_args: list[str] | None = None) -> str:
    """The fault suite, or with ``pytest_args`` (``-k broker``) a part of it whose rows replace theirs."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "faults.jsonl"
        junit = Path(tmp) / "junit.xml"
        env = {**os.environ, "SPCWATCH_CHAOS": "1", "SPCWATCH_FAULT_REPORT": str(report)}
        started = datetime.now(UTC)
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/faults", "-m", "faults", "-p", "no:cacheprovider",
             f"--junitxml={junit}", "-q", *(pytest_args or [])], cwd=ROOT, env=env)
        rows = [orjson.loads(line) for line in report.read_bytes().splitlines()] if report.exists() else []
        outcomes = _outcomes(junit)
    recorded = {row["test"].rsplit("::", 1)[-1].split("[")[0] for row in rows}
    for name, outcome in outcomes.items():
        if outcome != "passed":
            rows.append({"test": name, "fault": f"{outcome.upper()}: {name}"})
        elif name.rsplit("::", 1)[-1].split("[")[0] not in recorded:  # its assertions held; it records no figures
            rows.append({"test": name, "fault": f"passed: {name.rsplit('::', 1)[-1]}"})
    lines = [_line(row) for row in rows]
    written = f"Written by `make chaos` on {started:%Y-%m-%d %H:%M} UTC (pytest exit {result.returncode})."
    if pytest_args:  # a part of the suite: the other faults' rows stay as the last run measured them
        faults = {line.split(" | ")[0] for line in lines}
        names = {name.rsplit("::", 1)[-1] for name in outcomes}  # a FAILED or passed row of a test run again
        lines = [line for line in _table_lines() if line.split(" | ")[0] not in faults
                 and not any(line.split(" | ")[0].endswith(name) for name in names)] + lines
        written = (f"Rows of `python -m bench.chaos {' '.join(pytest_args)}` measured on {started:%Y-%m-%d %H:%M} "
                   f"UTC (pytest exit {result.returncode}); the others by the last `make chaos`.")
    section = (f"# spcwatch reliability under faults\n\n{written}\n\nMachine: {machine()}. "
               "Local Kafka and MariaDB from `scripts/services.sh` (faults that kill or freeze a service start "
               "a private instance).\n\n"
               "Each fault against a control run on the same input (an uninterrupted run or the offline "
               "replay); `make test` runs the same tests on shorter streams.\n\n" + "\n".join([*HEADER, *lines]) + "\n")
    kept = REPORT.read_text().partition(HAND_MARKER) if REPORT.exists() else ("", "", "")
    REPORT.write_text(section + (f"\n{HAND_MARKER}{kept[2]}" if kept[1] else ""))
    print(f"chaos: wrote {REPORT}", file=sys.stderr)
    return section


def _outcomes(junit: Path) -> dict[str, str]:
    """Each test's outcome (passed, failed, error, skipped) from pytest's JUnit XML."""
    if not junit.exists():
        return {}
    import xml.etree.ElementTree as ET

    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        outcome = next((tag for tag in ("failure", "error", "skipped") if case.find(tag) is not None), "passed")
        skipped = case.find("skipped")
        if skipped is not None and skipped.get("type") == "pytest.xfail":  # a known defect, its figures recorded
            outcome = "xfailed (known defect)"
        outcomes[f"{case.get('classname')}::{case.get('name')}"] = outcome.replace("failure", "failed")
    return outcomes


if __name__ == "__main__":
    print(run(sys.argv[1:]))
