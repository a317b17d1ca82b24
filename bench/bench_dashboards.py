"""Query time of every MySQL dashboard panel over a month-sized estate: ``python -m bench.bench_dashboards``.

``spcwatch replay`` of the simulator (all scenarios, infra at 5-minute CloudWatch cadence, ~2,000 series)
fills a scratch MariaDB database with one day of infra history and eight of business data; the per-point
infra tables are then extended to ``SPCWATCH_BENCH_DASHBOARD_DAYS`` days (default 30) by copying that day
with shifted timestamps, so the panels meet the row counts of a month of the estate. Each panel's SQL,
expanded as Grafana does for the dashboard's default time range, runs ``RUNS`` times.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, timedelta
from pathlib import Path

import pymysql

from bench.common import MYSQL, ROOT, mysql_url, scratch_database
from stream_app import dashboards
from stream_app.dashboards.queries import GrafanaSQL, choose_variables, relative, sql_targets

DAYS = int(os.environ.get("SPCWATCH_BENCH_DASHBOARD_DAYS", "30"))
RUNS = 7
SIM_ARGS = ["--scenario", "all", "--history-days", "8", "--infra-history-days", "1", "--duration", "3h",
            "--start", "2026-11-01T00:00:00Z", "--seed", "3", "--quiet"]


def _fill(database: str, work: Path) -> dict[str, int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPCWATCH_")}
    env["SPCWATCH_DB_URL"] = mysql_url(database)
    cli = [sys.executable, "-m", "stream_app.cli"]
    stream = work / "simulated.jsonl"
    subprocess.run([*cli, "simulate", *SIM_ARGS, "--out", str(stream)], cwd=ROOT, env=env, check=True)
    subprocess.run([*cli, "db", "upgrade"], cwd=ROOT, env=env, check=True, capture_output=True)
    for use_case in ("infra", "store", "recon", "forecast"):
        subprocess.run([*cli, "replay", use_case, "--input", str(stream), "--output", os.devnull],
                       cwd=ROOT, env=env, check=True, capture_output=True)
    conn = pymysql.connect(**MYSQL, database=database, autocommit=True)
    copies = {"infra_anomaly_scores": ("ts", "series_id, ts, value, center, sigma, zscore, rules, status"),
              "infra_metric_rollups": ("minute", "series_id, minute, sample_count, value_mean, value_min, value_max"),
              "infra_health_scores": ("minute", "resource_id, minute, resource_type, score, firing_series, absent")}
    counts = {}
    with conn.cursor() as cur:
        for table, (column, columns) in copies.items():
            cur.execute(f"SELECT MIN({column}) FROM {table}")
            (first,) = cur.fetchone()
            for day in range(1, DAYS):
                shifted = columns.replace(column, f"{column} - INTERVAL {day} DAY", 1)
                cur.execute(f"INSERT IGNORE INTO {table} ({columns}) SELECT {shifted} FROM {table} "
                            f"WHERE {column} >= %s AND {column} < %s + INTERVAL 1 DAY", (first, first))
            cur.execute(f"ANALYZE TABLE {table}")
            cur.fetchall()
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            counts[table] = cur.fetchone()[0]
        cur.execute("SELECT COUNT(*) FROM infra_series")
        counts["infra_series"] = cur.fetchone()[0]
    conn.close()
    return counts


def _time_panels(database: str) -> list[tuple[str, str, float, float, int]]:
    conn = pymysql.connect(**MYSQL, database=database, autocommit=True)
    cur = conn.cursor()
    cur.execute("SET time_zone = '+00:00'")

    def query(sql: str) -> list[tuple]:  # type: ignore[type-arg]
        cur.execute(sql)
        return list(cur.fetchall())

    (now,) = query("SELECT GREATEST((SELECT MAX(last_event) FROM recon_orders), "
                   "(SELECT MAX(minute) FROM infra_metric_rollups))")[0]
    now = now.replace(tzinfo=UTC)
    results = []
    for text in dashboards.rendered().values():
        board = json.loads(text)
        grafana = GrafanaSQL(relative(board["time"]["from"], now), now, 300)
        choose_variables(query, board, grafana)
        for title, _fmt, raw, time_from in sql_targets(board):
            expander = grafana
            if time_from:
                expander = GrafanaSQL(now - timedelta(hours=int(time_from.rstrip("h"))), now, 300)
                expander.variables = grafana.variables
            sql = expander.expand(raw)
            times, rows = [], 0
            for _ in range(RUNS):
                started = time.perf_counter()
                rows = len(query(sql))
                times.append(time.perf_counter() - started)
            results.append((board["uid"], title, statistics.median(times), max(times), rows))
    conn.close()
    return results


def run() -> str:
    with scratch_database() as database, tempfile.TemporaryDirectory() as tmp:
        started = time.monotonic()
        counts = _fill(database, Path(tmp))
        fill_seconds = time.monotonic() - started
        results = _time_panels(database)
    lines = [
        "## Dashboard panel query time (MariaDB)",
        "",
        f"Every MySQL panel and annotation of `deploy/grafana/dashboards/` (generated by `stream_app/dashboards/`), "
        f"its SQL expanded as Grafana does for the dashboard's default time range and first variable values, "
        f"{RUNS} runs each on the local MariaDB (default 128 MB buffer pool), the worker's tables holding "
        f"{counts['infra_series']:,} infra series over {DAYS} days ({counts['infra_anomaly_scores']:,} score "
        f"rows, {counts['infra_metric_rollups']:,} rollup rows, {counts['infra_health_scores']:,} health rows) "
        f"and eight days of store, recon and forecast data from the simulator. Filling took {fill_seconds:.0f} s. "
        "p99 is the slowest of the runs.",
        "",
        "| dashboard | panel | median ms | p99 ms | rows |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    lines += [f"| `{uid}` | {title.replace('|', '/')} | {median * 1000:.1f} | {worst * 1000:.1f} | {rows:,} |"
              for uid, title, median, worst, rows in results]
    slowest = max(results, key=lambda r: r[3])
    lines += ["", f"Slowest: `{slowest[0]}` {slowest[1]!r}, {slowest[3] * 1000:.0f} ms."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
