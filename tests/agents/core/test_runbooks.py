"""Runbooks and summary_zh: every rule a use case can emit has both, in both languages."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from agents.core import runbooks
from agents.core.alerts import Alert

ROOT = Path(__file__).resolve().parents[3]
RULE_ID = re.compile(r"^[A-Z][A-Z0-9_]{1,}$")
NOT_RULES = {"ALL", "UNKNOWN", "USD", "NZD"}


def literal_rules(path: Path) -> set[str]:
    """Rule ids a detector module writes literally: ``rule="X"``, ``"rule": "X"``, and the rule
    argument of its alert helpers (``self._alert(aid, status, "X", ...)``)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.keyword) and node.arg == "rule" and isinstance(node.value, ast.Constant):
            found.add(node.value.value)
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "rule" and isinstance(v, ast.Constant):
                    found.add(v.value)
        elif isinstance(node, ast.Call):
            name = getattr(node.func, "attr", None) or getattr(node.func, "id", "")
            if "alert" in name.lower():
                found.update(a.value for a in node.args[:3] if isinstance(a, ast.Constant)
                             and isinstance(a.value, str) and RULE_ID.match(a.value))
    return {r for r in found if isinstance(r, str) and RULE_ID.match(r) and r not in NOT_RULES}


def code_of(use_case: str) -> list[Path]:
    """The use case's processor and its model: a module, or a package of them (models/store/)."""
    return [p for p in (ROOT / "agents" / f"{use_case}.py", ROOT / "models" / f"{use_case}.py") if p.exists()] \
        + sorted((ROOT / "models" / use_case).glob("*.py"))


@pytest.mark.parametrize("use_case", runbooks.RULES_BY_USE_CASE)
def test_every_rule_the_detector_code_writes_is_one_its_use_case_can_emit(use_case: str) -> None:
    written = set().union(*(literal_rules(p) for p in code_of(use_case)))
    missing = written - set(runbooks.RULES_BY_USE_CASE[use_case])
    assert not missing, f"{use_case} code emits {sorted(missing)}: add them to runbooks.RULES_BY_USE_CASE"


def test_the_scan_finds_the_rules_of_the_store_code() -> None:
    # the scan itself must see something (a scan that finds nothing passes the test above vacuously)
    assert {"PEER", "INTRADAY"} <= set().union(*(literal_rules(p) for p in code_of("store")))
    assert ROOT / "models" / "store" / "chain.py" in code_of("store")
    assert "ABSENT" in literal_rules(ROOT / "agents" / "infra.py")


def test_the_contract_rule_families_are_all_covered() -> None:
    every = set().union(*runbooks.RULES_BY_USE_CASE.values())
    from models.forecast import RULES
    from models.recon import CATEGORIES
    from models.rules import RULE_IDS
    assert set(RULE_IDS) | set(RULES) | {f"RECON_{c.upper()}" for c in CATEGORIES} <= every
    assert {"ABSENT", "EXHAUSTION", "INTRADAY", "PEER", "MENU_CLASS_CHANGE", "MARGIN_EROSION",
            "DISCOUNT_DEPTH", "CUSUM"} <= every


@pytest.mark.parametrize("lang", runbooks.LANGUAGES)
def test_every_emittable_rule_has_a_complete_runbook_and_a_summary_template(lang: str) -> None:
    d = runbooks.data(lang)
    for use_case, rules in runbooks.RULES_BY_USE_CASE.items():
        assert use_case in d["use_case"], f"{lang}: no section for use case {use_case}"
        for rule in rules:
            assert rule in d["rule"], f"{lang}: no runbook for {rule}"
            page = runbooks.runbook(use_case, rule, lang)
            assert page is not None
            assert all(page[s].strip() for s in runbooks.SECTIONS), (lang, use_case, rule)
            assert "amtool silence add" in page["silence"]
            assert "SELECT" in page["checks"] or "spcwatch" in page["checks"]
    if lang == "zh":
        every = set().union(*runbooks.RULES_BY_USE_CASE.values())
        assert not every - set(d["summary"]), "rules without a summary_zh template"


def test_the_chinese_pages_are_chinese_and_the_english_ones_english() -> None:
    zh = runbooks.render_html("store", "WE4", "zh")
    en = runbooks.render_html("store", "WE4", "en")
    assert zh is not None and en is not None
    assert "连续 8 点" in zh and "业务含义" in zh and 'lang="zh-Hans"' in zh
    assert "Eight consecutive values" in en and "What it means for the business" in en
    assert runbooks.render_html("store", "NOPE") is None
    assert runbooks.render_html("forecast", "WE1") is None  # forecast runs no control chart


def test_recon_page_names_its_rule_in_the_silence_command() -> None:
    page = runbooks.runbook("recon", "RECON_MISSING_PAYMENT")
    assert page is not None and "alertname=RECON_MISSING_PAYMENT" in page["silence"]


def _alert(**kw: object) -> Alert:
    base: dict[str, object] = dict(alert_id="a1", status="firing", severity="warning", use_case="store",
                                   rule="WE1", entity={"store_id": "US00001", "metric": "net_revenue"},
                                   starts_at=1_770_000_000.0, summary="US00001 net_revenue out of control",
                                   value=812.5, center=1650.0, lower=1100.0, upper=2200.0, zscore=-4.6)
    base.update(kw)
    return Alert(**base)  # type: ignore[arg-type]


def test_summary_zh_and_runbook_url_are_filled_centrally() -> None:
    event = _alert().with_defaults("http://worker:6066").to_event()
    assert event["summary_zh"] == ("门店 US00001 的 net_revenue = 812.5，超出 3σ 控制限"
                                   "（1100 ～ 2200，中心 1650，z = -4.6）")
    assert event["runbook_url"] == "http://worker:6066/runbooks/store/WE1"
    configured = _alert(runbook_url="https://wiki/x").with_defaults("http://worker:6066")
    assert configured.runbook_url == "https://wiki/x"
    resolved = _alert().resolved(1_770_086_400.0).with_defaults("http://w").to_event()
    assert resolved["summary_zh"].startswith("已恢复：门店 US00001")


def test_summary_zh_of_chain_recon_and_forecast_alerts() -> None:
    chain = _alert(entity={"metric": "orders", "peer_group": "all"}, rule="PEER")
    assert chain.chinese_summary().startswith("全连锁（all）的 orders = 812.5")
    recon = _alert(use_case="recon", rule="RECON_UNIT_SCALE_MISMATCH", center=None, lower=None, upper=None,
                   zscore=None, entity={"store_id": "US00002", "order_id": "1000231"}, value=1240.0)
    assert recon.chinese_summary() == "门店 US00002 订单 1000231：金额单位不一致（分与元相差 100 倍，金额 1240）"
    forecast = _alert(use_case="forecast", rule="MAPE_CRITICAL", entity={"store_id": "US00001"}, value=0.42)
    assert forecast.chinese_summary() == "门店 US00001 的需求预测：MAPE = 0.42，超过严重阈值"
    absent = _alert(use_case="infra", rule="ABSENT", value=None,
                    entity={"resource_id": "db-04", "resource_type": "rds"})
    assert absent.chinese_summary() == "资源 db-04 停止上报数据"
