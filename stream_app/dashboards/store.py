"""UC-OP-02: each store's daily control chart, its peers, the chain, open flags, today's trajectory."""

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

UID = "uc-op-02-store"
METRICS = ["net_revenue", "orders", "aov", "items_per_order", "discount_depth", "refund_rate", "cancel_rate"]

CONTROL_CHART = """
SELECT TIMESTAMP(l.business_date) AS time, p.value AS value, l.center AS center, l.lower AS lower, l.upper AS upper
FROM store_control_limits l
JOIN store_peer_comparison p
  ON p.store_id = l.store_id AND p.business_date = l.business_date AND p.metric = l.metric
WHERE l.store_id = ${store:sqlstring} AND l.metric = ${metric:sqlstring} AND $__timeFilter(l.business_date)
ORDER BY l.business_date
"""
FLAGGED_DAYS = """
SELECT TIMESTAMP(f.business_date) AS time, p.value AS flagged
FROM store_anomaly_flags f
JOIN store_peer_comparison p
  ON p.store_id = f.store_id AND p.business_date = f.business_date AND p.metric = f.metric
WHERE f.store_id = ${store:sqlstring} AND f.metric = ${metric:sqlstring} AND $__timeFilter(f.business_date)
  AND (JSON_LENGTH(f.rules) > 0 OR f.peer_flag OR f.chain_flag)
ORDER BY f.business_date
"""
PEERS = """
SELECT TIMESTAMP(business_date) AS time, value AS store, peer_median AS peer_median,
       peer_median - 3 * ABS((value - peer_median) / NULLIF(peer_z, 0)) AS peer_lower,
       peer_median + 3 * ABS((value - peer_median) / NULLIF(peer_z, 0)) AS peer_upper
FROM store_peer_comparison
WHERE store_id = ${store:sqlstring} AND metric = ${metric:sqlstring} AND $__timeFilter(business_date)
ORDER BY business_date
"""
PEER_Z = """
SELECT TIMESTAMP(business_date) AS time, store_id AS metric, peer_z AS value
FROM store_peer_comparison
WHERE metric = ${metric:sqlstring} AND $__timeFilter(business_date)
ORDER BY business_date
"""
CHAIN = """
SELECT TIMESTAMP(business_date) AS time, SUM(net_revenue) AS net_revenue, SUM(orders) AS orders
FROM store_daily_metrics
WHERE $__timeFilter(business_date) AND NOT closed_day
GROUP BY business_date ORDER BY business_date
"""
ALL_STORES = """
SELECT TIMESTAMP(business_date) AS time, store_id AS metric, net_revenue AS value
FROM store_daily_metrics WHERE $__timeFilter(business_date)
ORDER BY business_date
"""
OPEN_FLAGS = """
SELECT f.business_date, f.store_id, f.metric, f.rules, f.zscore, f.peer_flag, f.chain_flag, a.status, a.summary,
       a.runbook_url
FROM store_anomaly_flags f LEFT JOIN alerts a ON a.alert_id = f.episode_id
WHERE $__timeFilter(f.business_date) AND (JSON_LENGTH(f.rules) > 0 OR f.peer_flag OR f.chain_flag)
ORDER BY f.business_date DESC, f.store_id LIMIT 200
"""
STORE_ALERTS = """
SELECT starts_at, severity, rule, status, JSON_UNQUOTE(JSON_EXTRACT(entity, '$.store_id')) AS store_id,
       JSON_UNQUOTE(JSON_EXTRACT(entity, '$.metric')) AS metric, summary, runbook_url
FROM alerts WHERE use_case = 'store' AND $__timeFilter(starts_at)
ORDER BY starts_at DESC LIMIT 100
"""
# Today's cumulative paid revenue (UTC day of the range's end) against the mean cumulative path of the same
# weekday over the previous four weeks, shifted onto today so the two lines share the x axis.
INTRADAY = """
SELECT FROM_UNIXTIME(bucket) AS time, 'today' AS metric, SUM(revenue) OVER (ORDER BY bucket) AS value
FROM (SELECT UNIX_TIMESTAMP(first_seen) DIV 900 * 900 AS bucket, SUM(order_minor) / 100 AS revenue
      FROM recon_orders
      WHERE store_id = ${store:sqlstring} AND order_status = 'paid'
        AND first_seen >= DATE($__timeTo()) AND first_seen <= $__timeTo()
      GROUP BY 1) today
ORDER BY 1
"""
INTRADAY_EXPECTED = """
SELECT FROM_UNIXTIME(UNIX_TIMESTAMP(DATE($__timeTo())) + slot) AS time,
       'same weekday, previous 4 weeks (mean)' AS metric, SUM(revenue) OVER (ORDER BY slot) AS value
FROM (SELECT (UNIX_TIMESTAMP(first_seen) - UNIX_TIMESTAMP(DATE(first_seen))) DIV 900 * 900 AS slot,
             SUM(order_minor) / 100 / COUNT(DISTINCT DATE(first_seen)) AS revenue
      FROM recon_orders
      WHERE store_id = ${store:sqlstring} AND order_status = 'paid'
        AND first_seen >= DATE_SUB(DATE($__timeTo()), INTERVAL 28 DAY) AND first_seen < DATE($__timeTo())
        AND DAYOFWEEK(first_seen) = DAYOFWEEK($__timeTo())
      GROUP BY 1) past
ORDER BY 1
"""


def dashboard() -> Dashboard:
    board = new_dashboard(UID, "UC-OP-02 store performance",
                          "Each store's daily metric against its day-of-week control limits, against its peers, "
                          "the chain as a whole, open anomaly flags and today's trajectory.",
                          tags=["store", "uc-op-02"], time_from="now-90d", use_cases=("store",))
    board = board.with_variable(sql_variable(
        "store", "Store", "SELECT DISTINCT store_id FROM store_daily_metrics ORDER BY 1"))
    board = board.with_variable(custom_variable("metric", "Metric", METRICS))
    board = board.with_row(Row("$store: $metric"))
    board = board.with_panel(control_band(
        timeseries.Panel().title("Control chart: $metric of $store").unit("short")
        .description("Daily value against the day-of-week centre and limits of the previous 28 days "
                     "(limits widened for the estimated sigma); flagged days as points.")
        .grid_pos(panel_grid(0, 1, 12, 10))
        .with_target(SQLQuery(CONTROL_CHART)).with_target(SQLQuery(FLAGGED_DAYS, ref_id="B"))
        .links([runbook_link("store", "WE1"), runbook_link("store", "CUSUM")]), points=("flagged",)))
    board = board.with_panel(control_band(
        timeseries.Panel().title("Peer comparison: $store against the peer median (3 robust sigma band)")
        .grid_pos(panel_grid(12, 1, 12, 10)).with_target(SQLQuery(PEERS)).links([runbook_link("store", "PEER")]),
        lower="peer_lower", upper="peer_upper"))
    board = board.with_panel(
        timeseries.Panel().title("Robust z against peers, every store ($metric)")
        .grid_pos(panel_grid(0, 11, 12, 8)).with_target(SQLQuery(PEER_Z)))
    board = board.with_panel(
        timeseries.Panel().title("Intraday: cumulative paid revenue of $store today against its usual path")
        .unit("currencyUSD").time_from("24h")
        .grid_pos(panel_grid(12, 11, 12, 8))
        .with_target(SQLQuery(INTRADAY)).with_target(SQLQuery(INTRADAY_EXPECTED, ref_id="B"))
        .links([runbook_link("store", "INTRADAY")]))
    board = board.with_row(Row("Chain"))
    board = board.with_panel(
        timeseries.Panel().title("Chain: net revenue and orders per day").grid_pos(panel_grid(0, 20, 12, 8))
        .with_target(SQLQuery(CHAIN)))
    board = board.with_panel(
        timeseries.Panel().title("Net revenue per day, every store").unit("currencyUSD")
        .grid_pos(panel_grid(12, 20, 12, 8)).with_target(SQLQuery(ALL_STORES)))
    board = board.with_row(Row("Flags and alerts"))
    board = board.with_panel(
        table.Panel().title("Flagged store-days (rules, peer and chain flags)").grid_pos(panel_grid(0, 29, 12, 10))
        .with_target(SQLQuery(OPEN_FLAGS, "table")))
    board = board.with_panel(
        table.Panel().title("Store alerts").grid_pos(panel_grid(12, 29, 12, 10))
        .with_target(SQLQuery(STORE_ALERTS, "table")))
    return board
