"""The worker's /runbooks and /alerts pages, served by a real worker over a real MariaDB."""

from __future__ import annotations

import asyncio
import html
import urllib.request

import orjson
import pytest

from agents.core import runbooks
from agents.core.alerts import Alert
from stream_app.runtime import db
from stream_app.runtime.sink import Sink

pytestmark = pytest.mark.integration


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.headers.get("Content-Type", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


async def write_alert(url: str, alert: Alert) -> None:
    engine = db.create_engine(url)
    try:
        await Sink(engine).upsert("alerts", [alert.to_row()])
    finally:
        await engine.dispose()


def test_every_runbook_is_served_in_both_languages_and_alerts_with_their_history(make_worker, mysql_url: str) -> None:  # type: ignore[no-untyped-def]
    worker = make_worker(SPCWATCH_DB_URL=mysql_url)
    worker.start()
    port = worker.port
    for use_case, rules in runbooks.RULES_BY_USE_CASE.items():
        for rule in rules:
            en = runbooks.runbook(use_case, rule, "en")
            zh = runbooks.runbook(use_case, rule, "zh")
            assert en is not None and zh is not None
            status, ctype, body = get(port, f"/runbooks/{use_case}/{rule}")
            assert status == 200 and ctype.startswith("text/html"), (use_case, rule, status)
            assert html.escape(en["title"]) in body and 'lang="en"' in body
            status, _, body = get(port, f"/runbooks/{use_case}/{rule}?lang=zh")
            assert status == 200 and html.escape(zh["title"]) in body and 'lang="zh-Hans"' in body
    status, _, body = get(port, "/runbooks/store/WE4", {"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert status == 200 and "连续 8 点" in body
    status, _, body = get(port, "/runbooks/infra/we1")  # lower case: the links of older configs
    assert status == 200 and "Western Electric rule 1" in body
    for bad in ("/runbooks/store/NOPE", "/runbooks/nope/WE1", "/runbooks/forecast/WE1"):
        assert get(port, bad)[0] == 404, bad

    alert = Alert(alert_id="ab12", status="firing", severity="critical", use_case="infra", rule="WE1",
                  entity={"resource_id": "db-01", "metric": "CPUUtilization"}, starts_at=1_770_000_000.0,
                  summary="db-01 CPUUtilization = 97.2", value=97.2, center=41.0, lower=12.3, upper=69.7,
                  zscore=5.9).with_defaults(f"http://127.0.0.1:{port}")
    asyncio.run(write_alert(mysql_url, alert))
    status, _, body = get(port, "/alerts/ab12")
    assert status == 200
    doc = orjson.loads(body)
    assert doc["alert"]["status"] == "firing" and doc["alert"]["entity"]["resource_id"] == "db-01"
    assert doc["alert"]["summary_zh"].startswith("资源 db-01 的 CPUUtilization = 97.2")
    assert doc["alert"]["runbook_url"] == f"http://127.0.0.1:{port}/runbooks/infra/WE1"
    assert [h["status"] for h in doc["history"]] == ["firing"]
    asyncio.run(write_alert(mysql_url, alert.resolved(1_770_000_600.0)))
    doc = orjson.loads(get(port, "/alerts/ab12")[2])
    assert [h["status"] for h in doc["history"]] == ["firing", "resolved"]
    assert doc["history"][1]["at"].startswith("2026-02-02T02:50:00")
    assert get(port, "/alerts/nope")[0] == 404
