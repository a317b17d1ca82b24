"""Synthetic infrastructure samples for tests: daily cycles, noise, injected faults."""

from __future__ import annotations

import asyncio
import io
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orjson

START = 1_771_286_400.0  # 2026-02-17T00:00:00Z
DAY = 86400.0


@dataclass(frozen=True)
class Fault:
    resource_id: str
    metric: str
    start: float
    end: float
    factor: float  # multiplies the healthy value inside [start, end)


def samples(resources: int = 6, days: float = 3.0, interval: float = 300.0, seed: int = 7,
            faults: tuple[Fault, ...] = (), silent: dict[str, float] | None = None) -> Iterator[list[dict]]:
    """One batch per resource per timestamp (the contract's shape), in time order."""
    rng = np.random.default_rng(seed)
    metrics = ("CPUUtilization", "DatabaseConnections")
    levels = {(f"db-{r:02d}", m): (20.0 + 7 * r if m == metrics[0] else 100.0 + 13 * r)
              for r in range(resources) for m in metrics}
    steps = int(days * DAY / interval)
    silent = silent or {}
    for i in range(steps):
        ts = START + i * interval
        daily = 1.0 + 0.3 * math.sin(2 * math.pi * (ts % DAY) / DAY)
        for r in range(resources):
            rid = f"db-{r:02d}"
            if rid in silent and ts >= silent[rid]:
                continue
            batch = []
            for metric in metrics:
                value = levels[(rid, metric)] * daily * (1 + 0.05 * rng.standard_normal())
                for fault in faults:
                    if fault.resource_id == rid and fault.metric == metric and fault.start <= ts < fault.end:
                        value *= fault.factor
                batch.append({"ts": ts, "source": "cloudwatch", "resource_type": "rds", "resource_id": rid,
                              "metric": metric, "value": round(value, 4), "labels": {"region": "us-east-1"}})
            yield batch


# A 3-day scenario shared by the infra tests: a x3 CPU fault on db-01, db-04 silent from day 2.7.
FAULT = Fault("db-01", "CPUUtilization", START + 2.5 * DAY, START + 2.5 * DAY + 7200, 3.0)
SILENT = {"db-04": START + 2.7 * DAY}


def write_input(path: Path, silent: dict[str, float] | None = None) -> list[list[dict]]:
    batches = list(samples(days=3.0, faults=(FAULT,), silent=silent))
    path.write_bytes(b"".join(orjson.dumps({"samples": b}) + b"\n" for b in batches))
    return batches


def replay(tmp_path: Path, db_url: str, input_path: Path) -> list[dict]:
    """``spcwatch replay infra`` over ``input_path`` into ``db_url``; the alerts it printed."""
    from agents.core.settings import Settings
    from agents.infra import InfraProcessor, InfraSettings
    from stream_app.replay import run_replay

    out = io.StringIO()
    settings = Settings.from_env({"SPCWATCH_DB_URL": db_url})
    asyncio.run(run_replay(settings, InfraProcessor(InfraSettings(interval_seconds=300.0)), input_path, out))
    return [orjson.loads(line) for line in out.getvalue().splitlines()]
