"""Alerts reach people: a real worker forwards the ``alerts`` topic (real Kafka) to a real
Alertmanager started by ``scripts/services.sh`` with the repository's config; a local HTTP
receiver stands in for the webhook and for WeCom (robot webhook and application API), which
these machines cannot reach. Only the timings of the config are shortened (group_wait,
group_interval, resolve_timeout) and the receivers' addresses pointed at the local ones.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agents.core import runbooks
from agents.core.alerts import Alert
from tests.conftest import ROOT, free_port
from tests.notify_support import LEASE, Alertmanager, Receiver, am_test_config, publish, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Receiver, Alertmanager, subprocess.Popen[str], Path]]:
    receiver = Receiver()
    bridge_port = free_port()
    bridge_log = tmp_path / "bridge.log"
    with bridge_log.open("w") as out:
        bridge = subprocess.Popen(
            [sys.executable, "-m", "stream_app.cli", "wecom-bridge", "--port", str(bridge_port),
             "--robot", f"store-ops=http://127.0.0.1:{receiver.port}/cgi-bin/webhook/send?key=store",
             "--default-robot", f"http://127.0.0.1:{receiver.port}/cgi-bin/webhook/send?key=default"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, text=True)
    config = tmp_path / "alertmanager.yml"
    config.write_text(am_test_config(receiver.port, bridge_port))
    am = Alertmanager(tmp_path / "run", config)
    am.services("up")
    wait_for("the bridge", lambda: "listening" in bridge_log.read_text() or bridge.poll() is not None)
    assert bridge.poll() is None, bridge_log.read_text()
    try:
        yield receiver, am, bridge, bridge_log
    finally:
        bridge.terminate()
        bridge.wait(10)
        am.services("down")
        receiver.server.shutdown()


def test_alerts_reach_people_through_a_real_alertmanager(stack, make_worker, kafka_bootstrap: str,  # type: ignore[no-untyped-def]
                                                         topic_prefix: str) -> None:
    receiver, am, _bridge, bridge_log = stack
    worker = make_worker(SPCWATCH_ALERTMANAGER_URL=am.url, **LEASE)
    worker.start()
    base = f"http://127.0.0.1:{worker.port}"
    topic = f"{topic_prefix}alerts"
    now = time.time()

    def send(*alerts: Alert) -> None:
        publish(kafka_bootstrap, topic, [a.with_defaults(base).to_event() for a in alerts])

    def debug() -> str:
        return (f"receiver: {receiver.posts}\nworker:\n{worker.log_tail(30)}\nbridge:\n{bridge_log.read_text()}\n"
                f"alertmanager: {am.api('/alerts')}")

    # -- firing, then resolved: the webhook gets the labels and annotations; the robot its markdown
    cpu = Alert(alert_id="am-cpu-1", status="firing", severity="warning", use_case="infra", rule="WE1",
                entity={"resource_id": "db-01", "metric": "CPUUtilization", "labels": {"az": "us-east-1a"}},
                starts_at=now - 120, summary="db-01 CPUUtilization = 97.2 beyond 69.7", value=97.2, center=41.0,
                lower=12.3, upper=69.7, zscore=5.9)
    send(cpu)
    (got,) = wait_for("the firing alert at the webhook", lambda: receiver.webhook_alerts("ops-oncall"),
                      debug=debug)
    assert got["status"] == "firing"
    assert got["labels"] == {"alertname": "WE1", "use_case": "infra", "severity": "warning", "alert_id": "am-cpu-1",
                             "resource_id": "db-01", "metric": "CPUUtilization"}
    ann = got["annotations"]
    assert ann["summary"] == cpu.summary and ann["summary_zh"] == cpu.with_defaults(base).summary_zh
    assert ann["summary_zh"].startswith("资源 db-01 的 CPUUtilization")
    assert ann["runbook_url"] == f"{base}/runbooks/infra/WE1"
    assert (ann["value"], ann["center"], ann["lower"], ann["upper"], ann["zscore"]) == \
        ("97.2", "41", "12.3", "69.7", "5.9")
    assert "db-01" in ann["description"] and "WE1" in ann["description"]
    assert got["generatorURL"] == f"{base}/alerts/am-cpu-1"
    assert got["startsAt"].startswith(time.strftime("%Y-%m-%dT%H:%M", time.gmtime(now - 120)))
    # The runbook link of the notification opens, in English and in Chinese.
    with urllib.request.urlopen(ann["runbook_url"], timeout=10) as resp:
        assert runbooks.runbook("infra", "WE1", "en")["title"] in resp.read().decode()
    with urllib.request.urlopen(ann["runbook_url"] + "?lang=zh", timeout=10) as resp:
        assert runbooks.runbook("infra", "WE1", "zh")["title"] in resp.read().decode()
    (robot,) = wait_for("the robot message", lambda: receiver.of("/cgi-bin/webhook/send?key=default"), debug=debug)
    assert set(robot) == {"msgtype", "markdown"} and robot["msgtype"] == "markdown"
    assert set(robot["markdown"]) == {"content"}
    content = robot["markdown"]["content"]
    assert ann["summary_zh"] in content and cpu.summary in content and ann["runbook_url"] in content
    assert len(content.encode()) <= 4096
    assert "notified ops-oncall: FIRING warning infra WE1 resource_id=db-01" in bridge_log.read_text()

    # Re-sent every second, each renewing its lease (endsAt) in Alertmanager; notified once.
    first_ends = am.alert("am-cpu-1")["endsAt"]
    wait_for("a re-send renewing the lease", lambda: am.alert("am-cpu-1")["endsAt"] > first_ends, debug=debug)
    assert am.alert("am-cpu-1")["status"]["state"] == "active"
    send(cpu.resolved(now))
    resolved = wait_for("the resolved alert at the webhook",
                        lambda: [a for a in receiver.webhook_alerts("ops-oncall") if a["status"] == "resolved"],
                        debug=debug)
    assert resolved[0]["labels"]["alert_id"] == "am-cpu-1" and resolved[0]["endsAt"].startswith(
        time.strftime("%Y-%m-%dT%H:%M", time.gmtime(now)))
    assert [a["status"] for a in receiver.webhook_alerts("ops-oncall")] == ["firing", "resolved"]

    # -- a silence created through the API suppresses; the chain-level store alert inhibits its
    # stores' alerts of that metric and day; critical pages through WeCom's application API.
    silence = am.api("/silences", {"matchers": [{"name": "store_id", "value": "US00009", "isRegex": False}],
                                   "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 60)),
                                   "endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600)),
                                   "createdBy": "test", "comment": "store closed"})
    day = now - 3600

    def store(aid: str, entity: dict[str, Any], severity: str = "warning") -> Alert:
        return Alert(alert_id=aid, status="firing", severity=severity, use_case="store", rule="WE1", entity=entity,
                     starts_at=day, summary=f"{aid} net_revenue out of control", value=1.0, center=2.0)

    chain = store("am-chain", {"metric": "net_revenue", "peer_group": "manhattan"}, "critical")
    send(chain)
    wait_for("the chain alert active", lambda: (am.alert("am-chain") or {}).get("status", {}).get("state") == "active")
    send(store("am-silenced", {"store_id": "US00009", "metric": "orders"}),
         store("am-inhibited", {"store_id": "US00003", "metric": "net_revenue"}),
         store("am-other-day", {"store_id": "US00004", "metric": "orders"}))
    wait_for("the silenced and inhibited alerts suppressed", lambda: all(
        (am.alert(a) or {}).get("status", {}).get("state") == "suppressed" for a in ("am-silenced", "am-inhibited")),
        debug=debug)
    assert am.alert("am-silenced")["status"]["silencedBy"] == [silence["silenceID"]]
    assert am.alert("am-inhibited")["status"]["inhibitedBy"]
    wait_for("the store alert nobody suppressed", lambda: [
        a for a in receiver.webhook_alerts("store-ops") if a["labels"]["alert_id"] == "am-other-day"], debug=debug)
    wechat = wait_for("the critical chain alert paged through WeCom's application API",
                      lambda: receiver.of("/cgi-bin/message/send"), debug=debug)
    assert wechat[0]["msgtype"] == "markdown" and wechat[0]["toparty"] == "3" and wechat[0]["agentid"] == "1000002"
    assert "am-chain net_revenue out of control" in wechat[0]["markdown"]["content"]
    store_ids = {a["labels"]["alert_id"] for a in receiver.webhook_alerts("store-ops")}
    assert store_ids == {"am-chain", "am-other-day"}
    assert receiver.of("/cgi-bin/webhook/send?key=store")  # the store-ops robot of its own

    # -- Alertmanager down for 30 s (the outage): the forwarder retries with backoff (0.5 s
    # doubling to 30 s), queues what it cannot send, then everything arrives.
    down_since = time.monotonic()
    am.services("down")
    down = [Alert(alert_id=f"am-down-{i}", status="firing", severity="warning", use_case="recon",
                  rule="RECON_MISSING_PAYMENT", entity={"store_id": f"US0001{i}", "category": "missing_payment"},
                  starts_at=now, summary=f"missing payments at US0001{i}", value=3.0) for i in range(3)]
    send(*down)
    wait_for("failed attempts while Alertmanager is down",
             lambda: worker.metric("spcwatch_notifications_total", {"status": "failed"}) > 0, debug=debug)
    assert worker.metric("spcwatch_notification_queue") > 0
    time.sleep(max(0.0, 30.0 - (time.monotonic() - down_since)))
    assert worker.metric("spcwatch_notification_queue") > 0  # still queued after 30 s, nothing dropped
    am.services("up")
    wait_for("every alert after Alertmanager returned", lambda: {
        a["labels"]["alert_id"] for a in receiver.webhook_alerts("finance")} == {a.alert_id for a in down},
        debug=debug)
    # Alertmanager keeps alerts in memory only: the re-sends bring the firing ones back, and the
    # silence survived in its storage.
    wait_for("the firing alerts re-sent to the restarted Alertmanager",
             lambda: am.alert("am-silenced") and am.alert("am-chain"), debug=debug)
    assert am.alert("am-silenced")["status"]["silencedBy"] == [silence["silenceID"]]
    assert am.alert("am-cpu-1") is None or am.alert("am-cpu-1")["status"]["state"] != "active"  # resolved: not re-sent
    assert worker.metric("spcwatch_notifications_total", {"status": "sent"}) >= 8
    assert worker.metric("spcwatch_notification_latency_seconds_count") >= 8

    # -- worker SIGKILLed: alerts published meanwhile arrive after its restart, the firing ones are
    # still re-sent (state rebuilt from the table's changelog), and Alertmanager deduplicates the
    # repeats: one notification per episode and receiver.
    killed = time.time()
    worker.stop(signal.SIGKILL)
    absent = Alert(alert_id="am-absent", status="firing", severity="critical", use_case="infra", rule="ABSENT",
                   entity={"resource_id": "db-09", "resource_type": "rds"}, starts_at=now, summary="db-09 absent")
    value = Alert(alert_id="am-absent-value", status="firing", severity="warning", use_case="infra", rule="WE1",
                  entity={"resource_id": "db-09", "metric": "CPUUtilization"}, starts_at=now, summary="db-09 CPU",
                  value=99.0)
    send(absent, value)
    again = make_worker(SPCWATCH_ALERTMANAGER_URL=am.url, **LEASE)
    again.start()

    def debug_again() -> str:
        return f"{debug()}\nrestarted worker:\n{again.log_tail(40)}"

    # A restart recovers every table from its changelog before it forwards: on a loaded 2-core machine that
    # took longer than the 60 s the other steps wait (once in four fresh-clone runs), so this one waits 180 s.
    wait_for("the alerts published while the worker was dead", lambda: [
        a for a in receiver.webhook_alerts("ops-oncall") if a["labels"]["alert_id"] == "am-absent"],
        timeout=180.0, debug=debug_again)
    wait_for("ABSENT inhibiting the resource's value alert",
             lambda: (am.alert("am-absent-value") or {}).get("status", {}).get("inhibitedBy"), debug=debug)
    restarted = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(killed + 120))  # endsAt of a send after the kill
    for aid in ("am-chain", "am-other-day", "am-down-0", "am-absent"):  # re-sent by the new worker
        wait_for(f"{aid} re-sent after the restart", lambda aid=aid: am.alert(aid)["endsAt"] > restarted, debug=debug)
        assert am.alert(aid)["status"]["state"] == "active", aid
    notified = Counter((path, a["labels"]["alert_id"], a["status"]) for path, body in receiver.posts
                       if path.startswith("/am/") for a in body["alerts"])
    assert notified and set(notified.values()) == {1}, notified
