"""The worker itself, from Prometheus: is it up, how fast, how far behind, is the sink keeping up.

Rates and quantiles come from the recording rules of deploy/prometheus/rules.yml (``spcwatch:...``,
5-minute windows, evaluated once by Prometheus rather than by every dashboard refresh); only
instant gauges and totals over the dashboard's time range read the raw series.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from stream_app.dashboards.common import SQLQuery, new_dashboard, panel_grid, promql, sql_variable

UID = "spcwatch-overview"


def _by(rule: str, by: str) -> str:
    """A recording rule summed over jobs by ``by``."""
    return f"sum by ({by}) ({rule})"


def dashboard() -> Dashboard:
    board = new_dashboard(UID, "spcwatch — worker overview",
                          "Worker health: input per topic, dead letters, consumer lag, sink and alert latency.",
                          tags=["worker"], time_from="now-1h",
                          use_cases=("infra", "store", "forecast", "recon"))
    board = board.with_variable(sql_variable("use_case", "Use case", "SELECT DISTINCT use_case FROM alerts ORDER BY 1",
                                             include_all=True))
    board = board.with_row(Row("Worker"))
    board = board.with_panel(stat.Panel().title("Worker up").grid_pos(panel_grid(0, 1, 4, 4))
                             .with_target(promql('min(up{job="spcwatch-worker"})')))
    board = board.with_panel(stat.Panel().title("Events consumed / s").unit("ops").grid_pos(panel_grid(4, 1, 5, 4))
                             .with_target(promql("sum(spcwatch:events_consumed:rate5m)")))
    board = board.with_panel(stat.Panel().title("Invalid events (time range)").grid_pos(panel_grid(9, 1, 5, 4))
                             .with_target(promql("sum(increase(spcwatch_events_invalid_total[$__range])) "
                                                 "or vector(0)")))
    board = board.with_panel(stat.Panel().title("Alert events (time range)").grid_pos(panel_grid(14, 1, 5, 4))
                             .with_target(promql("sum(increase(spcwatch_alerts_total[$__range])) or vector(0)")))
    board = board.with_panel(stat.Panel().title("Partitions consuming").grid_pos(panel_grid(19, 1, 5, 4))
                             .with_target(promql("sum(spcwatch_worker_consuming)")))
    board = board.with_row(Row("Input"))
    board = board.with_panel(timeseries.Panel().title("Events consumed / s by topic").unit("ops")
                             .grid_pos(panel_grid(0, 6, 12, 8))
                             .with_target(promql(_by("spcwatch:events_consumed:rate5m", "topic"), "{{topic}}")))
    board = board.with_panel(timeseries.Panel().title("Consumer lag by topic and partition (messages)")
                             .grid_pos(panel_grid(12, 6, 12, 8))
                             .with_target(promql(_by("spcwatch:consumer_lag:sum_by_partition", "topic, partition"),
                                                 "{{topic}} p{{partition}}")))
    board = board.with_panel(timeseries.Panel().title("Invalid events / s by topic and reason (dead letters)")
                             .unit("ops").grid_pos(panel_grid(0, 14, 12, 8))
                             .with_target(promql(_by("spcwatch:events_invalid:rate5m", "topic, reason")
                                                 + " or vector(0)", "{{topic}} {{reason}}")))
    board = board.with_panel(timeseries.Panel().title("Rerouted and re-read events / s").unit("ops")
                             .grid_pos(panel_grid(12, 14, 12, 8))
                             .with_target(promql("sum(spcwatch:events_rerouted:rate5m) or vector(0)", "rerouted"))
                             .with_target(promql("sum(spcwatch:delivery_gaps:rate5m) or vector(0)",
                                                 "delivery gaps re-read", "B")))
    board = board.with_row(Row("Sink"))
    board = board.with_panel(timeseries.Panel().title("Rows written / s by table").unit("ops")
                             .grid_pos(panel_grid(0, 23, 8, 8))
                             .with_target(promql(_by("spcwatch:sink_rows:rate5m", "table"), "{{table}}")))
    board = board.with_panel(timeseries.Panel().title("Sink errors / s").unit("ops").grid_pos(panel_grid(8, 23, 8, 8))
                             .with_target(promql("sum(spcwatch:sink_errors:rate5m) or vector(0)", "errors")))
    board = board.with_panel(timeseries.Panel().title("Checkpoint write time p50 / p99").unit("s")
                             .grid_pos(panel_grid(16, 23, 8, 8))
                             .with_target(promql("max(spcwatch:sink_write_seconds:p50_5m)", "p50"))
                             .with_target(promql("max(spcwatch:sink_write_seconds:p99_5m)", "p99", "B")))
    board = board.with_panel(timeseries.Panel().title("Notifications: backlog and outcomes per Alertmanager")
                             .description("Only with SPCWATCH_ALERTMANAGER_URL set; 0 otherwise. Outcomes / s: "
                                          "sent; failed (attempts retried); dropped (shed from the queue of an "
                                          "unreachable HA member while its peer took them).")
                             .grid_pos(panel_grid(0, 31, 16, 8))
                             .with_target(promql(_by("spcwatch:notification_queue:sum", "receiver") + " or vector(0)",
                                                 "queued {{receiver}}"))
                             .with_target(promql(_by("spcwatch:notifications:rate5m", "receiver, status")
                                                 + " or vector(0)", "{{status}} {{receiver}}", "B")))
    board = board.with_panel(timeseries.Panel().title("Notification latency p99 per Alertmanager").unit("s")
                             .description("Arrival at the forwarder to acceptance by the Alertmanager.")
                             .grid_pos(panel_grid(16, 31, 8, 8))
                             .with_target(promql(_by("spcwatch:notification_latency_seconds:p99_5m", "receiver")
                                                 + " or vector(0)", "{{receiver}}")))
    board = board.with_row(Row("Alerts"))
    board = board.with_panel(timeseries.Panel().title("Alert events per 5m by use case / rule")
                             .grid_pos(panel_grid(0, 41, 12, 8))
                             .with_target(promql("300 * " + _by("spcwatch:alerts:rate5m", "use_case, rule"),
                                                 "{{use_case}} {{rule}}")))
    board = board.with_panel(bargauge.Panel().title("Alert events in time range by use case / rule / severity")
                             .grid_pos(panel_grid(12, 41, 12, 8))
                             .with_target(promql("sort_desc(sum by (use_case, rule, severity) "
                                                 "(increase(spcwatch_alerts_total[$__range])))",
                                                 "{{use_case}} {{rule}} {{severity}}")))
    board = board.with_panel(timeseries.Panel().title("Event-to-alert latency p50 / p99").unit("s")
                             .grid_pos(panel_grid(0, 49, 12, 8))
                             .with_target(promql("max(spcwatch:event_to_alert_seconds:p50_5m)", "p50"))
                             .with_target(promql("max(spcwatch:event_to_alert_seconds:p99_5m)", "p99", "B")))
    board = board.with_panel(table.Panel().title("Recent alerts").grid_pos(panel_grid(12, 49, 12, 8))
                             .with_target(SQLQuery(
                                 "SELECT starts_at, severity, use_case, rule, status, summary, runbook_url "
                                 "FROM alerts WHERE (${use_case:sqlstring} = '__all' "
                                 "OR use_case = ${use_case:sqlstring}) "
                                 "ORDER BY starts_at DESC LIMIT 50",
                                 "table")))
    return board
