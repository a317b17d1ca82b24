"""Every use case by name: an explicit list (adding a use case adds a line here)."""

from __future__ import annotations

from collections.abc import Callable

from agents import forecast, infra, menu, recon, store
from agents.core.contract import Processor
from agents.core.settings import Settings

PROCESSORS: dict[str, Callable[[Settings], Processor]] = {
    infra.USE_CASE: infra.InfraProcessor.from_settings,
    recon.ReconProcessor.use_case: recon.from_settings,
    forecast.USE_CASE: forecast.ForecastProcessor.from_settings,
    store.USE_CASE: store.StoreProcessor.from_settings,
    menu.USE_CASE: menu.MenuProcessor.from_settings,
}
"""use case name -> factory from the global settings (order: the order the worker registers them)."""
