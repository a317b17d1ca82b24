"""``spcwatch menu report``: UC-PR-01's matrix, pairs and recommendations for one day, from the database.

Reads what the menu use case wrote (``menu_matrix``, ``menu_pairs``, ``menu_item_daily``; sql/0007_menu.sql)
and gives JSON or one self-contained HTML page (charts by plotly, its JavaScript inlined, so the file opens
anywhere without a network). The recommendations' rules are in docs/menu.md.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import MetaData, Table, and_, select
from sqlalchemy.ext.asyncio import AsyncEngine

CLASSES = ("star", "plowhorse", "puzzle", "dog")
LABELS = 7  # items named on a category's scatter (the best sellers; the others on hover)
CLASS_COLOURS = {"star": "#2a9d8f", "plowhorse": "#e9c46a", "puzzle": "#457b9d", "dog": "#e76f51"}


@dataclass(frozen=True, slots=True)
class Rules:
    """Thresholds of the recommendations (docs/menu.md, "Recommendations")."""

    watch_mix_drop: float = 0.10  # a star or plowhorse whose menu mix fell by 10 % (relative) over 7 days
    watch_cm_drop: float = 0.05  # ... or whose CM per unit fell by 5 %
    watch_wow: float = -0.20  # ... or whose units fell 20 % week over week
    bundle_min_lift: float = 1.2
    bundles: int = 6


class ReportError(ValueError):
    """Nothing to report (no such day, scope or window in the database): one line for the user."""


def _f(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


async def _tables(engine: AsyncEngine, names: Iterable[str]) -> dict[str, Table]:
    md = MetaData()
    async with engine.connect() as conn:
        return {n: await conn.run_sync(lambda sync, n=n: Table(n, md, autoload_with=sync)) for n in names}


async def _select(engine: AsyncEngine, table: Table, *where: Any) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        result = await conn.execute(select(table).where(and_(*where)))
        return [dict(r._mapping) for r in result]


async def build(engine: AsyncEngine, as_of: date, window_days: int, scope: str, rules: Rules | None = None
                ) -> dict[str, Any]:
    """The report as a JSON-able dict (shape in docs/menu.md); :class:`ReportError` when there is no matrix."""
    rules = rules or Rules()
    try:
        t = await _tables(engine, ("menu_matrix", "menu_pairs", "menu_item_daily"))
    except Exception as exc:  # not migrated, or another database
        raise ReportError(f"no menu tables in the database ({type(exc).__name__}): run the worker or "
                          "`spcwatch replay menu` first") from None
    m, p, d = t["menu_matrix"], t["menu_pairs"], t["menu_item_daily"]
    rows = await _select(engine, m, m.c.scope == scope, m.c.window_days == window_days, m.c.business_date == as_of)
    if not rows:
        days = await _select(engine, m, m.c.scope == scope, m.c.window_days == window_days)
        known = sorted({r["business_date"] for r in days})
        hint = f"days closed: {known[0]} .. {known[-1]}" if known else "no day of that scope and window is in"
        raise ReportError(f"no menu matrix for scope {scope!r}, window {window_days} days, as of {as_of} ({hint})")
    week_ago = {(r["category"], r["spu"]): r for r in await _select(
        engine, m, m.c.scope == scope, m.c.window_days == window_days,
        m.c.business_date == as_of - timedelta(days=7))}
    pairs = sorted(await _select(engine, p, p.c.scope == scope, p.c.window_days == window_days,
                                 p.c.business_date == as_of), key=lambda r: r["pair_rank"])
    daily = await _select(engine, d, d.c.scope == scope, d.c.business_date > as_of - timedelta(days=window_days),
                          d.c.business_date <= as_of)
    names = {r["spu"]: r["name"] for r in rows}
    categories = []
    for cat in sorted({r["category"] for r in rows}):
        items = sorted((r for r in rows if r["category"] == cat), key=lambda r: -r["units"])
        first = items[0]
        categories.append({
            "category": cat, "cm_benchmark_value": _f(first["cm_benchmark_value"]),
            "popularity_threshold_mm_pct": _f(first["popularity_threshold_mm_pct"]), "n_items": first["n_items"],
            "days_covered": first["days_covered"],
            "items": [{"spu": r["spu"], "name": r["name"], "units": _f(r["units"]), "mm_pct": _f(r["mm_pct"]),
                       "cm": _f(r["cm"]), "class": r["menu_class"], "popularity": r["popularity"],
                       "profitability": r["profitability"], "revenue": _f(r["revenue"]), "cm_pct": _f(r["cm_pct"]),
                       "list_cm": _f(r["list_cm"]), "discount_depth": _f(r["discount_depth"]),
                       "wow_growth": _f(r["wow_growth"]), "cmgr": _f(r["cmgr"])} for r in items]})
    out_pairs = []
    for r in pairs:
        ab, ba = _f(r["confidence_ab"]) or 0.0, _f(r["confidence_ba"]) or 0.0
        a, b = (r["item_a"], r["item_b"]) if ab >= ba else (r["item_b"], r["item_a"])
        out_pairs.append({"antecedent": [a], "consequent": [b], "antecedent_names": [names.get(a, a)],
                          "consequent_names": [names.get(b, b)], "support": _f(r["support"]),
                          "confidence": max(ab, ba), "lift": _f(r["lift"]), "leverage": _f(r["leverage"]),
                          "conviction": _f(r["conviction_ab"] if ab >= ba else r["conviction_ba"]),
                          "n_baskets": r["n_baskets"], "n_both": r["n_ab"], "error_bound": r["error_bound"]})
    report = {"as_of": as_of.isoformat(), "window_days": window_days, "scope": scope, "categories": categories,
              "pairs": out_pairs, "recommendations": recommendations(categories, week_ago, out_pairs, rules)}
    report["trends"] = _trends(daily)
    return report


def recommendations(categories: Sequence[dict], week_ago: dict[tuple[str, str], dict], pairs: Sequence[dict],
                    rules: Rules) -> list[dict[str, Any]]:
    """Watch list, promotion, re-price and drop candidates per category; bundle suggestions from the pairs."""
    out: list[dict[str, Any]] = []
    for c in categories:
        bench, line = c["cm_benchmark_value"], c["popularity_threshold_mm_pct"]
        for it in c["items"]:
            base = {"category": c["category"], "spu": it["spu"], "name": it["name"], "class": it["class"]}
            cls = it["class"]
            if cls in ("star", "plowhorse"):
                reasons = []
                before = week_ago.get((c["category"], it["spu"]))
                if before and before["mm_pct"] and it["mm_pct"] < before["mm_pct"] * (1 - rules.watch_mix_drop):
                    reasons.append(f"menu mix {before['mm_pct']:.1f}% -> {it['mm_pct']:.1f}% in 7 days")
                if before and before["cm"] and it["cm"] < before["cm"] * (1 - rules.watch_cm_drop):
                    reasons.append(f"CM ${before['cm']:.2f} -> ${it['cm']:.2f} a unit in 7 days")
                if it["wow_growth"] is not None and it["wow_growth"] <= rules.watch_wow:
                    reasons.append(f"units {it['wow_growth']:+.0%} week over week")
                if reasons:
                    out.append({"kind": "watch", **base, "reason": "; ".join(reasons)})
            if cls == "puzzle":
                out.append({"kind": "promote", **base, "reason": (
                    f"CM ${it['cm']:.2f} (benchmark ${bench:.2f}) but menu mix {it['mm_pct']:.1f}% (line "
                    f"{line:.1f}%): feature it, reposition it on the menu board, or promote it")})
            elif cls == "plowhorse":
                gap = bench - it["cm"]
                price = it["revenue"] / it["units"] if it["units"] else None
                pct = f" (+{gap / price:.0%} on the average price ${price:.2f})" if price else ""
                out.append({"kind": "reprice", **base, "price_increase": gap, "reason": (
                    f"popular (mix {it['mm_pct']:.1f}%) with CM ${it['cm']:.2f} below the benchmark ${bench:.2f}: "
                    f"+${gap:.2f} a unit{pct} would bring it to the benchmark (or lower its cost or discount)")})
            elif cls == "dog":
                out.append({"kind": "drop", **base, "reason": (
                    f"mix {it['mm_pct']:.1f}% (line {line:.1f}%) and CM ${it['cm']:.2f} (benchmark ${bench:.2f}): "
                    "remove or rework it")})
    bundles = sorted((p for p in pairs if (p["lift"] or 0) >= rules.bundle_min_lift),
                     key=lambda p: (-(p["lift"] or 0), -(p["support"] or 0)))[:rules.bundles]
    for p in bundles:
        out.append({"kind": "bundle", "items": p["antecedent"] + p["consequent"],
                    "names": p["antecedent_names"] + p["consequent_names"], "reason": (
                        f"{p['n_both']} baskets ({p['support']:.1%}) hold both; lift {p['lift']:.2f}, confidence "
                        f"{p['confidence']:.0%} that {p['antecedent_names'][0]} comes with "
                        f"{p['consequent_names'][0]}")})
    return out


def _trends(daily: list[dict]) -> dict[str, Any]:
    """Per item per day over the window: units and realised CM % (for the HTML's trend charts)."""
    days = sorted({r["business_date"] for r in daily})
    by_item: dict[str, dict[str, Any]] = {}
    for r in daily:
        e = by_item.setdefault(r["spu"], {"name": r["name"], "category": r["category"], "units": {}, "cm_pct": {}})
        e["units"][r["business_date"].isoformat()] = _f(r["units"])
        e["cm_pct"][r["business_date"].isoformat()] = _f(r["cm_pct"])
    return {"days": [d.isoformat() for d in days], "items": by_item}


# --------------------------------------------------------------------------- HTML


def render_html(report: dict[str, Any]) -> str:
    """One self-contained page: the CM-vs-mix matrix per category, tables, trends, pairs, recommendations."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    e = html.escape
    cats = report["categories"]
    figures: list[tuple[str, Any]] = []
    ncol = min(3, len(cats))
    nrow = math.ceil(len(cats) / ncol)
    fig = make_subplots(rows=nrow, cols=ncol, subplot_titles=[c["category"] for c in cats],
                        horizontal_spacing=0.07, vertical_spacing=0.12)
    shown: set[str] = set()
    for i, c in enumerate(cats):
        row, col = i // ncol + 1, i % ncol + 1
        labelled = {it["spu"] for it in sorted(c["items"], key=lambda it: -it["units"])[:LABELS]}
        for cls in CLASSES:
            items = [it for it in c["items"] if it["class"] == cls]
            if not items:
                continue
            fig.add_trace(go.Scatter(
                x=[it["mm_pct"] for it in items], y=[it["cm"] for it in items], mode="markers+text",
                text=[it["name"] if it["spu"] in labelled else "" for it in items],
                customdata=[it["name"] for it in items], textposition="top center", textfont={"size": 9},
                marker={"size": 11, "color": CLASS_COLOURS[cls]}, name=cls, legendgroup=cls,
                showlegend=cls not in shown,
                hovertemplate="%{customdata}<br>mix %{x:.1f}%<br>CM $%{y:.2f}<extra>" + cls + "</extra>"),
                row=row, col=col)
            shown.add(cls)
        fig.add_vline(x=c["popularity_threshold_mm_pct"], line_dash="dash", line_color="#888", row=row, col=col)
        fig.add_hline(y=c["cm_benchmark_value"], line_dash="dash", line_color="#888", row=row, col=col)
        fig.update_xaxes(title_text="menu mix %", row=row, col=col)
        fig.update_yaxes(title_text="CM $/unit", row=row, col=col)
    fig.update_layout(height=380 * nrow, margin={"t": 40, "b": 40, "l": 50, "r": 20}, legend={"orientation": "h"})
    figures.append(("matrix", fig))

    trends = report["trends"]
    top = sorted(trends["items"].items(), key=lambda kv: -sum(v or 0 for v in kv[1]["units"].values()))[:8]
    tfig = make_subplots(rows=1, cols=2, subplot_titles=("units a day (top items)", "realised CM % a day"))
    for spu, t in top:
        tfig.add_trace(go.Scatter(x=trends["days"], y=[t["units"].get(d) for d in trends["days"]], mode="lines",
                                  name=t["name"], legendgroup=spu), row=1, col=1)
        tfig.add_trace(go.Scatter(x=trends["days"], y=[_pct(t["cm_pct"].get(d)) for d in trends["days"]],
                                  mode="lines", name=t["name"], legendgroup=spu, showlegend=False), row=1, col=2)
    tfig.update_layout(height=380, margin={"t": 40, "b": 40, "l": 50, "r": 20})
    figures.append(("trends", tfig))

    pairs = report["pairs"][:15]
    labels = [f"{p['antecedent_names'][0]} → {p['consequent_names'][0]}" for p in pairs]
    pfig = make_subplots(rows=1, cols=2, subplot_titles=("lift", "support %"))
    pfig.add_trace(go.Bar(x=[p["lift"] for p in pairs], y=labels, orientation="h", name="lift",
                          marker_color="#457b9d"), row=1, col=1)
    pfig.add_trace(go.Bar(x=[_pct(p["support"]) for p in pairs], y=labels, orientation="h", name="support",
                          marker_color="#2a9d8f"), row=1, col=2)
    pfig.update_yaxes(autorange="reversed")
    pfig.update_yaxes(showticklabels=False, row=1, col=2)
    pfig.update_layout(height=max(300, 26 * len(pairs) + 120), showlegend=False,
                       margin={"t": 40, "b": 40, "l": 260, "r": 20})
    figures.append(("pairs", pfig))

    charts = {}
    for n, (name, f) in enumerate(figures):
        charts[name] = f.to_html(full_html=False, include_plotlyjs=n == 0, div_id=f"chart-{name}",
                                 config={"displaylogo": False, "responsive": True})

    counts = {cls: sum(1 for c in cats for it in c["items"] if it["class"] == cls) for cls in CLASSES}
    cards = "".join(f'<div class="card" style="border-color:{CLASS_COLOURS[c]}"><b>{counts[c]}</b>{c}s</div>'
                    for c in CLASSES)
    recs = report["recommendations"]
    cards += "".join(f'<div class="card"><b>{sum(1 for r in recs if r["kind"] == k)}</b>{label}</div>'
                     for k, label in (("watch", "to watch"), ("promote", "to promote"), ("bundle", "bundles")))
    tables = []
    for c in cats:
        body = "".join(
            f"<tr><td>{e(it['name'])}<br><small>{e(it['spu'])}</small></td>"
            f'<td><span class="cls" style="background:{CLASS_COLOURS[it["class"]]}">{it["class"]}</span></td>'
            f"<td>{it['units']:,.0f}</td><td>{it['mm_pct']:.1f}%</td><td>${it['cm']:.2f}</td>"
            f"<td>{_fmt_pct(it['cm_pct'])}</td><td>{_fmt_pct(it['discount_depth'])}</td>"
            f"<td>{_fmt_growth(it['wow_growth'])}</td><td>{_fmt_growth(it['cmgr'])}</td></tr>" for it in c["items"])
        tables.append(
            f"<h3>{e(c['category'])} <small>benchmark CM ${c['cm_benchmark_value']:.2f} · popularity line "
            f"{c['popularity_threshold_mm_pct']:.1f}% · {c['n_items']} items · {c['days_covered']} of "
            f"{report['window_days']} days</small></h3><table><thead><tr><th>item</th><th>class</th><th>units</th>"
            f"<th>mix</th><th>CM/unit</th><th>CM %</th><th>discount</th><th>week/week</th><th>CMGR</th></tr>"
            f"</thead><tbody>{body}</tbody></table>")
    rec_html = []
    for kind, title in (("watch", "Watch list"), ("promote", "Promotion candidates (puzzles)"),
                        ("reprice", "Re-price candidates (plowhorses)"), ("drop", "Drop candidates (dogs)"),
                        ("bundle", "Bundle suggestions")):
        rows = [r for r in recs if r["kind"] == kind]
        items = "".join(
            f"<li><b>{e(' + '.join(r['names']) if kind == 'bundle' else r['name'])}</b>"
            f"{'' if kind == 'bundle' else ' <small>(' + e(r['category']) + ')</small>'}: {e(r['reason'])}</li>"
            for r in rows) or "<li><i>none</i></li>"
        rec_html.append(f'<div class="rec"><h3>{title}</h3><ul>{items}</ul></div>')
    pair_rows = "".join(
        f"<tr><td>{e(p['antecedent_names'][0])} → {e(p['consequent_names'][0])}</td><td>{p['n_both']}</td>"
        f"<td>{_fmt_pct(p['support'], 2)}</td><td>{_fmt_pct(p['confidence'])}</td><td>{_num(p['lift'])}</td>"
        f"<td>{_num(p['leverage'], 4)}</td><td>{_num(p['conviction'])}</td></tr>" for p in report["pairs"])
    scope = "the whole chain" if report["scope"] == "chain" else f"store {report['scope']}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Menu engineering · {e(scope)} · {report['as_of']}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}}
header{{background:#264653;color:#fff;padding:1em 2em}} header h1{{margin:0;font-size:1.5em}}
main{{padding:1em 2em;max-width:1400px;margin:auto}} section{{background:#fff;border-radius:8px;
box-shadow:0 1px 3px #0002;padding:1em 1.5em;margin:1em 0}}
.cards{{display:flex;gap:1em;flex-wrap:wrap}} .card{{border-left:6px solid #264653;background:#fff;padding:.6em 1em;
border-radius:6px;box-shadow:0 1px 3px #0002;min-width:7em}} .card b{{display:block;font-size:1.6em}}
table{{border-collapse:collapse;width:100%;font-size:.9em;margin-bottom:1.5em}}
th,td{{text-align:right;padding:.3em .6em;border-bottom:1px solid #eee}}
th:first-child,td:first-child{{text-align:left}}
.cls{{color:#fff;border-radius:4px;padding:.1em .5em;font-size:.85em}} small{{color:#666;font-weight:normal}}
.recs{{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:1em}}
</style></head><body>
<header><h1>Menu engineering: {e(scope)}</h1>
<div>{report['window_days']}-day window ending {report['as_of']} · Kasavana &amp; Smith matrix (popularity line 70 % of
1/N, contribution margin against the sales-weighted mean) · spcwatch UC-PR-01</div></header>
<main>
<section><div class="cards">{cards}</div></section>
<section><h2>Matrix: contribution margin against menu mix</h2>
<p>Each dot is an item; the dashed lines are its category's popularity line and CM benchmark. Top right: stars;
top left: puzzles; bottom right: plowhorses; bottom left: dogs.</p>{charts['matrix']}</section>
<section><h2>Recommendations</h2><div class="recs">{''.join(rec_html)}</div></section>
<section><h2>Categories</h2>{''.join(tables)}</section>
<section><h2>Trends</h2>{charts['trends']}</section>
<section><h2>Item pairs</h2>{charts['pairs']}
<table><thead><tr><th>rule</th><th>baskets</th><th>support</th><th>confidence</th><th>lift</th><th>leverage</th>
<th>conviction</th></tr></thead><tbody>{pair_rows}</tbody></table></section>
</main></body></html>
"""


def _pct(x: float | None) -> float | None:
    return None if x is None else 100.0 * x


def _fmt_pct(x: float | None, digits: int = 1) -> str:
    return "–" if x is None else f"{100 * x:.{digits}f}%"


def _fmt_growth(x: float | None) -> str:
    return "–" if x is None else f"{x:+.0%}"


def _num(x: float | None, digits: int = 2) -> str:
    return "∞" if x is None else f"{x:.{digits}f}"
