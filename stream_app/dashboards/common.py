"""Shared building blocks of the generated dashboards: data sources, SQL targets, alert annotations.

Grafana's Foundation SDK has builders for Prometheus queries but none for the MySQL data source;
``SQLQuery`` and ``AlertAnnotations`` fill that gap with the SDK's own base types, so every dashboard
is still assembled by the SDK and serialised by its encoder.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

MYSQL = model.DataSourceRef(type_val="mysql", uid="spcwatch-mysql")
PROMETHEUS = model.DataSourceRef(type_val="prometheus", uid="spcwatch-prometheus")
LIVE_REFRESH = "10s"
RUNBOOK_BASE = "${runbook_base}"


class _SQLTarget(cogvariants.Dataquery):
    def __init__(self, raw_sql: str, fmt: str, ref_id: str) -> None:
        self.raw_sql, self.fmt, self.ref_id = raw_sql, fmt, ref_id

    def to_json(self) -> dict[str, object]:
        return {"refId": self.ref_id, "datasource": MYSQL, "editorMode": "code", "format": self.fmt,
                "rawQuery": True, "rawSql": self.raw_sql}


class SQLQuery(cogbuilder.Builder[cogvariants.Dataquery]):
    """A raw-SQL target of the MySQL data source (``fmt``: ``time_series`` or ``table``)."""

    def __init__(self, raw_sql: str, fmt: str = "time_series", ref_id: str = "A") -> None:
        self._target = _SQLTarget(" ".join(raw_sql.split()), fmt, ref_id)

    def build(self) -> cogvariants.Dataquery:
        return self._target


def promql(expr: str, legend: str = "__auto", ref_id: str = "A") -> prometheus.Dataquery:
    return (prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref_id)
            .datasource(PROMETHEUS).range())


class _SQLAnnotation(model.AnnotationQuery):
    def __init__(self, name: str, raw_sql: str, color: str) -> None:
        super().__init__(name=name, datasource=MYSQL, enable=True, icon_color=color)
        self.raw_sql = raw_sql

    def to_json(self) -> dict[str, object]:
        payload = super().to_json()
        payload["rawQuery"] = self.raw_sql  # Grafana < 9 reads this, newer versions the target
        payload["target"] = {"refId": "Anno", "datasource": MYSQL, "format": "table", "rawQuery": True,
                             "editorMode": "code", "rawSql": self.raw_sql}
        return payload


def alert_annotation_sql(use_case: str) -> str:
    """Alert episodes of one use case as Grafana annotations (region from start to end)."""
    return (
        "SELECT starts_at AS time, COALESCE(ends_at, starts_at) AS timeend, "
        "CONCAT(rule, ' (', severity, '): ', COALESCE(summary, '')) AS text, "
        "CONCAT_WS(',', use_case, rule, severity, status) AS tags "
        f"FROM alerts WHERE use_case = '{use_case}' AND $__timeFilter(starts_at) ORDER BY starts_at"
    )


class AlertAnnotations(cogbuilder.Builder[model.AnnotationQuery]):
    """The ``alerts`` table as annotations on every time-series panel of a dashboard."""

    def __init__(self, use_case: str, color: str = "red") -> None:
        self._query = _SQLAnnotation(f"{use_case} alerts", alert_annotation_sql(use_case), color)

    def build(self) -> model.AnnotationQuery:
        return self._query


def runbook_link(use_case: str, rule: str) -> dash.DashboardLink:
    return (dash.DashboardLink(f"Runbook: {rule}").url(f"{RUNBOOK_BASE}/runbooks/{use_case}/{rule}")
            .target_blank(True))


def sql_variable(name: str, label: str, query: str, *, include_all: bool = False) -> dash.QueryVariable:
    """A drop-down filled from MySQL; panels use it as ``${name:sqlstring}`` (quoted, escaped)."""
    variable = (dash.QueryVariable(name).label(label).datasource(MYSQL).query(" ".join(query.split()))
                .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(model.VariableSort(1)))
    if include_all:
        variable = variable.include_all(True).all_value("__all").multi(False)
    return variable


def custom_variable(name: str, label: str, values: list[str]) -> dash.CustomVariable:
    current = model.VariableOption(selected=True, text=values[0], value=values[0])
    return dash.CustomVariable(name).label(label).values(",".join(values)).current(current)


def runbook_base_variable() -> dash.TextBoxVariable:
    """Where runbooks live: the worker's own web port by default (``SPCWATCH_RUNBOOK_BASE_URL`` in production)."""
    return (dash.TextBoxVariable("runbook_base").label("Runbook base URL").default_value("http://localhost:6066")
            .hide(model.VariableHide.HIDE_VARIABLE))


def new_dashboard(uid: str, title: str, description: str, *, tags: list[str], time_from: str,
                  use_cases: tuple[str, ...] = ()) -> dash.Dashboard:
    board = (dash.Dashboard(title).uid(uid).description(description).tags(["spcwatch", *tags])
             .refresh(LIVE_REFRESH).time(time_from, "now").timezone("browser").editable()
             .tooltip(model.DashboardCursorSync.CROSSHAIR).with_variable(runbook_base_variable()))
    return board.annotations([AlertAnnotations(use_case) for use_case in use_cases])


def render(board: dash.Dashboard) -> str:
    """The dashboard as the JSON Grafana provisions (stable key order, one trailing newline)."""
    payload = json.loads(json.dumps(board.build(), cls=JSONEncoder))
    return json.dumps(payload, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def panel_grid(x: int, y: int, w: int, h: int) -> model.GridPos:
    return model.GridPos(h=h, w=w, x=x, y=y)


def with_links(panel: Any, *links: dash.DashboardLink) -> Any:
    return panel.links(list(links)) if links else panel


def control_band(panel: Any, *, lower: str = "lower", upper: str = "upper", points: tuple[str, ...] = ()) -> Any:
    """Limits drawn as a shaded band (``upper`` filled down to ``lower``), flagged points as red dots."""
    band = [model.DynamicConfigValue(id_val="custom.fillBelowTo", value=lower),
            model.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
            model.DynamicConfigValue(id_val="custom.fillOpacity", value=15)]
    panel = panel.override_by_name(upper, band).override_by_name(
        lower, [model.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]})])
    for name in points:
        panel = panel.override_by_name(name, [
            model.DynamicConfigValue(id_val="custom.drawStyle", value="points"),
            model.DynamicConfigValue(id_val="custom.pointSize", value=8),
            model.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"})])
    return panel
