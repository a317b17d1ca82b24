"""Faust agents: thin wiring from topics to the models in ``models/``.

Each use case is a :class:`~stream_app.usecase.Processor`, listed in
:data:`PROCESSORS` by its ``use_case`` name. The worker wires each through
:func:`agents.runner.register_processor`; ``spcwatch replay`` runs the same
processor over a file. Input topics no use case claims still get an agent that
validates, counts and dead-letters, so nothing on a contract topic goes unnoticed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from agents import runner, validate

if TYPE_CHECKING:
    from stream_app.app import Runtime
    from stream_app.settings import Settings
    from stream_app.usecase import Processor

# use case name -> factory; each use-case module adds itself here.
PROCESSORS: dict[str, Callable[[Settings], Processor]] = {}

from agents import infra  # noqa: E402  (use-case modules register below, one line each)

PROCESSORS[infra.USE_CASE] = infra.InfraProcessor.from_settings
from agents import recon  # noqa: E402, I001
PROCESSORS[recon.ReconProcessor.use_case] = recon.from_settings
from agents import forecast  # noqa: E402, I001
PROCESSORS[forecast.USE_CASE] = forecast.ForecastProcessor.from_settings
from agents import store  # noqa: E402, I001
PROCESSORS[store.USE_CASE] = store.StoreProcessor.from_settings
from agents import menu  # noqa: E402, I001
PROCESSORS[menu.USE_CASE] = menu.MenuProcessor.from_settings


def register_all(runtime: Runtime) -> None:
    for factory in PROCESSORS.values():
        runner.register_processor(runtime, factory(runtime.settings))
    validate.register(runtime)
