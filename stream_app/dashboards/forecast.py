"""UC-SC-01 (the seed's ``uc-sc-01-forecast-accuracy``): accuracy per store and SKU, bias, drift."""

from __future__ import annotations

from grafana_foundation_sdk.builders import table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from stream_app.dashboards.common import (
    SQLQuery,
    control_band,
    custom_variable,
    new_dashboard,
    panel_grid,
    runbook_link,
    sql_variable,
)

UID = "uc-sc-01-forecast-accuracy"

STORE_ACCURACY = """
SELECT TIMESTAMP(business_day) AS time, mape, wmape, bias, accuracy_rate, coverage
FROM forecast_accuracy_summary
WHERE store_id = ${store:sqlstring} AND sku = '' AND window_days = ${window:raw} AND $__timeFilter(business_day)
ORDER BY business_day
"""
SKU_ACCURACY = """
SELECT TIMESTAMP(business_day) AS time, mape, wmape, bias, accuracy_rate, coverage
FROM forecast_accuracy_summary
WHERE store_id = ${store:sqlstring} AND sku = ${sku:sqlstring} AND window_days = ${window:raw}
  AND $__timeFilter(business_day)
ORDER BY business_day
"""
TRACKING_SIGNAL = """
SELECT TIMESTAMP(business_day) AS time, tracking_signal, 4 AS upper_limit, -4 AS lower_limit
FROM forecast_accuracy_summary
WHERE store_id = ${store:sqlstring} AND sku = ${sku:sqlstring} AND window_days = ${window:raw}
  AND $__timeFilter(business_day)
ORDER BY business_day
"""
WORST_SKUS = """
SELECT s.sku, s.mape, s.wmape, s.bias, s.tracking_signal, s.accuracy_rate, s.coverage, s.n_paired
FROM forecast_accuracy_summary s
WHERE s.store_id = ${store:sqlstring} AND s.scope = 'store_sku' AND s.window_days = ${window:raw}
  AND s.business_day = (SELECT MAX(m.business_day) FROM forecast_accuracy_summary m
                        WHERE m.store_id = ${store:sqlstring} AND m.window_days = ${window:raw}
                          AND $__timeFilter(m.business_day))
ORDER BY s.wmape DESC LIMIT 20
"""
STORES_WMAPE = """
SELECT TIMESTAMP(business_day) AS time, store_id AS metric, wmape AS value
FROM forecast_accuracy_summary
WHERE sku = '' AND window_days = ${window:raw} AND $__timeFilter(business_day)
ORDER BY business_day
"""
DRIFT = """
SELECT TIMESTAMP(business_day) AS time, wmape AS daily_wmape, mape AS daily_mape
FROM forecast_run_log WHERE store_id = ${store:sqlstring} AND $__timeFilter(business_day)
ORDER BY business_day
"""
FORECAST_ALERTS = """
SELECT starts_at, severity, rule, status, JSON_UNQUOTE(JSON_EXTRACT(entity, '$.store_id')) AS store_id,
       JSON_UNQUOTE(JSON_EXTRACT(entity, '$.sku')) AS sku, value, summary, runbook_url
FROM alerts WHERE use_case = 'forecast' AND $__timeFilter(starts_at)
ORDER BY starts_at DESC LIMIT 100
"""


def dashboard() -> Dashboard:
    board = new_dashboard(UID, "UC-SC-01 demand-forecast accuracy",
                          "Rolling MAPE, WMAPE, bias, accuracy and coverage per store and SKU, the tracking "
                          "signal against its limits, the worst SKUs and each store's daily drift series.",
                          tags=["forecast", "uc-sc-01"], time_from="now-60d", use_cases=("forecast",))
    board = board.with_variable(sql_variable(
        "store", "Store", "SELECT DISTINCT store_id FROM forecast_accuracy_summary ORDER BY 1"))
    board = board.with_variable(sql_variable(
        "sku", "SKU",
        "SELECT DISTINCT sku FROM forecast_accuracy_daily WHERE store_id = ${store:sqlstring} ORDER BY 1"))
    board = board.with_variable(custom_variable("window", "Window (days)", ["28", "7"]))
    board = board.with_row(Row("Store $store, ${window}-day window"))
    board = board.with_panel(
        timeseries.Panel().title("$store: MAPE, WMAPE, bias, accuracy rate, coverage").unit("percentunit")
        .grid_pos(panel_grid(0, 1, 12, 9)).with_target(SQLQuery(STORE_ACCURACY))
        .links([runbook_link("forecast", "MAPE_WARNING"), runbook_link("forecast", "COVERAGE")]))
    board = board.with_panel(
        timeseries.Panel().title("WMAPE by store").unit("percentunit").grid_pos(panel_grid(12, 1, 12, 9))
        .with_target(SQLQuery(STORES_WMAPE)))
    board = board.with_row(Row("SKU $sku at $store"))
    board = board.with_panel(
        timeseries.Panel().title("$sku at $store: accuracy").unit("percentunit").grid_pos(panel_grid(0, 11, 12, 9))
        .with_target(SQLQuery(SKU_ACCURACY)))
    board = board.with_panel(control_band(
        timeseries.Panel().title("$sku at $store: tracking signal and its limits").grid_pos(panel_grid(12, 11, 12, 9))
        .with_target(SQLQuery(TRACKING_SIGNAL)).links([runbook_link("forecast", "TRACKING_SIGNAL")]),
        lower="lower_limit", upper="upper_limit"))
    board = board.with_row(Row("Worst SKUs, drift and alerts"))
    board = board.with_panel(
        table.Panel().title("Worst SKUs at $store (latest day, by WMAPE)").grid_pos(panel_grid(0, 21, 12, 10))
        .with_target(SQLQuery(WORST_SKUS, "table")))
    board = board.with_panel(
        timeseries.Panel().title("Drift: daily WMAPE of $store (WE rules judge this series)").unit("percentunit")
        .grid_pos(panel_grid(12, 21, 12, 10)).with_target(SQLQuery(DRIFT)).links([runbook_link("forecast", "DRIFT")]))
    board = board.with_panel(
        table.Panel().title("Forecast alerts").grid_pos(panel_grid(0, 31, 24, 8))
        .with_target(SQLQuery(FORECAST_ALERTS, "table")))
    return board
