"""``spcwatch worker`` with one processor that does nothing: the runner's own floor.

What a message costs in the worker before any detection: Faust, decoding and
validation, re-routing, checkpoints and acknowledgements, the worker's metrics.
Run by ``bench.bench_infra`` beside the count-only agent and the real worker.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from agents import registry
from agents.core.contract import Outputs, StateStore
from agents.core.events import MetricSample
from stream_app import cli


class NoopProcessor:
    use_case = "floor"
    topics = ("metrics.samples",)

    def key(self, topic: str, event: MetricSample) -> str:
        return event.resource_id

    def process(self, store: StateStore, topic: str, events: Sequence[Any]) -> Outputs:
        return Outputs()

    def tick(self, store: StateStore, now: float) -> Outputs:
        return Outputs()


if __name__ == "__main__":
    registry.PROCESSORS.clear()
    registry.PROCESSORS["floor"] = lambda _settings: NoopProcessor()
    sys.exit(cli.main(["worker"]))
