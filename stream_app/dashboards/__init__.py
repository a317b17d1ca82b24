"""Grafana dashboards as code: one module per use case, rendered to ``deploy/grafana/dashboards/``.

``python -m stream_app.dashboards`` (``make dashboards``) rewrites the JSON files Grafana provisions;
``tests/stream_app/dashboards`` fails when a committed file is stale and runs every panel's query
against MariaDB and a real Prometheus. Needs the dev extra (``grafana-foundation-sdk``); the worker
never imports this package.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from grafana_foundation_sdk.builders.dashboard import Dashboard

from stream_app.dashboards import forecast, infra, menu, overview, recon, store
from stream_app.dashboards.common import render

OUTPUT_DIR = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "dashboards"

#: file name -> builder; a new dashboard is one line here and one module beside this one
DASHBOARDS: dict[str, Callable[[], Dashboard]] = {
    "spcwatch-overview.json": overview.dashboard,
    "uc-it-01-infra.json": infra.dashboard,
    "uc-op-02-store.json": store.dashboard,
    "uc-sc-01-forecast-accuracy.json": forecast.dashboard,
    "uc-fn-02-recon-executive.json": recon.executive,
    "uc-fn-02-recon-operational.json": recon.operational,
    "uc-fn-02-recon-investigation.json": recon.investigation,
    "uc-pr-01-menu.json": menu.dashboard,
}


def rendered() -> dict[str, str]:
    """Every dashboard's JSON text, by file name."""
    return {name: render(build()) for name, build in DASHBOARDS.items()}


def write(output_dir: Path = OUTPUT_DIR) -> list[Path]:
    output_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in rendered().items():
        path = output_dir / name
        path.write_text(text)
        written.append(path)
    return written
