"""The infrastructure dashboard's panels tell the story of a known fault (an injected spike, a silent host).

tests/stream_app/test_dashboards.py runs every panel on the simulator's stream; this one checks that
what the panels show is right, on input whose answer is known by construction.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stream_app import dashboards
from tests.infra_data import SILENT, replay, write_input
from tests.stream_app.test_dashboards import GrafanaSQL, run

pytestmark = pytest.mark.integration


def infra_sql(title: str) -> str:
    board = json.loads(dashboards.rendered()["uc-it-01-infra.json"])
    (sql,) = [t["rawSql"] for p in board["panels"] if p["title"] == title for t in p.get("targets", ())]
    return sql


def test_the_infra_dashboard_shows_the_silent_host_and_the_injected_fault(tmp_path: Path, mysql_url: str) -> None:
    input_path = tmp_path / "samples.jsonl"
    write_input(input_path, silent=SILENT)
    replay(tmp_path, mysql_url, input_path)  # the fault on db-01 and the silent db-04
    grafana = GrafanaSQL(datetime(2000, 1, 1, tzinfo=UTC), datetime(2035, 1, 1, tzinfo=UTC), 300)
    grafana.variables.update(resource_type="__all", resource="db-01", metric="CPUUtilization")
    _columns, worst = run(mysql_url, grafana.expand(infra_sql("Resources by health, worst first")))
    assert (worst[0][0], worst[0][2], worst[0][4]) == ("db-04", 0, "absent")  # resource_id, score, status
    _columns, absent = run(mysql_url, grafana.expand(infra_sql("Absent and retired resources")))
    assert [row[0] for row in absent] == ["db-04"]
    columns, beyond = run(mysql_url, grafana.expand(
        [t["rawSql"] for p in json.loads(dashboards.rendered()["uc-it-01-infra.json"])["panels"]
         if p["title"].startswith("$metric of $resource: value") for t in p["targets"]][1]))
    assert columns == ["time", "beyond"] and beyond  # db-01's injected fault is drawn beyond its limits
    _columns, band = run(mysql_url, grafana.expand(
        infra_sql("$metric of $resource: per-minute min / mean / max")))
    assert max(row[3] for row in band) == max(row[1] for row in beyond)
