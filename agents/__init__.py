"""Faust agents: thin wiring from topics to the models in ``models/``.

Each use-case module exposes ``register(runtime)`` and claims the input topics
it consumes (``runtime.claimed_topics``). Topics no use case claims yet still
get an agent that validates, counts and dead-letters, so nothing on a contract
topic goes unnoticed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agents import validate

if TYPE_CHECKING:
    from stream_app.app import Runtime

USE_CASES: tuple = ()  # use-case modules register here as they are built


def register_all(runtime: Runtime) -> None:
    for module in USE_CASES:
        module.register(runtime)
    validate.register(runtime)
