"""The one direction of imports (README "Layout"): checked by ``lint-imports`` in CI; here what
it cannot see, at run time."""

from __future__ import annotations

import subprocess
import sys


def test_replay_and_the_use_cases_load_no_faust_or_kafka_client() -> None:
    # A fresh interpreter: this test session has imported faust already.
    code = ("import sys, stream_app.replay, agents.registry; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('faust', 'mode', 'aiokafka')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_registry_lists_every_use_case_explicitly() -> None:
    from agents import forecast, infra, menu, recon, store
    from agents.core.alerts import USE_CASES
    from agents.registry import PROCESSORS

    assert sorted(PROCESSORS) == sorted(USE_CASES)
    assert PROCESSORS["infra"] == infra.InfraProcessor.from_settings
    assert PROCESSORS["menu"] == menu.MenuProcessor.from_settings
    assert {PROCESSORS["store"], PROCESSORS["forecast"], PROCESSORS["recon"]} == {
        store.StoreProcessor.from_settings, forecast.ForecastProcessor.from_settings, recon.from_settings}


def test_every_package_ships_in_the_wheel() -> None:
    """setuptools lists packages by hand ([tool.setuptools] packages): a new one left out is
    missing from an installed spcwatch although every test run from the checkout passes."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(init.parent.relative_to(root).parts)
             for top in ("stream_app", "agents", "models") for init in (root / top).rglob("__init__.py")}
    assert found - listed == set(), "add them to [tool.setuptools] packages in pyproject.toml"
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for package, patterns in data.items():
        folder = root / ("sql" if package == "stream_app.sql" else package.replace(".", "/"))
        assert all(list(folder.glob(p)) for p in patterns), (package, patterns)
