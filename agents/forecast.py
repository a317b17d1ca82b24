"""UC-SC-01 forecast accuracy: forecasts and actuals in, accuracy rows and alerts out.

The logic is in :mod:`models.forecast` (pairing, day close, rolling windows,
rules, drift); this module maps ``SPCWATCH_FORECAST_*`` to its config and its
results to contract alerts and table rows. It is the
:class:`~agents.core.contract.Processor` both the worker and
``spcwatch replay forecast`` run. State key: ``store_id`` (both topics' key).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from agents.core.alerts import Alert, alert_id
from agents.core.contract import Outputs, StateStore, WorkerMetrics, row_datetime
from agents.core.events import Demand, Forecast
from agents.core.settings import Settings, load_env
from models import StateError
from models.forecast import (
    AlertResult,
    CloseResult,
    ForecastConfig,
    ItemResult,
    Step,
    StoreForecast,
    SummaryResult,
    advance_all,
)

USE_CASE = "forecast"
_P = "SPCWATCH_FORECAST_"
_EPOCH = date(1970, 1, 1).toordinal()  # day_num = days since 1970-01-01


@dataclass(frozen=True, slots=True)
class ForecastSettings(ForecastConfig):
    """``SPCWATCH_FORECAST_*``: the model's thresholds and windows, and the worker's own options."""

    sku_summary_rows: bool = True
    """Write per-(store, SKU) rolling rows (176 per store-day at 88 SKUs); off: store rows only, the
    per-(store, SKU) figures stay available from the forecast_store_sku_rolling view."""
    runbook_url: str = ""



def _day(ordinal: int) -> date:
    return date.fromordinal(ordinal)


def item_row(r: ItemResult) -> dict[str, Any]:
    return {
        "store_id": r.store_id, "sku": r.sku, "business_day": _day(r.day), "day_num": r.day - _EPOCH,
        "status": r.status, "has_forecast": int(r.forecast_qty is not None),
        "forecast_qty": r.forecast_qty, "actual_qty": r.actual_qty,
        "forecast_generated_at": row_datetime(r.generated_at), "error": r.error, "abs_error": r.abs_error,
        "ape": r.ape, "within_tolerance": None if r.within_tolerance is None else int(r.within_tolerance),
        "revisions": r.revisions, "late_revisions": r.late_revisions, "recorded_at": row_datetime(r.recorded_at),
    }


def summary_row(r: SummaryResult) -> dict[str, Any]:
    s = r.stats
    return {
        "store_id": r.store_id, "sku": r.sku, "business_day": _day(r.day), "window_days": r.window_days,
        "scope": "store_sku" if r.sku else "store",
        "n_expected": s.n_expected, "n_forecast": s.n_forecast, "n_paired": s.n_paired,
        "n_missing_actual": s.n_missing_actual, "n_missing_forecast": s.n_missing_forecast,
        "n_zero_actual": s.n_zero_actual, "n_ape": s.n_ape,
        "mape": s.mape, "wmape": s.wmape, "bias": s.bias, "accuracy_rate": s.accuracy_rate,
        "coverage": s.coverage, "tracking_signal": s.tracking_signal,
        "sum_abs_error": s.sum_abs_error, "sum_abs_actual": s.sum_abs_actual,
        "sum_error": s.sum_error, "sum_actual": s.sum_actual,
    }


def close_row(r: CloseResult) -> dict[str, Any]:
    s = r.stats
    return {
        "store_id": r.store_id, "business_day": _day(r.day), "deadline": row_datetime(r.deadline),
        "closed_by": r.closed_by,
        "n_expected": s.n_expected, "n_forecast": s.n_forecast, "n_paired": s.n_paired,
        "n_missing_forecast": s.n_missing_forecast, "n_missing_actual": s.n_missing_actual,
        "n_zero_actual": s.n_zero_actual, "revisions": r.revisions, "late_revisions": r.late_revisions,
        "late_events": r.late_events, "mape": s.mape, "wmape": r.wmape,
        "alerts_fired": r.alerts_fired, "alerts_resolved": r.alerts_resolved,
    }


class ForecastProcessor:
    """State per ``store_id``: a :class:`~models.forecast.StoreForecast`."""

    use_case = USE_CASE
    topics = ("forecasts", "demand")

    def __init__(self, settings: ForecastSettings | None = None) -> None:
        self.settings = settings or ForecastSettings()
        self.config: ForecastConfig = self.settings  # what the model reads
        self._metrics: dict[str, Any] | None = None

    @classmethod
    def from_settings(cls, _settings: Settings) -> ForecastProcessor:
        return cls(load_env(ForecastSettings, _P))

    # -- state at the table boundary (stream_app.runtime.runner.CachedStore) ----------------
    def load(self, state: dict) -> StoreForecast | None:
        try:
            return StoreForecast.from_state(state, self.config)
        except (StateError, KeyError, TypeError, ValueError):
            return None  # unknown version: the store starts afresh

    def dump(self, st: StoreForecast) -> dict:
        return st.to_state()

    def bind_metrics(self, metrics: WorkerMetrics) -> None:
        from prometheus_client import Counter

        registry = metrics.registry
        self._metrics = {
            "late": Counter("spcwatch_forecast_late_events", "Forecasts/actuals after their day closed, not applied",
                            ["topic"], registry=registry),
            "closed": Counter("spcwatch_forecast_days_closed", "Store business days closed",
                              ["closed_by"], registry=registry),
        }

    def key(self, topic: str, event: Forecast | Demand) -> str:
        return event.store_id

    def _state(self, store: StateStore, key: str) -> StoreForecast:
        st = store.get(key)
        if isinstance(st, dict):  # a JSON state from a plain dict store
            st = self.load(st)
        return st if st is not None else StoreForecast(key)

    # -- the processor ---------------------------------------------------------------
    def process(self, store: StateStore, topic: str, events: Sequence[Forecast | Demand]) -> Outputs:
        step = Step()
        cfg = self.config
        states: dict[str, StoreForecast] = {}
        for ev in events:
            st = states.get(ev.store_id) or states.setdefault(ev.store_id, self._state(store, ev.store_id))
            if topic == "forecasts":
                st.add_forecast(ev.sku, ev.date, ev.forecast_qty, ev.generated_at, ev.ts, cfg, step)  # type: ignore[union-attr]
            else:
                st.add_actual(ev.sku, ev.date, ev.actual_qty, ev.ts, cfg, step)  # type: ignore[union-attr]
        for key, st in states.items():
            store[key] = st
        if self._metrics and step.late_events:
            self._metrics["late"].labels(topic).inc(step.late_events)
        return self._outputs(step)

    def tick(self, store: StateStore, now: float) -> Outputs:
        """Stalled feeds only; ``now`` (the maximum over both topics) is not used, because a
        topic consumed ahead of the other must not close a day early (see models.forecast)."""
        step, changed = advance_all([self._state(store, key) for key in list(store.keys())], self.config)
        for st in changed:
            store[st.store_id] = st
        return self._outputs(step)

    # -- translation --------------------------------------------------------------------
    def _outputs(self, step: Step) -> Outputs:
        out = Outputs()
        if not step:
            return out
        out.add_rows("forecast_accuracy_daily", [item_row(r) for r in step.items])
        sku_rows = self.settings.sku_summary_rows
        out.add_rows("forecast_accuracy_summary", [summary_row(r) for r in step.summaries if sku_rows or not r.sku])
        out.add_rows("forecast_run_log", [close_row(r) for r in step.closes])
        out.add_rows("forecast_late_events", [
            {"store_id": r.store_id, "business_day": _day(r.day), "late_events": r.late_events} for r in step.late])
        out.alerts.extend(self._alert(a) for a in step.alerts)
        if self._metrics:
            for c in step.closes:
                self._metrics["closed"].labels(c.closed_by).inc()
        return out

    def _alert(self, a: AlertResult) -> Alert:
        entity = {"store_id": a.store_id} if a.sku is None else {"store_id": a.store_id, "sku": a.sku}
        aid = a.episode_id or alert_id(USE_CASE, a.rule, a.store_id, a.sku or "", a.starts_at)
        alert = Alert(alert_id=aid, status="firing", severity=a.severity, use_case=USE_CASE, rule=a.rule,
                      entity=entity, starts_at=a.starts_at, summary=a.summary, rules=a.rules, value=a.value,
                      center=a.center, lower=a.lower, upper=a.upper, zscore=a.zscore,
                      runbook_url=self.settings.runbook_url or None, event_ts=a.event_ts)
        if a.kind == "resolved":
            assert a.ends_at is not None
            alert = alert.resolved(a.ends_at)
        return alert
