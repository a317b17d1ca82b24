"""UC-FN-02 for three audiences: finance executives (trends), operations (open exceptions), investigators."""

from __future__ import annotations

from grafana_foundation_sdk.builders import barchart, stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from stream_app.dashboards.common import SQLQuery, new_dashboard, panel_grid, runbook_link, sql_variable

STORE_FILTER = "(${store:sqlstring} = '__all' OR store_id = ${store:sqlstring})"

MATCH_RATE = f"""
SELECT TIMESTAMP(business_day) AS time, store_id AS metric, match_rate AS value
FROM recon_daily WHERE $__timeFilter(business_day) AND {STORE_FILTER} AND currency <> 'NZD'
ORDER BY business_day
"""
UNMATCHED = f"""
SELECT TIMESTAMP(business_day) AS time, store_id AS metric, unmatched_minor / 100 AS value
FROM recon_daily WHERE $__timeFilter(business_day) AND {STORE_FILTER} AND currency <> 'NZD'
ORDER BY business_day
"""
CHAIN_TREND = """
SELECT TIMESTAMP(business_day) AS time, SUM(matched) / NULLIF(SUM(matched) + SUM(exceptions), 0) AS match_rate,
       SUM(unmatched_minor) / 100 AS unmatched_amount, SUM(order_minor) / 100 AS order_amount
FROM recon_daily WHERE $__timeFilter(business_day) AND currency <> 'NZD'
GROUP BY business_day ORDER BY business_day
"""
HEADLINE = f"""
SELECT SUM(matched) / NULLIF(SUM(matched) + SUM(exceptions), 0) AS match_rate,
       SUM(unmatched_minor) / 100 AS unmatched_amount, SUM(exceptions) AS exceptions,
       SUM(test_events) AS excluded_test_records
FROM recon_daily WHERE $__timeFilter(business_day) AND {STORE_FILTER}
"""
OPEN_BY_CATEGORY = f"""
SELECT category, COUNT(*) AS open_exceptions, SUM(amount_minor) / 100 AS amount,
       MIN(first_seen) AS oldest
FROM recon_exceptions WHERE status = 'open' AND {STORE_FILTER}
GROUP BY category ORDER BY open_exceptions DESC
"""
OPEN_BY_AGE = f"""
SELECT CASE WHEN TIMESTAMPDIFF(HOUR, first_seen, $__timeTo()) < 1 THEN '< 1 h'
            WHEN TIMESTAMPDIFF(HOUR, first_seen, $__timeTo()) < 24 THEN '1-24 h'
            WHEN TIMESTAMPDIFF(DAY, first_seen, $__timeTo()) < 7 THEN '1-7 days'
            ELSE '> 7 days' END AS age, category, COUNT(*) AS open_exceptions
FROM recon_exceptions WHERE status = 'open' AND {STORE_FILTER}
GROUP BY 1, 2 ORDER BY 1, 2
"""
OLDEST_FIRST = f"""
SELECT first_seen, order_id, store_id, category, currency, amount_minor / 100 AS amount,
       order_minor / 100 AS order_total,
       payments_minor / 100 AS payments, ledger_minor / 100 AS ledger, detail
FROM recon_exceptions WHERE status = 'open' AND {STORE_FILTER}
ORDER BY first_seen LIMIT 200
"""
EXCEPTIONS_PER_DAY = f"""
SELECT TIMESTAMP(business_day) AS time, category AS metric, SUM(exceptions) AS value
FROM recon_daily_exceptions WHERE $__timeFilter(business_day) AND {STORE_FILTER}
GROUP BY business_day, category ORDER BY business_day
"""
RECON_ALERTS = """
SELECT starts_at, severity, rule, status, JSON_UNQUOTE(JSON_EXTRACT(entity, '$.store_id')) AS store_id,
       value, summary, runbook_url
FROM alerts WHERE use_case = 'recon' AND $__timeFilter(starts_at)
ORDER BY starts_at DESC LIMIT 100
"""
ORDER_SOURCES = """
SELECT order_id, store_id, business_day, currency, outcome, order_status,
       order_minor / 100 AS order_total, payments_minor / 100 AS payments_captured,
       payments_refund_minor / 100 AS payments_refunded, ledger_minor / 100 AS ledger_revenue,
       ledger_refund_minor / 100 AS ledger_refunds, open_categories, first_seen, last_event
FROM recon_orders WHERE order_id = ${order_id:sqlstring}
"""
ORDER_EXCEPTIONS = """
SELECT category, status, amount_minor / 100 AS amount, order_minor / 100 AS order_total,
       payments_minor / 100 AS payments, ledger_minor / 100 AS ledger, variance_minor / 100 AS variance, detail,
       first_seen, last_seen, resolved_at
FROM recon_exceptions WHERE order_id = ${order_id:sqlstring}
ORDER BY first_seen
"""


def _store_variable():  # type: ignore[no-untyped-def]
    return sql_variable("store", "Store", "SELECT DISTINCT store_id FROM recon_orders ORDER BY 1", include_all=True)


def executive() -> Dashboard:
    board = new_dashboard("uc-fn-02-recon-executive", "UC-FN-02 reconciliation — executive",
                          "Is the money reconciled? Match rate and unmatched amount by day and store, chain trend.",
                          tags=["recon", "uc-fn-02"], time_from="now-30d", use_cases=("recon",))
    board = board.with_variable(_store_variable())
    board = board.with_panel(stat.Panel().title("Match rate, unmatched amount, exceptions (time range)")
                             .grid_pos(panel_grid(0, 0, 24, 4)).with_target(SQLQuery(HEADLINE, "table")))
    board = board.with_panel(timeseries.Panel().title("Match rate by day and store").unit("percentunit")
                             .grid_pos(panel_grid(0, 4, 12, 9)).with_target(SQLQuery(MATCH_RATE)))
    board = board.with_panel(timeseries.Panel().title("Unmatched amount by day and store").unit("currencyUSD")
                             .grid_pos(panel_grid(12, 4, 12, 9)).with_target(SQLQuery(UNMATCHED)))
    board = board.with_panel(timeseries.Panel().title("Chain: match rate, unmatched and order amount per day")
                             .grid_pos(panel_grid(0, 13, 24, 9)).with_target(SQLQuery(CHAIN_TREND)))
    return board


def operational() -> Dashboard:
    board = new_dashboard("uc-fn-02-recon-operational", "UC-FN-02 reconciliation — operational",
                          "What to work on: open exceptions by category and age, oldest first.",
                          tags=["recon", "uc-fn-02"], time_from="now-7d", use_cases=("recon",))
    board = board.with_variable(_store_variable())
    board = board.with_row(Row("Open exceptions"))
    board = board.with_panel(table.Panel().title("Open exceptions by category").grid_pos(panel_grid(0, 1, 12, 8))
                             .with_target(SQLQuery(OPEN_BY_CATEGORY, "table"))
                             .links([runbook_link("recon", "RECON_MISSING_PAYMENT"),
                                     runbook_link("recon", "RECON_MISSING_LEDGER")]))
    board = board.with_panel(barchart.Panel().title("Open exceptions by age").grid_pos(panel_grid(12, 1, 12, 8))
                             .with_target(SQLQuery(OPEN_BY_AGE, "table")))
    board = board.with_panel(table.Panel().title("Open exceptions, oldest first").grid_pos(panel_grid(0, 9, 24, 10))
                             .with_target(SQLQuery(OLDEST_FIRST, "table")))
    board = board.with_row(Row("Trend and alerts"))
    board = board.with_panel(timeseries.Panel().title("Exceptions per business day by category")
                             .grid_pos(panel_grid(0, 20, 12, 9)).with_target(SQLQuery(EXCEPTIONS_PER_DAY)))
    board = board.with_panel(table.Panel().title("Reconciliation alerts").grid_pos(panel_grid(12, 20, 12, 9))
                             .with_target(SQLQuery(RECON_ALERTS, "table")))
    return board


def investigation() -> Dashboard:
    board = new_dashboard("uc-fn-02-recon-investigation", "UC-FN-02 reconciliation — investigation",
                          "One order's three sources side by side, and its exceptions.",
                          tags=["recon", "uc-fn-02"], time_from="now-30d", use_cases=("recon",))
    board = board.with_variable(sql_variable(
        "order_id", "Order",
        "SELECT order_id FROM recon_exceptions GROUP BY order_id ORDER BY MAX(last_seen) DESC LIMIT 500"))
    board = board.with_panel(table.Panel().title("Order ${order_id}: what orders, payments and the ledger said")
                             .grid_pos(panel_grid(0, 0, 24, 6)).with_target(SQLQuery(ORDER_SOURCES, "table")))
    board = board.with_panel(table.Panel().title("Its exceptions").grid_pos(panel_grid(0, 6, 24, 8))
                             .with_target(SQLQuery(ORDER_EXCEPTIONS, "table")))
    return board
