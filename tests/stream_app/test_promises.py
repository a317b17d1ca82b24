"""stream_app.promises: a promise is kept only by the right rule on the right entity in time."""

from __future__ import annotations

from datetime import UTC, datetime

from stream_app import promises
from stream_app.simgen import Expectation, Scenario

T0 = datetime(2026, 2, 17, 15, 0, tzinfo=UTC).timestamp()
HOUR = 3600.0
LOUD = Scenario("loud", "orders", "", HOUR, None, (Expectation("store", ("WE1",), {"store_id": "A"}, within=2 * HOUR),))
QUIET = Scenario("quiet", "orders", "", 0.0, None, (Expectation("store", (), {"store_id": "B"}),))


def alert(store: str, rule: str, at: float, status: str = "firing", severity: str = "warning") -> dict:
    when = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return {"alert_id": f"{store}{rule}{at}", "use_case": "store", "rule": rule, "status": status,
            "severity": severity, "entity": {"store_id": store, "metric": "orders"}, "starts_at": when,
            "ends_at": when}


def kept(alerts: list[dict]) -> list[bool]:
    return [v.kept for v in promises.check(alerts, T0, scenarios=[LOUD, QUIET])]


def test_in_time_late_wrong_rule_and_broken_silence() -> None:
    assert kept([alert("A", "WE1", T0 + 2 * HOUR)]) == [True, True]
    assert kept([alert("A", "WE1", T0 + 3.5 * HOUR)]) == [False, True]  # 2.5 h after the start
    assert kept([alert("A", "CUSUM", T0 + 2 * HOUR), alert("C", "WE1", T0 + 2 * HOUR)]) == [False, True]
    assert kept([alert("A", "WE1", T0 + 2 * HOUR), alert("B", "PEER", T0)]) == [True, False]
    assert kept([alert("A", "WE1", T0 + 2 * HOUR, status="resolved")]) == [False, True]


def test_pages_group_an_entitys_alerts_that_start_together_and_skip_info() -> None:
    alerts = [alert("A", "WE1", T0), alert("A", "CUSUM", T0), alert("A", "WE1", T0 + HOUR),
              alert("B", "MENU_CLASS_CHANGE", T0, severity="info")]
    pages = promises.pages_by_entity(alerts, "store", ("store_id",))
    assert {k: len(v) for k, v in pages.items()} == {("A",): 2}
    assert promises.touched("store", "store_id", scenarios=[LOUD, QUIET]) == {"A", "B"}
