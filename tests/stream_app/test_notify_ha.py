"""An HA pair: a real clustered Alertmanager pair (two processes gossiping, each with its own
storage) started by ``scripts/services.sh``, a real worker forwarding every alert to both
(``SPCWATCH_ALERTMANAGER_URL=a,b``, as Prometheus does) and one webhook receiver behind them.

Each member gets every alert; the cluster's notification log makes it one notification per
episode and receiver. With one member down, the other keeps getting every alert in time: the
down member's queue is bounded (``SPCWATCH_ALERTMANAGER_QUEUE_MAX``, small here) and sheds its
oldest entries, counted as ``dropped``; when it is back its backlog drains and the re-sends
bring back the firing alerts it was not given.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from agents.core.alerts import Alert
from tests.conftest import free_port
from tests.notify_support import LEASE, Alertmanager, Receiver, am_test_config, publish, wait_for

pytestmark = pytest.mark.integration

QUEUE_MAX = 3
PEER_TIMEOUT = 2.0
"""--cluster.peer-timeout: the second member waits this long for the first one's notification to
gossip before sending its own (15 s by default); fast gossip so the pair settles in ~2 s."""
CLUSTER_ARGS = (f"--cluster.peer-timeout={PEER_TIMEOUT:g}s --cluster.gossip-interval=50ms "
                "--cluster.pushpull-interval=2s --cluster.probe-interval=200ms")


def series(worker: Any, name: str) -> list[dict[str, str]]:
    """The label sets of the samples ``name`` on the worker's /metrics (present, whatever their value)."""
    from prometheus_client.parser import text_string_to_metric_families

    status, body = worker.get("/metrics")
    assert status == 200
    return [s.labels for f in text_string_to_metric_families(body) for s in f.samples if s.name == name]


def test_each_member_gets_every_alert_and_one_down_does_not_hold_back_the_other(  # type: ignore[no-untyped-def]
        tmp_path: Path, make_worker, kafka_bootstrap: str, topic_prefix: str) -> None:
    receiver = Receiver()
    config = tmp_path / "alertmanager.yml"
    config.write_text(am_test_config(receiver.port, receiver.port))  # the bridge's webhooks recorded too
    a = Alertmanager(tmp_path / "a", config, cluster_port=free_port(), args=CLUSTER_ARGS)
    b = Alertmanager(tmp_path / "b", config, cluster_port=free_port(), peers=(a.gossip,), args=CLUSTER_ARGS)
    a.services("up")
    try:
        b.services("up")

        def clustered() -> bool:
            return all(m.api("/status")["cluster"]["status"] == "ready"
                       and len(m.api("/status")["cluster"]["peers"]) == 2 for m in (a, b))

        wait_for("the pair clustered", clustered, debug=lambda: f"{a.api('/status')}\n{b.api('/status')}")
        _run(receiver, a, b, make_worker, kafka_bootstrap, f"{topic_prefix}alerts")
    finally:
        b.services("down")
        a.services("down")
        receiver.server.shutdown()


def _run(receiver: Receiver, a: Alertmanager, b: Alertmanager, make_worker: Any, bootstrap: str,
         topic: str) -> None:
    worker = make_worker(SPCWATCH_ALERTMANAGER_URL=f"{a.url},{b.url}", SPCWATCH_ALERTMANAGER_QUEUE_MAX=str(QUEUE_MAX),
                         **LEASE)
    worker.start()
    base = f"http://127.0.0.1:{worker.port}"
    now = time.time()

    def send(*alerts: Alert) -> None:
        publish(bootstrap, topic, [x.with_defaults(base).to_event() for x in alerts])

    def metric(name: str, member: Alertmanager, status: str | None = None) -> float:
        labels = {"receiver": member.url} | ({"status": status} if status else {})
        return worker.metric(name, labels)

    def notified() -> Counter[tuple[str, str]]:
        return Counter((x["labels"]["alert_id"], x["status"]) for x in receiver.webhook_alerts("ops-oncall"))

    def held(member: Alertmanager) -> Any:
        try:
            return [x["labels"]["alert_id"] for x in member.api("/alerts")]
        except OSError as exc:
            return f"({exc})"

    def debug() -> str:
        return f"notified: {notified()}\nworker:\n{worker.log_tail(30)}\na: {held(a)}\nb: {held(b)}"

    def cpu(aid: str, i: int) -> Alert:
        return Alert(alert_id=aid, status="firing", severity="warning", use_case="infra", rule="WE1",
                     entity={"resource_id": f"ha-{i:02d}", "metric": "CPUUtilization"}, starts_at=now - 60,
                     summary=f"ha-{i:02d} CPUUtilization out of control", value=97.0)

    # Every notifier series is exported, at 0, before the first alert (rate() and absent() work).
    for member in (a, b):
        for status in ("sent", "failed", "dropped"):
            assert {"receiver": member.url, "status": status} in series(worker, "spcwatch_notifications_total")
        assert {"receiver": member.url} in series(worker, "spcwatch_notification_queue")
        assert {"receiver": member.url} in series(worker, "spcwatch_notification_latency_seconds_count")
        assert metric("spcwatch_notifications_total", member) == 0

    # -- both up: each member gets every alert; one notification per episode through the cluster.
    f1, f2 = cpu("ha-f1", 1), cpu("ha-f2", 2)
    send(f1, f2)
    wait_for("both alerts in both members", lambda: all(m.alert(x.alert_id) for m in (a, b) for x in (f1, f2)),
             debug=debug)
    assert a.alert("ha-f1")["labels"] == b.alert("ha-f1")["labels"]
    send(f1.resolved(now), f2.resolved(now))
    wait_for("both episodes notified, firing and resolved", lambda: set(notified()) == {
        (x, s) for x in ("ha-f1", "ha-f2") for s in ("firing", "resolved")}, debug=debug)

    # -- b down. A resolved alert nobody saw firing (no notification, nothing to re-send) makes the
    # worker find out; then more alerts than b's queue holds: a still gets every one of them.
    b.services("down")
    send(Alert(alert_id="ha-probe", status="resolved", severity="warning", use_case="infra", rule="WE1",
               entity={"resource_id": "ha-probe", "metric": "CPUUtilization"}, starts_at=now - 60, ends_at=now,
               summary="probe"))
    wait_for("the worker finding b down", lambda: metric("spcwatch_notifications_total", b, "failed") > 0,
             debug=debug)
    down = [cpu(f"ha-d{i}", 10 + i) for i in range(6)]
    send(*down)
    expected = {(x.alert_id, "firing") for x in down}
    wait_for("every alert notified through a alone", lambda: expected <= set(notified()), debug=debug)
    send(down[0].resolved(time.time()))  # the 7th event while b is down
    expected.add(("ha-d0", "resolved"))
    wait_for("its resolution notified through a alone", lambda: expected <= set(notified()), debug=debug)
    wait_for("b's queue full", lambda: metric("spcwatch_notification_queue", b) == QUEUE_MAX + 1, debug=debug)
    # b holds the probe (the batch being retried) and its QUEUE_MAX newest events; the 4 oldest were shed.
    assert metric("spcwatch_notification_queue", b) == QUEUE_MAX + 1
    assert metric("spcwatch_notifications_total", b, "dropped") == 7 - QUEUE_MAX
    assert metric("spcwatch_notifications_total", a, "dropped") == 0
    assert metric("spcwatch_notification_queue", a) == 0  # nothing waits for a, though b's queue is full
    sent_b = metric("spcwatch_notifications_total", b, "sent")
    assert metric("spcwatch_notification_latency_seconds_count", b) == sent_b

    # -- b back: its backlog drains, and the re-sends bring back the firing alerts it was not given.
    b.services("up")
    firing = {x.alert_id for x in down[1:]}
    wait_for("b holding every firing alert again",
             lambda: firing <= {x["labels"]["alert_id"] for x in b.api("/alerts?active=true")}, debug=debug)
    wait_for("b's backlog drained", lambda: metric("spcwatch_notification_queue", b) == 0, debug=debug)
    assert metric("spcwatch_notifications_total", b, "sent") >= sent_b + 1 + QUEUE_MAX
    assert metric("spcwatch_notifications_total", b, "dropped") == 7 - QUEUE_MAX  # re-sends never shed
    assert "ha-d0" not in {x["labels"]["alert_id"] for x in b.api("/alerts?active=true")}
    for member in (a, b):
        assert metric("spcwatch_notification_latency_seconds_count", member) == \
            metric("spcwatch_notifications_total", member, "sent")
    # b, back in the cluster, had the notification log gossiped to it: it notifies nothing again.
    time.sleep(PEER_TIMEOUT + 2)  # longer than b's group_wait plus its wait for its peer
    counts = notified()
    assert set(counts) == {(x, s) for x in ("ha-f1", "ha-f2") for s in ("firing", "resolved")} | expected, counts
    assert set(counts.values()) == {1}, counts
