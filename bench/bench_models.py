"""Speed and memory of the SPC engine (models/): ``python -m bench.bench_models``.

Measures, on synthetic minute data (noise + a daily cycle + rare spikes):
incremental updates per second (one series; 100,000 series round-robin),
the vectorised path over a 1M-point series, and state bytes per series for a
30-day minute baseline.  Speed figures are medians of 3 runs on one core.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np
import orjson

from models import DetectorConfig, RobustConfig, RobustDetector, SeriesDetector

T0 = 1_700_006_400.0  # a day boundary
RUNS = 3
TARGET_INC = 200_000
TARGET_VEC = 2_000_000
TARGET_STATE = 2048


def _series(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = T0 + np.arange(n) * 60.0
    x = 100 + 20 * np.sin(2 * np.pi * t / 86400) + rng.normal(0, 3, n)
    spikes = rng.integers(0, n, max(1, n // 5000))
    x[spikes] += 60
    return t, x


def _median(measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(RUNS))


CONFIGS: dict[str, Config] = {
    "naive (WE1-WE4, std)": DetectorConfig.naive(),
    "WE1-WE4, MR sigma, protected": DetectorConfig(protect_z=3.0, protect_max_run=120),
    "infra default (seasonal)": DetectorConfig.infra(),
    "infra robust (SPCWATCH_INFRA_METHOD=robust)": RobustConfig.infra(),
}


Config = DetectorConfig | RobustConfig


def _cls(cfg: Config) -> type[SeriesDetector] | type[RobustDetector]:
    return RobustDetector if isinstance(cfg, RobustConfig) else SeriesDetector


def _warm(cfg: Config, t: np.ndarray, x: np.ndarray) -> SeriesDetector | RobustDetector:
    """A detector past its warm-up, so every measured update is a full one."""
    det = _cls(cfg)("bench/series", cfg)  # type: ignore[arg-type]
    det.update_many(t, x)
    return det


def bench_incremental_one(cfg: Config, n: int = 200_000) -> float:
    t, x = _series(10 * 1440 + n)
    warm_n = 10 * 1440
    tl, xl = t[warm_n:].tolist(), x[warm_n:].tolist()

    def once() -> float:
        det = _warm(cfg, t[:warm_n], x[:warm_n])
        up = det.update
        gc.disable()
        s = time.perf_counter()
        for a, b in zip(tl, xl, strict=True):
            up(a, b)
        e = time.perf_counter() - s
        gc.enable()
        return n / e

    return _median(once)


def bench_incremental_many(cfg: Config, series: int = 100_000, rounds: int = 5) -> float:
    """Round-robin over many series: cache-unfriendly, like a real partition."""
    t, x = _series(rounds + 3 * 1440)
    dets = []
    warm_t, warm_x = t[: 3 * 1440], x[: 3 * 1440]
    proto = _warm(cfg.with_(min_samples=1), warm_t, warm_x).to_state()
    for i in range(series):
        dets.append(_cls(cfg).from_state({**proto, "key": f"r{i}"}, cfg.with_(min_samples=1)))  # type: ignore[arg-type]
    tl = t[3 * 1440:].tolist()
    xl = x[3 * 1440:].tolist()

    def once() -> float:
        gc.disable()
        s = time.perf_counter()
        for r in range(rounds):
            a, b = tl[r], xl[r]
            for d in dets:
                d.update(a, b)
        e = time.perf_counter() - s
        gc.enable()
        # rewind so every run measures the same work
        for d in dets:
            d._wm = -np.inf
        return series * rounds / e

    return _median(once)


def bench_vectorised(cfg: Config, n: int = 1_000_000) -> float:
    t, x = _series(n)

    def once() -> float:
        det = _cls(cfg)("bench/series", cfg)  # type: ignore[arg-type]
        s = time.perf_counter()
        det.update_many(t, x)
        return n / (time.perf_counter() - s)

    return _median(once)


def state_sizes(cfg: Config) -> tuple[int, int]:
    """(JSON bytes, Python heap bytes) of a detector holding 30 days of minutes."""
    t, x = _series(31 * 1440)
    det = _warm(cfg, t, x)
    st = det.to_state()
    js = len(orjson.dumps(st))
    gc.collect()
    tracemalloc.start()
    restored = _cls(cfg).from_state(orjson.loads(orjson.dumps(st)), cfg)  # type: ignore[arg-type]
    cur, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del restored
    return js, cur


def run() -> str:
    lines = [
        "## SPC engine (models/): speed and state size",
        "",
        "Synthetic minute series (daily cycle + noise + rare spikes); one process, one core; "
        f"medians of {RUNS} runs. `update()` includes building the per-point `Verdict` "
        "objects the agents receive. Round-robin = 100,000 detectors restored from state, "
        "one sample each in turn (what a busy partition looks like). Heap bytes are "
        "`tracemalloc` of one restored detector.",
        "",
        "| configuration | incremental, 1 series (upd/s) | incremental, 100k series round-robin (upd/s) "
        "| vectorised, 1M points (samples/s) | vectorised / incremental | state JSON (bytes) | heap (bytes) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, cfg in CONFIGS.items():
        inc = bench_incremental_one(cfg)
        many = bench_incremental_many(cfg)
        vec = bench_vectorised(cfg)
        js, heap = state_sizes(cfg)
        lines.append(f"| {name} | {inc:,.0f} | {many:,.0f} | {vec:,.0f} | {vec / inc:.1f}x | {js:,} | {heap:,} |")
    extra = []
    for name, cfg in (("hour-of-week seasonal", DetectorConfig.infra(seasonality="hour_of_week")),):
        js, heap = state_sizes(cfg)
        extra.append(f"| {name} | {js:,} | {heap:,} |")
    lines += [
        "",
        f"Targets: incremental >= {TARGET_INC:,} upd/s/core with WE1-WE4, vectorised >= {TARGET_VEC:,} "
        f"samples/s, state <= {TARGET_STATE:,} bytes per series for a non-seasonal 30-day minute baseline "
        "(30 one-day buckets of count, mean, M2, moving-range sum). Seasonal profiles add one "
        "(count, sum) pair per slot per bucket:",
        "",
        "| seasonal state, 30-day minute baseline | state JSON (bytes) | heap (bytes) |",
        "| --- | ---: | ---: |",
        *extra,
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(run())
