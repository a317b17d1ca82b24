"""Bilingual runbooks and the Chinese alert summary (``summary_zh``), shipped with the package.

A runbook page is composed of two sections of one language's data file (``en.toml``,
``zh.toml``): the rule's (what fired, causes, rule-specific checks) and the use case's
(business meaning, first checks, silencing, resolution). So every rule a use case can
emit (:data:`RULES_BY_USE_CASE`, built from the detectors' own constants) has a page in
both languages, and the tests fail when a section is missing.
"""

from __future__ import annotations

import html
import math
import tomllib
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import quote

from models.forecast import RULES as FORECAST_RULES
from models.recon import CATEGORIES as RECON_CATEGORIES
from models.rules import RULE_IDS as SPC_RULES

LANGUAGES = ("en", "zh")
MENU_RULES = ("MENU_CLASS_CHANGE", "MARGIN_EROSION", "DISCOUNT_DEPTH")

RULES_BY_USE_CASE: dict[str, tuple[str, ...]] = {
    "infra": (*SPC_RULES, "ABSENT", "EXHAUSTION"),
    "store": (*SPC_RULES, "INTRADAY", "PEER", "ABSENT"),
    "forecast": tuple(FORECAST_RULES),
    "recon": (*SPC_RULES, *(f"RECON_{c.upper()}" for c in RECON_CATEGORIES)),
    "menu": (*MENU_RULES, *SPC_RULES),
}
"""Every rule id each use case can emit (the SPC family where a use case runs control charts)."""

SECTIONS = ("fired", "meaning", "causes", "checks", "silence", "resolves")


@cache
def data(lang: str) -> dict[str, Any]:
    """One language's runbook data (parsed once)."""
    if lang not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {lang!r}")
    return tomllib.loads(resources.files(__package__).joinpath(f"{lang}.toml").read_text("utf-8"))


def known(use_case: str, rule: str) -> bool:
    return rule in RULES_BY_USE_CASE.get(use_case, ())


def runbook(use_case: str, rule: str, lang: str = "en") -> dict[str, str] | None:
    """The sections of a rule's runbook for a use case, or None if the use case cannot emit it."""
    if not known(use_case, rule):
        return None
    d = data(lang)
    r, u = d["rule"][rule], d["use_case"][use_case]
    page = {
        "title": r["title"], "use_case": u["name"], "fired": r["fired"], "meaning": u["meaning"],
        "causes": f"{r['causes']}\n{u['causes']}" if r.get("causes") else u["causes"],
        "checks": "\n".join(c.strip("\n") for c in (r.get("checks"), u["checks"]) if c),
        "silence": u["silence"], "resolves": u["resolves"],
    }
    return {k: v.replace("<RULE>", rule) for k, v in page.items()}


def render_html(use_case: str, rule: str, lang: str = "en") -> str | None:
    """The runbook as a small, self-contained HTML page."""
    page = runbook(use_case, rule, lang)
    if page is None:
        return None
    d, e = data(lang), html.escape
    other = "en" if lang == "zh" else "zh"
    parts = [
        f'<!doctype html><html lang="{"zh-Hans" if lang == "zh" else "en"}"><head><meta charset="utf-8">',
        f"<title>{e(rule)} · {e(use_case)} · {e(d['title'])}</title>",
        "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto;padding:0 1em}"
        "pre{background:#f4f4f4;padding:.8em;overflow-x:auto}</style></head><body>",
        f'<p><a href="?lang={other}">{e(d["labels"]["other"])}</a></p>',
        f"<h1>{e(page['title'])}</h1><p>{e(page['use_case'])} · <code>{e(rule)}</code></p>",
    ]
    for section in SECTIONS:
        text = page[section]
        body = f"<pre>{e(text)}</pre>" if section in ("checks", "silence") else f"<p>{e(text)}</p>"
        parts.append(f'<h2 id="{section}">{e(d["labels"][section])}</h2>{body}')
    parts.append("</body></html>")
    return "\n".join(parts)


def runbook_url(base: str, use_case: str, rule: str) -> str:
    """``<base>/runbooks/<use_case>/<rule>``: the worker's own page unless a public base is set."""
    return f"{base.rstrip('/')}/runbooks/{quote(use_case)}/{quote(rule)}"


def _num(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.4g}" if isinstance(x, int | float) else str(x)


class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "—"


def summary_zh(use_case: str, rule: str, entity: dict[str, Any], status: str, value: float | None = None,
               center: float | None = None, lower: float | None = None, upper: float | None = None,
               zscore: float | None = None, rules: tuple[str, ...] = ()) -> str:
    """The Simplified Chinese summary of an alert, from the per-rule template of ``zh.toml``."""
    zh = data("zh")
    subjects = zh["subject"]
    key = use_case
    if use_case == "infra" and "metric" not in entity:
        key = "infra_resource"
    elif use_case == "store" and "store_id" not in entity:
        key = "store_chain"
    elif use_case == "forecast" and "sku" not in entity:
        key = "forecast_store"
    elif use_case == "recon" and "order_id" not in entity:
        key = "recon_daily"
    elif use_case == "menu" and "spu" not in entity:
        key = "menu_chain"
    flat = {k: str(v) for k, v in entity.items() if not isinstance(v, dict)}
    fields = _Fields(flat, entity=", ".join(f"{k}={v}" for k, v in flat.items()))
    if fields.get("store_id") == "ALL":
        fields["store_id"] = "全连锁"
    subject = subjects.get(key, subjects["default"]).format_map(fields)
    template = zh["summary"].get(rule, zh["summary"]["default"])
    text = template.format_map(_Fields(
        subject=subject, value=_num(value), center=_num(center), lower=_num(lower), upper=_num(upper),
        z=_num(zscore), rules="、".join(rules or (rule,))))
    return f"已恢复：{text}" if status == "resolved" else text
