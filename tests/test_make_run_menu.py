"""`make run` shows the menu scenario's alert (issue #17's "done when"): with its default 17 days of history
the chain's Latte (menu-cost-increase, from t0-2d) has a warm chart of its daily realised CM %, and the
cost increase fires MARGIN_EROSION in the live alert view and in the database.

The run is the session's one ``make run`` (tests/make_run.py), shared with tests/test_make_run.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from stream_app import simmenu
from stream_app.runtime import db
from tests.make_run import DEADLINE_SECONDS, MakeRun

pytestmark = pytest.mark.integration


def _stored(url: str, alert_id: str) -> dict | None:
    async def go() -> dict | None:
        engine = db.create_engine(url)
        try:
            async with engine.connect() as conn:
                result = await conn.exec_driver_sql(
                    "SELECT status, severity, use_case, rule, entity, summary FROM alerts WHERE alert_id = %s",
                    (alert_id,))
                row = result.mappings().first()
                return dict(row) if row else None
        finally:
            await engine.dispose()
    return asyncio.run(go())


def test_make_run_shows_and_stores_the_menu_scenarios_margin_erosion(make_run: MakeRun) -> None:
    run = make_run
    assert run.menu_alert is not None, (
        f"no MARGIN_EROSION of the chain's {simmenu.COST_ITEM} within {DEADLINE_SECONDS:.0f}s:\n"
        f"{run.output[-4000:]}\n--- worker log:\n{run.worker_log_tail()}")
    print(f"make run: the menu alert after {run.seconds_to_menu_alert:.0f}s")  # a figure, not a test
    assert run.menu_alert_id is not None
    row = _stored(run.db_url, run.menu_alert_id)
    assert row is not None, f"alert {run.menu_alert_id} shown but not in the database"
    assert (row["use_case"], row["rule"]) == ("menu", "MARGIN_EROSION")
    assert json.loads(row["entity"]) == {"category": "espresso", "spu": simmenu.spu_of(simmenu.COST_ITEM)}
    assert f"{simmenu.COST_ITEM} ({simmenu.spu_of(simmenu.COST_ITEM)}, espresso, chain)" in row["summary"]
    assert "realised CM % fell" in row["summary"]
