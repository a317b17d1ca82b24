"""The provisioned Grafana dashboard's MySQL panels, run against the tables the worker writes.

Grafana is not run here; its SQL is: a schema change that breaks a panel fails this test.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from stream_app import db
from tests.infra_data import SILENT, replay, write_input

pytestmark = pytest.mark.integration

DASHBOARD = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboards" / "spcwatch-overview.json"


def mysql_panels() -> dict[str, str]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return {panel["title"]: target["rawSql"] for panel in panels for target in panel.get("targets", ())
            if target.get("datasource", {}).get("type") == "mysql"}


def expand_macros(sql: str) -> str:
    """Grafana's ``$__timeFilter(column)``, for a time range covering everything."""
    expanded = re.sub(r"\$__timeFilter\((\w+)\)", r"\1 BETWEEN '2000-01-01' AND '2100-01-01'", sql)
    assert "$__" not in expanded, f"a Grafana macro this test does not know: {sql}"
    return expanded


async def run_query(url: str, sql: str) -> list[tuple]:  # type: ignore[type-arg]
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            return [tuple(row) for row in (await conn.exec_driver_sql(sql)).all()]
    finally:
        await engine.dispose()


def test_the_dashboards_mysql_panels_read_what_the_infra_worker_writes(tmp_path: Path, mysql_url: str) -> None:
    input_path = tmp_path / "samples.jsonl"
    write_input(input_path, silent=SILENT)
    replay(tmp_path, mysql_url, input_path)  # the fault on db-01 and the silent db-04
    panels = mysql_panels()
    assert {"Recent alerts", "Resources by health, worst first",
            "Points that fired a rule: |z| by series"} <= set(panels)
    results = {title: asyncio.run(run_query(mysql_url, expand_macros(sql))) for title, sql in panels.items()}
    assert all(results.values()), [title for title, rows in results.items() if not rows]
    worst = results["Resources by health, worst first"][0]
    assert (worst[0], worst[2], worst[4]) == ("db-04", 0, "absent")  # resource_id, score, status
    fired = results["Points that fired a rule: |z| by series"]
    assert min(z for _time, _metric, z in fired) >= 3.0  # WE1: beyond the 3-sigma limits
    assert max(fired, key=lambda row: row[2])[1] == "db-01 CPUUtilization"  # the injected fault stands out
