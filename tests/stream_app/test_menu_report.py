"""``spcwatch menu report``: JSON from the database the menu use case wrote, the recommendations, and the HTML
rendered by a real headless Chromium (Debian's ``chromium``) and read back."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from agents.core.settings import Settings
from agents.menu import MenuProcessor, MenuSettings
from stream_app.cli import main
from stream_app.replay import run_replay
from tests import menu_data as md

SCENARIO = md.Scenario(days=17, orders_per_day=120, cost_item="E1", cost_day=9, seed=5)
AS_OF = "2026-01-20"  # day 15


@pytest.fixture(scope="module")
def menu_db(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("menu")
    path = tmp / "orders.jsonl"
    path.write_bytes(b"".join(orjson.dumps(md.to_json_obj(e)) + b"\n" for e in md.events(SCENARIO)))
    url = f"sqlite+aiosqlite:///{tmp / 'menu.db'}"
    asyncio.run(run_replay(Settings(db_url=url), MenuProcessor(MenuSettings(windows=(10, 7))), path, io.StringIO()))
    return url


def _report(monkeypatch: pytest.MonkeyPatch, url: str, capsys: pytest.CaptureFixture, *args: str) -> tuple[int, str]:
    monkeypatch.setenv("SPCWATCH_DB_URL", url)
    code = main(["menu", "report", *args])
    return code, capsys.readouterr()


def test_json_report_is_the_days_matrix_pairs_and_recommendations(menu_db: str, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    code, out = _report(monkeypatch, menu_db, capsys, "--as-of", AS_OF, "--window-days", "10", "--chain")
    assert code == 0, out.err
    r = json.loads(out.out)
    assert (r["as_of"], r["window_days"], r["scope"]) == (AS_OF, 10, "chain")
    cats = {c["category"]: c for c in r["categories"]}
    assert set(cats) == {"espresso", "bakery", "tea"}
    esp = cats["espresso"]
    assert esp["popularity_threshold_mm_pct"] == pytest.approx(70 / 4)
    assert sum(it["mm_pct"] for it in esp["items"]) == pytest.approx(100)
    units = sum(it["units"] for it in esp["items"])
    bench = sum(it["cm"] * it["units"] for it in esp["items"]) / units
    assert esp["cm_benchmark_value"] == pytest.approx(bench)  # the sales-weighted mean CM
    for it in esp["items"]:
        assert set(it) >= {"spu", "name", "units", "mm_pct", "cm", "class"}
        high_pop, high_cm = it["mm_pct"] >= esp["popularity_threshold_mm_pct"], it["cm"] >= bench - 1e-9
        assert it["class"] == {(True, True): "star", (True, False): "plowhorse", (False, True): "puzzle",
                               (False, False): "dog"}[(high_pop, high_cm)]
    latte = next(it for it in esp["items"] if it["spu"] == "E1")
    assert latte["class"] == "plowhorse"  # its cost went up on day 12
    assert r["pairs"] and all({"antecedent", "consequent", "support", "confidence", "lift"} <= set(p)
                              for p in r["pairs"])
    kinds = {x["kind"] for x in r["recommendations"]}
    assert {"reprice", "watch"} <= kinds
    assert any(x["kind"] == "reprice" and x["spu"] == "E1" and x["price_increase"] > 0 for x in r["recommendations"])
    assert any(x["kind"] == "watch" and x["spu"] == "E1" and "CM" in x["reason"] for x in r["recommendations"])
    # a store, and what has no answer: one line, non-zero
    code, out = _report(monkeypatch, menu_db, capsys, "--as-of", AS_OF, "--window-days", "7", "--store", "S2")
    assert code == 0 and json.loads(out.out)["scope"] == "S2"
    code, out = _report(monkeypatch, menu_db, capsys, "--as-of", "2027-01-01", "--window-days", "10")
    assert code == 1 and out.err.count("\n") == 1 and "days closed: 2026-01-05 .. 2026-01-20" in out.err
    code, out = _report(monkeypatch, menu_db, capsys, "--as-of", "25/01/2026")
    assert code == 2 and "--as-of must be a date" in out.err


def test_html_report_renders_in_headless_chromium(menu_db: str, monkeypatch, capsys, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed to render the menu report (apt-get install chromium; .ci/run does)"
    page = tmp_path / "menu.html"
    code, out = _report(monkeypatch, menu_db, capsys, "--as-of", AS_OF, "--window-days", "10", "--format", "html",
                        "--output", str(page))
    assert code == 0, out.err
    text = page.read_text()
    assert "<script src=" not in text  # self-contained: plotly's JavaScript is inlined
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000",
                          "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True).stdout
    # plotly drew the three figures (each an svg.main-svg) with the items as points, after its script ran
    assert dom.count('class="main-svg"') >= 3
    assert dom.count('class="point"') >= 11  # one marker per item of the matrix
    for name in ("Latte", "Croissant", "Chai"):
        assert name in dom
    assert "Re-price candidates" in dom and "Bundle suggestions" in dom
