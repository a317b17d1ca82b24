"""The runner wires a processor by the capabilities it declares (agents/core/contract.py)."""

from __future__ import annotations

from agents.core.contract import LiveState, MetricsUser, StagedProcessor
from agents.core.settings import Settings
from agents.registry import PROCESSORS


def test_each_use_case_declares_the_capabilities_it_has() -> None:
    settings = Settings.from_env({})
    got = {name: (isinstance(p, StagedProcessor), isinstance(p, LiveState), isinstance(p, MetricsUser))
           for name, p in ((name, factory(settings)) for name, factory in PROCESSORS.items())}
    # staged: store, recon and menu repartition by store; live state and own metrics: infra, forecast
    assert got == {
        "infra": (False, True, True), "forecast": (False, True, True),
        "store": (True, False, False), "recon": (True, False, False), "menu": (True, False, False),
    }
    for name in ("store", "recon", "menu"):
        assert PROCESSORS[name](settings).internal_topics  # type: ignore[attr-defined]
