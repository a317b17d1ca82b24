"""deploy/alertmanager/ as a team adopts it (amtool), and the WeCom robot message's shape."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from agents.core.alerts import Alert
from stream_app import notify
from tests.conftest import ROOT

AM_CONFIG = ROOT / "deploy" / "alertmanager" / "alertmanager.yml"


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("amtool")
    assert tool, "amtool is not installed (Debian package prometheus-alertmanager; .ci/run installs it)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=30)


def test_the_alertmanager_config_is_valid() -> None:
    done = amtool("check-config", str(AM_CONFIG))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "4 inhibit rules" in done.stdout and "1 templates" in done.stdout


@pytest.mark.parametrize(("labels", "receiver"), [
    ("use_case=infra severity=warning", "ops-oncall"),
    ("use_case=infra severity=critical", "ops-oncall-page"),
    ("use_case=store severity=warning store_id=US00001", "store-ops"),
    ("use_case=store severity=critical", "store-ops-page"),
    ("use_case=recon severity=warning", "finance"),
    ("use_case=recon severity=critical", "finance-page"),
    ("use_case=forecast severity=warning", "supply-chain"),
    ("use_case=forecast severity=critical", "supply-chain-page"),
    ("use_case=menu severity=warning", "category-management"),
    ("use_case=menu severity=critical", "category-management-page"),
    ("alertname=SpcwatchWorkerDown severity=critical", "ops-oncall-page"),
    ("alertname=SpcwatchNotifierFailing severity=warning", "ops-oncall"),
])
def test_routes_by_use_case_and_severity(labels: str, receiver: str) -> None:
    done = amtool("config", "routes", "test", f"--config.file={AM_CONFIG}", f"--verify.receivers={receiver}",
                  *labels.split())
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == receiver


def payload(alerts: list[Alert], status: str = "firing") -> dict:
    base = "http://worker:6066"
    posted = [notify.to_alertmanager(a.with_defaults(base).to_event(), base) for a in alerts]
    return {"version": "4", "status": status, "receiver": "store-ops", "externalURL": "http://am:9093",
            "commonLabels": {"use_case": "store"},
            "alerts": [{**p, "status": status, "endsAt": p.get("endsAt", "0001-01-01T00:00:00Z")} for p in posted]}


def store_alert(i: int) -> Alert:
    return Alert(alert_id=f"a{i}", status="firing", severity="warning", use_case="store", rule="WE4",
                 entity={"store_id": f"US{i:05d}", "metric": "net_revenue"}, starts_at=1_770_000_000.0,
                 summary=f"US{i:05d} net_revenue: 8 days below the centre line", value=100.0, center=150.0)


def test_the_robot_message_is_wecoms_markdown_with_both_summaries_and_the_runbook() -> None:
    message = notify.robot_markdown(payload([store_alert(1)]))
    assert list(message) == ["msgtype", "markdown"] and message["msgtype"] == "markdown"
    content = message["markdown"]["content"]
    alert = store_alert(1).with_defaults("http://worker:6066")
    assert alert.summary in content and alert.summary_zh in content
    assert "(http://worker:6066/runbooks/store/WE4)" in content and "(http://worker:6066/alerts/a1)" in content
    assert "http://am:9093/#/silences/new?filter=" in content
    resolved = notify.robot_markdown(payload([store_alert(1)], "resolved"))["markdown"]["content"]
    assert "RESOLVED" in resolved and "silences/new" not in resolved


def test_a_long_notification_is_cut_to_the_robots_limit_and_says_how_many_are_left_out() -> None:
    content = notify.robot_markdown(payload([store_alert(i) for i in range(60)]))["markdown"]["content"]
    assert len(content.encode()) <= notify.ROBOT_CONTENT_MAX
    shown = content.count("/runbooks/store/WE4")
    assert 0 < shown < 60 and f"另有 {60 - shown} 条 / {60 - shown} more" in content


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is not installed (Debian package prometheus; .ci/run installs it)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, cwd=ROOT / "deploy" / "prometheus")


def test_the_worker_rules_are_valid_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", "rules.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", "rules_test.yml")
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
