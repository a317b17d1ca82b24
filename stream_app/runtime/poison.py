"""Crashes per input offset, kept across restarts, so one message cannot stop a partition for good.

A processor that raises on a message stops the worker (stream_app/runtime/app.py, ``Runtime.agent``);
restarted, the worker reads the same message from the committed offset and stops again. The
offset's crash count lives in a small JSON file in ``SPCWATCH_DATA_DIR`` (written before the
process stops); once a message has stopped the worker ``SPCWATCH_POISON_MAX_RESTARTS`` times it
is dead-lettered (``poison_message``) and skipped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

MAX_ENTRIES = 1000
"""Offsets remembered per worker; the oldest are forgotten first (a poison message is met again soon)."""


class CrashLedger:
    def __init__(self, path: Path, max_restarts: int) -> None:
        self.path = path
        self.max_restarts = max_restarts
        self.entries: dict[str, dict[str, Any]] = {}  # "topic|partition|offset" -> {"crashes", "error"}
        try:
            self.entries = orjson.loads(path.read_bytes())
        except FileNotFoundError:
            pass
        except (OSError, orjson.JSONDecodeError) as exc:
            log.warning("poison: cannot read %s (%s); starting with no crash counts", path, exc)

    @staticmethod
    def _key(message: Any) -> str:
        return f"{message.topic}|{message.partition}|{message.offset}"

    def exhausted(self, message: Any) -> dict[str, Any] | None:
        """The entry of a message that has stopped the worker ``max_restarts`` times, else None."""
        if not self.entries:  # the hot path: nothing ever crashed
            return None
        entry = self.entries.get(self._key(message))
        return entry if entry is not None and entry["crashes"] >= self.max_restarts else None

    def record(self, message: Any, exc: BaseException) -> int:
        """Count one more crash on ``message``, on disk before the worker stops; returns the count."""
        key = self._key(message)
        entry = self.entries.pop(key, {"crashes": 0})
        entry = {"crashes": entry["crashes"] + 1, "error": f"{exc.__class__.__name__}: {exc}"[:500]}
        self.entries[key] = entry  # re-inserted last: dict order is age order
        while len(self.entries) > MAX_ENTRIES:
            del self.entries[next(iter(self.entries))]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_suffix(".tmp")
            partial.write_bytes(orjson.dumps(self.entries))
            os.replace(partial, self.path)
        except OSError as exc_write:
            log.error("poison: cannot write %s (%s): crashes on this offset are not counted", self.path, exc_write)
        return entry["crashes"]
