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
