"""Backfilled history in the infra processor: warm the baselines, page nobody for the past.

``spcwatch backfill`` publishes history as ``{"samples": [...], "history": true}`` batches
(:attr:`agents.core.events.MetricSample.history`). For those, :class:`HistoryGate`

- drops the samples a series has already seen (at or before its newest timestamp), so a
  backfill run twice, or over a range the worker already saw, changes nothing (the detector
  itself would take a repeat of its newest timestamp a second time, and count older ones as
  late);
- marks every alert the history causes ``history=True``: it is recorded in ``alerts`` but
  not notified (the Alertmanager forwarder skips it);
- writes, of the per-point rows, only the points that signalled (``SPCWATCH_INFRA_HISTORY_ROWS``);
- leaves absence unjudged while a resource's latest samples are history;
- remembers the firing alerts of history episodes still open, and sends each again as a
  live alert (``history=False``, same ``alert_id``) ahead of the resource's first live
  samples: an episode still open when the history ends fires normally then.

The open episodes are remembered in the worker's memory, not in the state: a worker
restarted between the end of a backfill and the first live samples re-sends none of them
(they stay recorded as history and resolve normally).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from agents.core.alerts import Alert
from agents.core.contract import Outputs


class HistoryGate:
    def __init__(self) -> None:
        self._open: dict[str, dict[str, Alert]] = {}  # resource -> alert_id -> its history firing alert
        self._in_history: set[str] = set()  # resources whose latest batch was history
        self.repeats = 0  # history samples dropped as already seen

    def unseen(self, monitor: Any, samples: Sequence[Any]) -> list[Any]:
        """The history samples newer than what their series has seen."""
        series = monitor.series
        out = []
        for sample in samples:
            known = series.get(sample.series_key)
            newest = None if known is None else known.last_ts
            if newest is None or sample.ts > newest:
                out.append(sample)
        self.repeats += len(samples) - len(out)
        return out

    def mark(self, out: Outputs, start: int, resource_id: str, history: bool) -> None:
        """Alerts ``out.alerts[start:]`` came from one batch of ``resource_id``: tag or release."""
        if history:
            self._in_history.add(resource_id)
            opened = self._open.setdefault(resource_id, {})
            for i in range(start, len(out.alerts)):
                alert = out.alerts[i] = replace(out.alerts[i], history=True)
                if alert.status == "firing":
                    opened[alert.alert_id] = alert
                else:
                    opened.pop(alert.alert_id, None)
            if not opened:
                del self._open[resource_id]
            return
        self._in_history.discard(resource_id)
        still_open = self._open.pop(resource_id, None)
        if still_open:
            out.alerts[start:start] = [replace(alert, history=False) for alert in still_open.values()]

    @staticmethod
    def trim(out: Outputs, before: dict[str, int]) -> None:
        """Keep, of a history batch's per-point rows, only the points that signalled: 30 days of
        minute history would write two rows per sample, and the database would set the pace of
        the warm start (``SPCWATCH_INFRA_HISTORY_ROWS=all`` keeps them; the source still has them)."""
        rollups = out.rows.get("infra_metric_rollups")
        if rollups:
            del rollups[before.get("infra_metric_rollups", 0):]
        scores = out.rows.get("infra_anomaly_scores")
        if scores:
            start = before.get("infra_anomaly_scores", 0)
            scores[start:] = [row for row in scores[start:] if row["rules"] != "[]"]

    def in_history(self, resource_id: str) -> bool:
        """Its latest samples were history: absence is not judged until live samples come (a
        backfill publishes resource after resource, so a partition's event-time clock runs ahead
        of the resources whose turn has not come yet)."""
        return resource_id in self._in_history
