"""The generated Grafana dashboards: committed JSON is current, valid, and every query works for real.

Grafana itself cannot run on these machines, so each panel's query is run the way Grafana would run it:
MySQL panels with Grafana's macros and template variables expanded, against the rows that ``spcwatch
replay`` of the simulator's scenarios writes to MariaDB; Prometheus panels parsed by ``promtool`` and
evaluated by a real Prometheus that scraped a worker processing the simulator's stream.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel

from stream_app import dashboards
from stream_app.dashboards.queries import GrafanaSQL, all_panels, choose_variables, relative, sql_targets
from stream_app.runtime import db
from tests.conftest import ROOT, _mysql_exec, free_port

DEPLOY = ROOT / "deploy" / "grafana"
SIM_ARGS = ["--scenario", "all", "--history-days", "8", "--infra-history-days", "0", "--duration", "3h",
            "--start", "2026-11-01T00:00:00Z", "--seed", "3", "--quiet"]
# The menu charts judge after 14 baseline days: orders alone, ending where SIM_ARGS ends, so the menu
# cost increase (t0-2d) has fired its MARGIN_EROSION by the end (the menu alerts panel has a row).
MENU_SIM_ARGS = ["--domains", "orders", "--scenario", "menu-cost-increase", "--history-days", "17",
                 "--duration", "3h", "--start", "2026-10-23T00:00:00Z", "--seed", "3", "--quiet"]
#: tables holding a row per point or per day and entity: panels must reach them through an index
PER_POINT_TABLES = {"infra_anomaly_scores", "infra_metric_rollups", "infra_health_scores",
                    "store_control_limits", "store_peer_comparison", "store_anomaly_flags",
                    "forecast_accuracy_summary", "forecast_accuracy_daily", "recon_orders", "recon_exceptions",
                    "menu_item_daily", "menu_matrix", "menu_pairs"}


#: panels showing what only exists once a use case has alerted (flags behind an episode), by use case
SHOWS_SIGNALS_OF = {"Flagged store-days (rules, peer and chain flags)": "store"}


def boards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(text) for name, text in dashboards.rendered().items()}


# ------------------------------------------------------------------ generated, committed, valid

def test_the_committed_dashboards_are_what_the_code_generates() -> None:
    committed = {path.name: path.read_text() for path in (DEPLOY / "dashboards").glob("*.json")}
    generated = dashboards.rendered()
    assert set(committed) == set(generated), "a dashboard file without a module, or one never generated"
    stale = [name for name, text in generated.items() if committed[name] != text]
    assert not stale, f"stale dashboards {stale}: run `make dashboards` and commit the result"


def test_dashboards_are_valid_live_and_link_their_runbooks() -> None:
    generated = boards()
    uids = [board["uid"] for board in generated.values()]
    assert len(set(uids)) == len(uids)
    assert {"spcwatch-overview", "uc-it-01-infra", "uc-op-02-store", "uc-sc-01-forecast-accuracy",
            "uc-fn-02-recon-executive", "uc-fn-02-recon-operational", "uc-fn-02-recon-investigation",
            "uc-pr-01-menu"} <= set(uids)
    for name, board in generated.items():
        model = DashboardModel.from_json(board)  # the SDK's own model of a dashboard reads it back
        assert model.uid == board["uid"] and model.title
        assert board["refresh"] == "10s", name
        panels = list(all_panels(board))
        assert panels, name
        ys = [(p["gridPos"]["x"], p["gridPos"]["y"]) for p in panels]
        assert len(set(ys)) == len(ys), f"{name}: two panels at the same place"
        if any(p["type"] == "timeseries" for p in panels) and board["uid"] != "spcwatch-overview":
            annotations = [a for a in board["annotations"]["list"] if "alerts" in a.get("rawQuery", "")]
            assert annotations, f"{name}: time series without alert annotations"
        for panel in panels:
            for link in panel.get("links", ()):
                assert re.fullmatch(r"\$\{runbook_base\}/runbooks/[a-z]+/[A-Z0-9_]+", link["url"]), link


def test_provisioning_points_grafana_at_the_dashboards_and_their_data_sources() -> None:
    providers = yaml.safe_load((DEPLOY / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/etc/grafana/dashboards"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert "./deploy/grafana/dashboards:/etc/grafana/dashboards:ro" in compose["services"]["grafana"]["volumes"]
    sources = yaml.safe_load((DEPLOY / "provisioning" / "datasources" / "datasources.yml").read_text())
    assert sources["apiVersion"] == 1
    declared = {(s["type"], s["uid"]) for s in sources["datasources"]}
    assert all({"name", "type", "uid", "access", "url"} <= set(s) for s in sources["datasources"])
    used = {(ref["type"], ref["uid"]) for board in boards().values() for ref in datasource_refs(board)}
    assert used and used <= declared, used - declared


def datasource_refs(node: Any) -> Iterator[dict[str, str]]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from datasource_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from datasource_refs(value)


# ------------------------------------------------------------------ MySQL panels, for real

def run(url: str, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    async def go() -> tuple[list[str], list[tuple[Any, ...]]]:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                await conn.exec_driver_sql("SET time_zone = '+00:00'")  # as Grafana's MySQL data source does
                result = await conn.exec_driver_sql(sql)
                return list(result.keys()), [tuple(row) for row in result.all()]
        finally:
            await engine.dispose()
    return asyncio.run(go())


@pytest.fixture(scope="module")
def replayed_db(mysql_server_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A MariaDB database holding what ``spcwatch replay`` of the simulator's scenarios writes."""
    from sqlalchemy.engine import make_url

    name = f"spcwatch_dash_{uuid.uuid4().hex[:8]}"
    _mysql_exec(mysql_server_url, f"CREATE DATABASE `{name}`")
    url = make_url(mysql_server_url).set(database=name).render_as_string(hide_password=False)
    work = tmp_path_factory.mktemp("dashboards")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPCWATCH_")}
    env["SPCWATCH_DB_URL"] = url
    cli = [sys.executable, "-m", "stream_app.cli"]
    stream = work / "simulated.jsonl"
    subprocess.run([*cli, "simulate", *SIM_ARGS, "--out", str(stream)], cwd=ROOT, env=env, check=True, timeout=300)
    menu_stream = work / "menu.jsonl"
    subprocess.run([*cli, "simulate", *MENU_SIM_ARGS, "--out", str(menu_stream)], cwd=ROOT, env=env, check=True,
                   timeout=300)
    for use_case, source in (("infra", stream), ("store", stream), ("recon", stream), ("forecast", stream),
                             ("menu", menu_stream)):
        done = subprocess.run([*cli, "replay", use_case, "--input", str(source), "--output", str(work / use_case)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
    try:
        yield url
    finally:
        _mysql_exec(mysql_server_url, f"DROP DATABASE IF EXISTS `{name}`")


def _data_end(url: str) -> datetime:
    """'now' for the dashboards' relative time ranges: the last event the replay wrote."""
    _columns, rows = run(url, "SELECT GREATEST((SELECT MAX(last_event) FROM recon_orders), "
                              "(SELECT MAX(minute) FROM infra_metric_rollups))")
    return rows[0][0].replace(tzinfo=UTC)


@pytest.mark.integration
def test_the_menu_stream_fires_the_alert_the_menu_panels_show(replayed_db: str) -> None:
    """Otherwise the menu alerts panel and annotations would pass the next test by being rightly empty."""
    _columns, rows = run(replayed_db, "SELECT rule, JSON_UNQUOTE(JSON_EXTRACT(entity, '$.spu')) FROM alerts "
                                      "WHERE use_case = 'menu'")
    assert ("MARGIN_EROSION", "SPU0001") in {tuple(row) for row in rows}, rows


@pytest.mark.integration
@pytest.mark.parametrize("file_name", sorted(dashboards.DASHBOARDS))
def test_every_mysql_panel_reads_what_the_worker_writes(replayed_db: str, file_name: str) -> None:
    board = boards()[file_name]
    now = _data_end(replayed_db)
    grafana = GrafanaSQL(relative(board["time"]["from"], now), now, 300)
    choose_variables(lambda sql: run(replayed_db, sql)[1], board, grafana)
    whole_stream = GrafanaSQL(now - timedelta(days=30), now, 300)
    whole_stream.variables = grafana.variables
    _columns, alerted = run(replayed_db, "SELECT DISTINCT use_case FROM alerts")
    alerted_use_cases = {row[0] for row in alerted}
    _columns, rules = run(replayed_db, "SELECT DISTINCT use_case, rule FROM alerts")
    alerted_rules = {tuple(row) for row in rules}
    panel_rows: dict[str, int] = {}
    for title, fmt, raw, time_from in sql_targets(board):
        only_alerts = re.search(r"\bFROM alerts\b", raw) and not re.search(r"\bJOIN\b", raw)
        expander = whole_stream if only_alerts else grafana
        if time_from:  # the panel's own "relative time", e.g. today for the intraday chart
            expander = GrafanaSQL(relative(f"now-{time_from}", now), now, 300)
            expander.variables = grafana.variables
        sql = expander.expand(raw)
        columns, rows = run(replayed_db, sql)
        panel_rows.setdefault(title, 0)
        panel_rows[title] += len(rows)
        if title.startswith("annotation"):
            assert columns[:4] == ["time", "timeend", "text", "tags"], (title, columns)
        if not rows and SHOWS_SIGNALS_OF.get(title, "-") not in alerted_use_cases | {"-"}:
            panel_rows[title] += 1  # no store signal in this stream: empty is right
            continue
        if not rows:
            use_case = re.search(r"use_case = '(\w+)'", raw)
            rule = re.search(r"rule = '(\w+)'", raw)
            if rule is not None and use_case is not None and (use_case.group(1), rule.group(1)) not in alerted_rules:
                panel_rows[title] += 1  # e.g. no EXHAUSTION in this stream: empty is right
                continue
            if not (not only_alerts or use_case is None or use_case.group(1) in alerted_use_cases):
                panel_rows[title] += 1  # no such alert in this stream: empty is right
            continue
        if fmt == "time_series":
            assert "time" in columns, f"{title}: a time series needs a time column: {columns}"
            values = [c for c in columns if c not in ("time", "metric")]
            assert values, f"{title}: no value column"
            first = dict(zip(columns, rows[0], strict=True))
            assert isinstance(first["time"], datetime | int | float), (title, first)
            assert any(isinstance(first[c], int | float) or first[c] is None or hasattr(first[c], "as_integer_ratio")
                       or str(first[c]).replace(".", "", 1).lstrip("-").isdigit() for c in values), (title, first)
            if "metric" in columns:
                assert isinstance(first["metric"], str), (title, first)
        plan_columns, plan = run(replayed_db, "EXPLAIN " + sql)
        for step in (dict(zip(plan_columns, row, strict=True)) for row in plan):
            if step.get("table") in PER_POINT_TABLES:
                assert step.get("possible_keys") or step.get("key"), f"{title}: full scan of {step['table']}"
    empty = [title for title, count in panel_rows.items() if not count]
    assert not empty, f"{file_name}: panels with no rows on the simulated stream: {empty}"


# ------------------------------------------------------------------ Prometheus panels, for real

def prometheus_exprs() -> list[tuple[str, str]]:
    return [(f"{board['uid']}: {panel['title']}", target["expr"]) for board in boards().values()
            for panel in all_panels(board) for target in panel.get("targets", ())
            if target.get("datasource", {}).get("type") == "prometheus"]


def _concrete(expr: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace("$__range", "10m").replace("$__interval", "15s")


RULES = ROOT / "deploy" / "prometheus" / "rules.yml"


def recording_rules() -> set[str]:
    return {rule["record"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
            if "record" in rule}


def rules_read(expr: str) -> set[str]:
    """The recording rules an expression reads (names with a colon; quoted strings left out)."""
    return set(re.findall(r"\b[a-zA-Z_]\w*:[\w:]+", re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)))


def test_every_recording_rule_a_panel_reads_is_defined_in_rules_yml() -> None:
    defined = recording_rules()
    read = {rule: title for title, expr in prometheus_exprs() for rule in rules_read(expr)}
    assert len(read) >= 10, read
    assert set(read) <= defined, {rule: read[rule] for rule in set(read) - defined}


def test_panels_read_rates_and_quantiles_from_the_recording_rules() -> None:
    """Rates and quantiles are the recording rules' (computed once by Prometheus, the same figures as the
    alerts); a panel reads a raw series only for an instant gauge or a total over the time range."""
    raw = [(title, expr) for title, expr in prometheus_exprs()
           if re.search(r"\b(i?rate|histogram_quantile)\(", expr)
           or re.search(r"\bincrease\([^)]*\[(?!\$__range\])", expr)]
    assert not raw, raw
    assert rules_read('sum(spcwatch:a:rate5m{topic=~"x:y"}) / up') == {"spcwatch:a:rate5m"}


def test_promtool_parses_every_prometheus_panel(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed (Debian package prometheus; .ci/run and make test install it)"
    exprs = prometheus_exprs()
    assert len(exprs) >= 10
    rules = {"groups": [{"name": "panels", "rules": [
        {"record": f"panel:{i}", "expr": _concrete(expr)} for i, (_title, expr) in enumerate(exprs)]}]}
    path = tmp_path / "panels.yml"
    path.write_text(yaml.safe_dump(rules))
    done = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.integration
def test_every_prometheus_panel_returns_series_from_a_real_prometheus(tmp_path: Path, make_worker,  # type: ignore[no-untyped-def]
                                                                      kafka_bootstrap: str, topic_prefix: str) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (Debian package prometheus; .ci/run and make test install it)"
    worker = make_worker(SPCWATCH_INFRA_INTERVAL_SECONDS="300")
    worker.start()
    env = {**worker.env}
    done = subprocess.run([sys.executable, "-m", "stream_app.cli", "simulate", "--speed", "max", "--history-days", "1",
                           "--infra-history-days", "0", "--duration", "1h", "--scenario", "all", "--seed", "4",
                           "--quiet"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(f"global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nrule_files: ['{RULES}']\n"
                      f"scrape_configs:\n  - job_name: spcwatch-worker\n"
                      f"    static_configs: [{{targets: ['127.0.0.1:{worker.port}']}}]\n")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def query(expr: str) -> list[Any]:
        url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.parse.quote(expr)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return orjson.loads(response.read())["data"]["result"]

    try:
        missing: list[str] = []
        deadline = time.monotonic() + 180  # a loaded machine (two test workers) needed more than 90 s
        while time.monotonic() < deadline:
            time.sleep(2)
            try:
                missing = [title for title, expr in prometheus_exprs() if not query(_concrete(expr))]
            except OSError:
                continue
            if not missing:
                break
        assert not missing, f"Prometheus panels without series: {missing}"
    finally:
        proc.terminate()
        proc.wait(20)
