"""UC-IT-01: per-series control charts, the estate's health over time, episodes, exhaustion, inventory."""

from __future__ import annotations

from grafana_foundation_sdk.builders import stat, statushistory, table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row, ThresholdsConfig
from grafana_foundation_sdk.models import dashboard as model

from stream_app.dashboards.common import (
    SQLQuery,
    control_band,
    new_dashboard,
    panel_grid,
    promql,
    runbook_link,
    sql_variable,
)

UID = "uc-it-01-infra"

SERIES_BAND = """
SELECT a.ts AS time, a.value AS value, a.center AS center,
       a.center - 3 * a.sigma AS lower, a.center + 3 * a.sigma AS upper
FROM infra_anomaly_scores a JOIN infra_series s ON s.series_id = a.series_id
WHERE s.resource_id = ${resource:sqlstring} AND s.metric = ${metric:sqlstring} AND $__timeFilter(a.ts)
ORDER BY a.ts
"""
SERIES_BEYOND = """
SELECT a.ts AS time, a.value AS beyond
FROM infra_anomaly_scores a JOIN infra_series s ON s.series_id = a.series_id
WHERE s.resource_id = ${resource:sqlstring} AND s.metric = ${metric:sqlstring} AND $__timeFilter(a.ts)
  AND JSON_LENGTH(a.rules) > 0
ORDER BY a.ts
"""
SERIES_ROLLUP = """
SELECT r.minute AS time, r.value_min AS min, r.value_mean AS mean, r.value_max AS max
FROM infra_metric_rollups r JOIN infra_series s ON s.series_id = r.series_id
WHERE s.resource_id = ${resource:sqlstring} AND s.metric = ${metric:sqlstring} AND $__timeFilter(r.minute)
ORDER BY r.minute
"""
HEALTH_HISTORY = """
SELECT $__timeGroupAlias(minute, $__interval), resource_id AS metric, MIN(score) AS value
FROM infra_health_scores
WHERE $__timeFilter(minute) AND (${resource_type:sqlstring} = '__all' OR resource_type = ${resource_type:sqlstring})
GROUP BY 1, 2 ORDER BY 1
"""
# The latest score of each resource: a loose index scan of the primary key (a correlated MAX per
# resource read every row of it: 4.2 s over a month of the estate in make bench).
WORST_NOW = """
SELECT h.resource_id, h.resource_type, h.score, h.firing_series, i.status, i.last_seen
FROM (SELECT resource_id, MAX(minute) AS minute FROM infra_health_scores GROUP BY resource_id) latest
JOIN infra_health_scores h ON h.resource_id = latest.resource_id AND h.minute = latest.minute
JOIN infra_inventory i ON i.resource_id = h.resource_id
WHERE i.status <> 'retired' AND (${resource_type:sqlstring} = '__all' OR i.resource_type = ${resource_type:sqlstring})
ORDER BY h.score, h.resource_id LIMIT 30
"""
ACTIVE_EPISODES = """
SELECT starts_at, severity, rule, JSON_UNQUOTE(JSON_EXTRACT(entity, '$.resource_id')) AS resource_id,
       JSON_UNQUOTE(JSON_EXTRACT(entity, '$.metric')) AS metric, value, zscore, summary, runbook_url
FROM alerts WHERE use_case = 'infra' AND status = 'firing'
ORDER BY FIELD(severity, 'critical', 'warning', 'info'), starts_at DESC LIMIT 100
"""
EXHAUSTION = """
SELECT starts_at, severity, JSON_UNQUOTE(JSON_EXTRACT(entity, '$.resource_id')) AS resource_id,
       JSON_UNQUOTE(JSON_EXTRACT(entity, '$.metric')) AS metric, value, expected_upper AS limit_value,
       summary, runbook_url
FROM alerts WHERE use_case = 'infra' AND rule = 'EXHAUSTION' AND status = 'firing'
ORDER BY starts_at DESC LIMIT 50
"""
INVENTORY = """
SELECT resource_id, resource_type, source, status, series_count, first_seen, last_seen
FROM infra_inventory WHERE status <> 'active'
  AND (${resource_type:sqlstring} = '__all' OR resource_type = ${resource_type:sqlstring})
ORDER BY status, last_seen DESC LIMIT 200
"""
INVENTORY_COUNTS = """
SELECT status AS metric, COUNT(*) AS value FROM infra_inventory GROUP BY status ORDER BY status
"""


def _health_thresholds() -> ThresholdsConfig:
    return ThresholdsConfig().mode(model.ThresholdsMode.ABSOLUTE).steps([
        model.Threshold(color="red", value=None), model.Threshold(color="orange", value=50.0),
        model.Threshold(color="yellow", value=75.0), model.Threshold(color="green", value=100.0)])


def dashboard() -> Dashboard:
    board = new_dashboard(UID, "UC-IT-01 infrastructure monitoring",
                          "Each series against its baseline and limits, the estate's health over time, open "
                          "episodes, projected exhaustion and resources that stopped reporting.",
                          tags=["infra", "uc-it-01"], time_from="now-24h", use_cases=("infra",))
    board = board.with_variable(sql_variable(
        "resource_type", "Resource type", "SELECT DISTINCT resource_type FROM infra_inventory ORDER BY 1",
        include_all=True))
    board = board.with_variable(sql_variable(
        "resource", "Resource",
        "SELECT resource_id FROM infra_inventory WHERE (${resource_type:sqlstring} = '__all' "
        "OR resource_type = ${resource_type:sqlstring}) ORDER BY resource_id"))
    board = board.with_variable(sql_variable(
        "metric", "Metric", "SELECT DISTINCT metric FROM infra_series WHERE resource_id = ${resource:sqlstring} "
        "ORDER BY 1"))
    board = board.with_row(Row("Series $resource / $metric"))
    board = board.with_panel(control_band(
        timeseries.Panel().title("$metric of $resource: value, centre and 3-sigma limits")
        .description("The detector's view of every point: centre and limits as a band, the points that fired a "
                     "rule as red dots. Alert episodes are annotations.")
        .grid_pos(panel_grid(0, 1, 16, 10))
        .with_target(SQLQuery(SERIES_BAND)).with_target(SQLQuery(SERIES_BEYOND, ref_id="B"))
        .links([runbook_link("infra", "WE1")]), points=("beyond",)))
    board = board.with_panel(
        timeseries.Panel().title("$metric of $resource: per-minute min / mean / max")
        .grid_pos(panel_grid(16, 1, 8, 10)).with_target(SQLQuery(SERIES_ROLLUP)))
    board = board.with_row(Row("Estate health"))
    board = board.with_panel(
        statushistory.Panel().title("Health by resource over time (0-100)")
        .description("Lowest health score of each resource per interval: 100 healthy, 0 absent.")
        .grid_pos(panel_grid(0, 12, 16, 12)).min(0).max(100).thresholds(_health_thresholds())
        .with_target(SQLQuery(HEALTH_HISTORY)))
    board = board.with_panel(
        table.Panel().title("Resources by health, worst first").grid_pos(panel_grid(16, 12, 8, 12))
        .with_target(SQLQuery(WORST_NOW, "table")))
    board = board.with_row(Row("Episodes and projections"))
    board = board.with_panel(
        table.Panel().title("Active episodes").grid_pos(panel_grid(0, 25, 14, 9))
        .with_target(SQLQuery(ACTIVE_EPISODES, "table"))
        .links([runbook_link("infra", "WE1"), runbook_link("infra", "ABSENT")]))
    board = board.with_panel(
        table.Panel().title("EXHAUSTION: limits projected to be reached").grid_pos(panel_grid(14, 25, 10, 9))
        .with_target(SQLQuery(EXHAUSTION, "table")).links([runbook_link("infra", "EXHAUSTION")]))
    board = board.with_row(Row("Inventory and pipeline"))
    board = board.with_panel(
        table.Panel().title("Absent and retired resources").grid_pos(panel_grid(0, 35, 12, 9))
        .with_target(SQLQuery(INVENTORY, "table")).links([runbook_link("infra", "ABSENT")]))
    board = board.with_panel(
        stat.Panel().title("Resources by status").grid_pos(panel_grid(12, 35, 4, 9))
        .with_target(SQLQuery(INVENTORY_COUNTS, "table")))
    board = board.with_panel(
        timeseries.Panel().title("metrics.samples consumer lag by partition (messages)")
        .grid_pos(panel_grid(16, 35, 8, 9))
        .with_target(promql('sum by (partition) (spcwatch:consumer_lag:sum_by_partition{topic=~".*metrics.samples"})',
                            "p{{partition}}")))
    return board
