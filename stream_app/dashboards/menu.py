"""UC-PR-01 (``uc-pr-01-menu``): the menu-engineering matrix of one scope and category, its items' trends,
the top pairs by lift and the menu alerts, over the tables the worker writes (sql/0007_menu.sql).

The matrix is the latest closed business day of the time range (``menu_matrix`` holds one per day), so
moving the range's end back shows the matrix as it stood then.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import table, timeseries, xychart
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import common as common_model
from grafana_foundation_sdk.models import xychart as xymodel

from stream_app.dashboards.common import (
    SQLQuery,
    custom_variable,
    new_dashboard,
    panel_grid,
    runbook_link,
    sql_variable,
)

UID = "uc-pr-01-menu"
CLASSES = ("star", "plowhorse", "puzzle", "dog")
WINDOWS = ["28", "7"]  # models.menu.MenuConfig.windows: the primary (alerts, report) first

SCOPE = "${scope:sqlstring}"
LATEST_MATRIX = f"""(SELECT MAX(l.business_date) FROM menu_matrix l
  WHERE l.scope = {SCOPE} AND l.window_days = ${{window:raw}} AND $__timeFilter(l.business_date))"""
MATRIX_WHERE = f"""m.scope = {SCOPE} AND m.window_days = ${{window:raw}} AND m.category = ${{category:sqlstring}}
  AND m.business_date = {LATEST_MATRIX}"""

# One column per class (x: menu mix), so each class is its own colour; the category's CM benchmark as a line.
MATRIX_POINTS = f"""
SELECT m.mm_pct AS menu_mix_pct,
       {", ".join(f"CASE WHEN m.menu_class = '{c}' THEN m.cm END AS {c}" for c in CLASSES)},
       m.cm_benchmark_value AS cm_benchmark, m.name
FROM menu_matrix m WHERE {MATRIX_WHERE}
ORDER BY m.mm_pct
"""
MATRIX_TABLE = f"""
SELECT m.business_date, m.spu, m.name, m.menu_class, m.units, m.revenue, m.mm_pct, m.popularity_threshold_mm_pct,
       m.cm, m.cm_benchmark_value, m.list_cm, m.cm_pct, m.discount_depth, m.wow_growth, m.cmgr, m.days_covered
FROM menu_matrix m WHERE {MATRIX_WHERE}
ORDER BY FIELD(m.menu_class, {", ".join(f"'{c}'" for c in CLASSES)}), m.mm_pct DESC
"""
ITEM_DAILY = """
SELECT TIMESTAMP(business_date) AS time, name AS metric, {column} AS value
FROM menu_item_daily
WHERE scope = ${{scope:sqlstring}} AND category = ${{category:sqlstring}} AND $__timeFilter(business_date)
ORDER BY business_date
"""
MIX_TREND = f"""
SELECT TIMESTAMP(business_date) AS time, name AS metric, mm_pct AS value
FROM menu_matrix
WHERE scope = {SCOPE} AND window_days = ${{window:raw}} AND category = ${{category:sqlstring}}
  AND $__timeFilter(business_date)
ORDER BY business_date
"""
# Pairs are kept as the top ones by support (with a minimum support); here the day's list by lift, with names.
TOP_PAIRS = f"""
SELECT p.business_date, COALESCE(a.name, p.item_a) AS item_a, COALESCE(b.name, p.item_b) AS item_b, p.lift,
       p.support, p.confidence_ab, p.confidence_ba, p.leverage, p.conviction_ab, p.conviction_ba, p.n_ab,
       p.n_baskets, p.pair_rank AS rank_by_support, p.error_bound
FROM menu_pairs p
LEFT JOIN menu_matrix a ON a.scope = p.scope AND a.window_days = p.window_days AND a.business_date = p.business_date
  AND a.spu = p.item_a
LEFT JOIN menu_matrix b ON b.scope = p.scope AND b.window_days = p.window_days AND b.business_date = p.business_date
  AND b.spu = p.item_b
WHERE p.scope = {SCOPE} AND p.window_days = ${{window:raw}}
  AND p.business_date = (SELECT MAX(q.business_date) FROM menu_pairs q
                         WHERE q.scope = {SCOPE} AND q.window_days = ${{window:raw}} AND $__timeFilter(q.business_date))
ORDER BY p.lift DESC, p.pair_rank LIMIT 20
"""
MENU_ALERTS = """
SELECT starts_at, severity, rule, status,
       COALESCE(JSON_UNQUOTE(JSON_EXTRACT(entity, '$.store_id')), 'chain') AS scope,
       JSON_UNQUOTE(JSON_EXTRACT(entity, '$.category')) AS category,
       JSON_UNQUOTE(JSON_EXTRACT(entity, '$.spu')) AS spu, value, expected_center, summary, runbook_url
FROM alerts WHERE use_case = 'menu' AND $__timeFilter(starts_at)
ORDER BY starts_at DESC LIMIT 100
"""


def _matrix_panel() -> xychart.Panel:
    series = [xychart.ScatterSeriesConfig().x("menu_mix_pct").y(c).name(c) for c in CLASSES]
    series.append(xychart.ScatterSeriesConfig().x("menu_mix_pct").y("cm_benchmark").name("CM benchmark")
                  .show(xymodel.ScatterShow.LINES))
    return (xychart.Panel().title("Matrix: CM per unit against menu mix ($category, $scope, $window days)")
            .description("Kasavana & Smith: each item of the category on the latest closed day of the range, "
                         "coloured by class; the horizontal line is the category's CM benchmark (sales-weighted "
                         "mean CM), the popularity line (70 % rule) is in the table beside. Stars are right of "
                         "the popularity line and above the benchmark, plowhorses right and below, puzzles left "
                         "and above, dogs left and below.")
            .series_mapping(xymodel.SeriesMapping.MANUAL).series(series)
            .legend(common_builders.VizLegendOptions().show_legend(True)
                    .display_mode(common_model.LegendDisplayMode.LIST).placement(common_model.LegendPlacement.BOTTOM))
            .unit("currencyUSD")
            .grid_pos(panel_grid(0, 1, 12, 11)).with_target(SQLQuery(MATRIX_POINTS, "table"))
            .links([runbook_link("menu", "MENU_CLASS_CHANGE")]))


def _item_trend(title: str, column: str, unit: str, x: int, y: int, *rules: str) -> timeseries.Panel:
    panel = (timeseries.Panel().title(title).unit(unit).grid_pos(panel_grid(x, y, 12, 9))
             .with_target(SQLQuery(ITEM_DAILY.format(column=column))))
    return panel.links([runbook_link("menu", rule) for rule in rules]) if rules else panel


def dashboard() -> Dashboard:
    board = new_dashboard(UID, "UC-PR-01 menu engineering",
                          "The menu-engineering matrix (contribution margin against menu mix, a class per item) of "
                          "a store or the chain, the items' daily units, realised CM % and discount depth, the top "
                          "item pairs by lift, and the menu alerts.",
                          tags=["menu", "uc-pr-01"], time_from="now-90d", use_cases=("menu",))
    board = board.with_variable(sql_variable(
        "scope", "Scope", "SELECT scope FROM (SELECT DISTINCT scope FROM menu_run_log) s "
                          "ORDER BY scope <> 'chain', scope"))
    board = board.with_variable(custom_variable("window", "Window (days)", WINDOWS))
    board = board.with_variable(sql_variable(
        "category", "Category", f"SELECT DISTINCT category FROM menu_matrix WHERE scope = {SCOPE} "
                                "AND window_days = ${window:raw} ORDER BY 1"))
    board = board.with_row(Row("Matrix: $category, $scope"))
    board = board.with_panel(_matrix_panel())
    board = board.with_panel(
        table.Panel().title("Items: class, menu mix, CM and growth ($window-day window)")
        .description("mm_pct and the popularity line in percent of the category's units; cm is the realised CM "
                     "per unit over the window, list_cm at list price; wow_growth: the last 7 days' units over "
                     "the 7 before; cmgr: compound monthly growth; days_covered < window: warming up.")
        .grid_pos(panel_grid(12, 1, 12, 11)).with_target(SQLQuery(MATRIX_TABLE, "table"))
        .links([runbook_link("menu", "MENU_CLASS_CHANGE")]))
    board = board.with_row(Row("Trends per item: $category, $scope"))
    board = board.with_panel(_item_trend("Units sold per day", "units", "short", 0, 13))
    board = board.with_panel(
        timeseries.Panel().title("Menu mix over the $window-day window (% of the category's units)").unit("percent")
        .grid_pos(panel_grid(12, 13, 12, 9)).with_target(SQLQuery(MIX_TREND))
        .links([runbook_link("menu", "MENU_CLASS_CHANGE")]))
    board = board.with_panel(_item_trend("Realised CM % per day", "cm_pct", "percentunit", 0, 22, "MARGIN_EROSION"))
    board = board.with_panel(_item_trend("Discount depth per day", "discount_depth", "percentunit", 12, 22,
                                         "DISCOUNT_DEPTH"))
    board = board.with_row(Row("Pairs and alerts"))
    board = board.with_panel(
        table.Panel().title("Top pairs by lift ($scope, $window-day window)")
        .description("Baskets are the distinct items of a paid order. The worker keeps the top pairs by support "
                     "(with a minimum support); error_bound: how many baskets n_ab may be short by (0: exact).")
        .grid_pos(panel_grid(0, 32, 12, 10)).with_target(SQLQuery(TOP_PAIRS, "table")))
    board = board.with_panel(
        table.Panel().title("Menu alerts").grid_pos(panel_grid(12, 32, 12, 10))
        .with_target(SQLQuery(MENU_ALERTS, "table"))
        .links([runbook_link("menu", r) for r in ("MENU_CLASS_CHANGE", "MARGIN_EROSION", "DISCOUNT_DEPTH")]))
    return board
