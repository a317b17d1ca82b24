"""Warm start from history: how long a cold worker takes to take in 30 days of minute history.

The estate's ~2,000 series (200 resources x 10 metrics) over 30 days is 86.4M samples, more than a
shared 2-core machine should chew through in a benchmark run. This measures a fraction
(``BENCH_BACKFILL_HOURS`` of the same 2,000 series, 24 h by default) through the real path and
extrapolates by rate:

1. ``promtool tsdb create-blocks-from openmetrics`` fills a TSDB, a real Prometheus serves it;
2. ``backfill_prometheus`` (``query_range`` in 1-day chunks) publishes history batches to Kafka;
3. a cold ``spcwatch worker`` (4 partitions, MariaDB) takes them in, until every sample's rollup
   row is committed.

The backfill and the worker run one after the other here, so each rate is its own; in use they
overlap, and the time to warm is set by the slower of the two.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import orjson

from agents.core.settings import Settings
from bench.common import BOOTSTRAP, create_topic, delete_prefixed, run_worker, scratch_database
from stream_app.backfill import PrometheusHistory, backfill_prometheus

RESOURCES, METRICS = 200, 10
HOURS = int(os.environ.get("BENCH_BACKFILL_HOURS", "24"))
FULL = RESOURCES * METRICS * 30 * 1440  # 30 days of minute samples: 86.4M


def _history_file(path: Path, start: int, minutes: int) -> int:
    """OpenMetrics text of every series (one family per metric); returns the sample count."""
    n = 0
    with path.open("w") as out:
        for m in range(METRICS):
            out.write(f"# TYPE m{m} gauge\n")
            for r in range(RESOURCES):
                base = 20 + (r * 7 + m * 13) % 60
                lines = []
                for i in range(minutes):
                    ts = start + 60 * i
                    v = base + 5 * math.sin(2 * math.pi * (ts % 86400) / 86400) + ((i * 7919 + r) % 11 - 5) * 0.3
                    lines.append(f'm{m}{{instance="res-{r:03d}"}} {v:.3f} {ts}\n')
                out.writelines(lines)
                n += minutes
        out.write("# EOF\n")
    return n


def _prometheus(tmp: Path, port: int) -> subprocess.Popen[bytes]:
    (tmp / "prometheus.yml").write_text("global: {scrape_interval: 1h}\n")
    return subprocess.Popen([shutil.which("prometheus") or "prometheus", f"--config.file={tmp / 'prometheus.yml'}",
                             f"--storage.tsdb.path={tmp / 'tsdb'}", "--storage.tsdb.retention.time=10y",
                             f"--web.listen-address=127.0.0.1:{port}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_ready(url: str, at: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/api/v1/query?query=count(m0)&time={at}", timeout=5) as response:
                result = orjson.loads(response.read())["data"]["result"]
                if result and float(result[0]["value"][1]) == RESOURCES:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("prometheus did not serve the imported history")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _backfill(url: str, prefix: str, start: int, end: int, n: int) -> tuple[float, int]:
    asyncio.run(create_topic(BOOTSTRAP, prefix + "metrics.samples", 4))
    settings = dataclasses.replace(Settings.from_env(), kafka_bootstrap=BOOTSTRAP, topic_prefix=prefix)
    history = PrometheusHistory(url, [f"m{m}" for m in range(METRICS)], step=60.0)
    with open(os.devnull, "w") as quiet:
        report = asyncio.run(backfill_prometheus(settings, history, start, end, 86400.0, progress_stream=quiet))
    if report.samples != n:
        raise RuntimeError(f"the backfill published {report.samples:,} samples, not {n:,}")
    return report.samples / report.seconds, report.messages


def run() -> str:
    now = int(time.time())
    end = now - now % 86400 - 86400  # history ends at a midnight, a day ago
    minutes = HOURS * 60
    start = end - 60 * minutes
    suffix = uuid.uuid4().hex[:6]
    prefixes = {"signals": f"bbackfill{suffix}.", "all": f"bbackfillall{suffix}."}
    tmp = Path(tempfile.mkdtemp(prefix="spcwatch-bench-backfill-"))
    proc = None
    publish: dict[str, tuple[float, int]] = {}
    worker: dict[str, tuple[float, float, float]] = {}  # rows -> (end to end, consumed, peak RSS)
    try:
        t0 = time.perf_counter()
        n = _history_file(tmp / "history.om", start, minutes)
        subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(tmp / "history.om"),
                        str(tmp / "tsdb")], check=True, capture_output=True)
        (tmp / "history.om").unlink()
        import_seconds = time.perf_counter() - t0
        port = _free_port()
        proc = _prometheus(tmp, port)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url, end - 60)
        for rows, prefix in prefixes.items():
            publish[rows] = _backfill(url, prefix, start, end, n)
            with scratch_database() as database:
                # HISTORY_ROWS=all writes a rollup row per sample: the clock stops at the last one. With
                # signals (the default) there is no per-sample row to wait for: it stops when all are consumed.
                marks = run_worker(prefix, database, ("metrics.samples",), n, timeout=3600,
                                   env={"SPCWATCH_INFRA_HISTORY_ROWS": rows},
                                   rows_table="infra_metric_rollups" if rows == "all" else "",
                                   n_rows=n if rows == "all" else 0)
            worker[rows] = (marks.rate(n), marks.rate(n, end_to_end=False), marks.peak_rss_mb)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        for prefix in prefixes.values():
            asyncio.run(delete_prefixed(BOOTSTRAP, prefix))
        shutil.rmtree(tmp, ignore_errors=True)
    publish_rate = min(rate for rate, _ in publish.values())
    messages = publish["signals"][1]

    def minutes_for(rows: str) -> float:
        return FULL / min(publish_rate, worker[rows][0]) / 60

    rows_table = "\n".join(
        f"| cold worker, `SPCWATCH_INFRA_HISTORY_ROWS={rows}`{' (default)' if rows == 'signals' else ''} | {n:,} "
        f"| {worker[rows][0]:,.0f} samples/s | **~{minutes_for(rows):.0f} min** | {worker[rows][2]:,.0f} MB |"
        for rows in ("signals", "all"))
    return f"""## Warm start: backfill of minute history into a cold worker

Measured on a shared, busy 2-core machine (six engineers' tests beside it) on
{time.strftime("%Y-%m-%d", time.gmtime())}: timings are noisy. {RESOURCES} resources x {METRICS} metrics =
{RESOURCES * METRICS:,} series, **{HOURS} h** of minute history = {n:,} samples: a fraction of the 30 days, so
the 30-day figure is **extrapolated by rate** (a sample costs the same whatever the history's length: the
baseline is a rolling window of day buckets). The TSDB is written by `promtool` ({import_seconds:.0f} s, not
part of a backfill) and served by a real Prometheus; `backfill_prometheus` publishes 1-day `query_range`
chunks to Kafka ({messages:,} messages of at most 2,000 samples); then a cold `spcwatch worker`
(4 partitions, default infra config, MariaDB) takes them in. History writes, of the per-point rows, only
the points that signalled (`SPCWATCH_INFRA_HISTORY_ROWS=signals`, the default; the clock stops when the
worker has consumed the last sample); `=all` writes a rollup and a score row per sample (the clock stops
at the last rollup row committed).

Backfill (Prometheus `query_range` → history batches on Kafka): {publish_rate:,.0f} samples/s
(the slower of {len(publish)} runs).

| stage | samples | rate | 30 days x 2,000 series ({FULL:,} samples), extrapolated | worker peak RSS |
| --- | ---: | ---: | ---: | ---: |
{rows_table}

The backfill and the worker overlap in use, so the slower of the two sets the time to a fully warm
worker; a live start needs the 30 days themselves.
"""


if __name__ == "__main__":
    print(run())
