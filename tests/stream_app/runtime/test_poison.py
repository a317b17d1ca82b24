"""Crash counts per offset survive a restart (a new ledger on the same file)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from stream_app.runtime.poison import MAX_ENTRIES, CrashLedger


def message(offset: int) -> SimpleNamespace:
    return SimpleNamespace(topic="t.metrics.samples", partition=1, offset=offset)


def test_a_message_is_exhausted_after_max_restarts_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "data" / "poison.json"
    assert CrashLedger(path, 2).exhausted(message(7)) is None
    assert CrashLedger(path, 2).record(message(7), RuntimeError("boom")) == 1
    assert CrashLedger(path, 2).exhausted(message(7)) is None
    assert CrashLedger(path, 2).record(message(7), RuntimeError("boom")) == 2
    entry = CrashLedger(path, 2).exhausted(message(7))
    assert entry == {"crashes": 2, "error": "RuntimeError: boom"}
    assert CrashLedger(path, 2).exhausted(message(8)) is None


def test_the_ledger_keeps_the_newest_entries_and_survives_a_broken_file(tmp_path: Path) -> None:
    path = tmp_path / "poison.json"
    ledger = CrashLedger(path, 1)
    for offset in range(MAX_ENTRIES + 5):
        ledger.record(message(offset), ValueError("x"))
    again = CrashLedger(path, 1)
    assert len(again.entries) == MAX_ENTRIES
    assert again.exhausted(message(0)) is None and again.exhausted(message(MAX_ENTRIES + 4)) is not None
    path.write_text("{not json")
    assert CrashLedger(path, 1).entries == {}
