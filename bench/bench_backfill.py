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

from bench.common import BOOTSTRAP, create_topic, delete_prefixed, run_worker, scratch_database
from stream_app.backfill import PrometheusHistory, backfill_prometheus
from stream_app.settings import Settings

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


def run() -> str:
    now = int(time.time())
    end = now - now % 86400 - 86400  # history ends at a midnight, a day ago
    minutes = HOURS * 60
    start = end - 60 * minutes
    prefix = f"bbackfill{uuid.uuid4().hex[:6]}."
    tmp = Path(tempfile.mkdtemp(prefix="spcwatch-bench-backfill-"))
    proc = None
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
        asyncio.run(create_topic(BOOTSTRAP, prefix + "metrics.samples", 4))
        settings = dataclasses.replace(Settings.from_env(), kafka_bootstrap=BOOTSTRAP, topic_prefix=prefix)
        history = PrometheusHistory(url, [f"m{m}" for m in range(METRICS)], step=60.0)
        with open(os.devnull, "w") as quiet:
            report = asyncio.run(backfill_prometheus(settings, history, start, end, 86400.0, progress_stream=quiet))
        if report.samples != n:
            raise RuntimeError(f"the backfill published {report.samples:,} samples, not {n:,}")
        publish_rate = report.samples / report.seconds
        with scratch_database() as database:
            marks = run_worker(prefix, database, ("metrics.samples",), n, rows_table="infra_metric_rollups",
                               n_rows=n, timeout=3600)
        worker_rate = marks.rate(n)
        consumed_rate = marks.rate(n, end_to_end=False)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        asyncio.run(delete_prefixed(BOOTSTRAP, prefix))
        shutil.rmtree(tmp, ignore_errors=True)
    bottleneck = min(publish_rate, worker_rate)
    full_minutes = FULL / bottleneck / 60
    publish_row = (f"| backfill: Prometheus `query_range` → history batches on Kafka | {report.samples:,} in "
                   f"{report.messages:,} messages | {publish_rate:,.0f} samples/s |")
    worker_row = (f"| cold worker, history batches → MariaDB, end to end | {n:,} | {worker_rate:,.0f} samples/s "
                  f"(consumed: {consumed_rate:,.0f}/s) |")
    return f"""## Warm start: backfill of minute history into a cold worker

Measured on a shared, busy 2-core machine (six engineers' tests beside it) on
{time.strftime("%Y-%m-%d", time.gmtime())}: timings are noisy. {RESOURCES} resources x {METRICS} metrics =
{RESOURCES * METRICS:,} series, **{HOURS} h** of minute history = {n:,} samples (a fraction of the 30 days;
the 30-day figure is extrapolated by rate, since a sample costs the same whatever the history's length: the
baseline is a rolling window of day buckets). TSDB written by `promtool` ({import_seconds:.0f} s for the
fraction, not part of a backfill), served by a real Prometheus; `backfill_prometheus` in 1-day
`query_range` chunks to Kafka; then a cold `spcwatch worker` (4 partitions, default infra config, a
rollup and a score row per sample into MariaDB) until the last rollup row is committed.

| stage | samples | rate |
| --- | ---: | ---: |
{publish_row}
{worker_row}

Extrapolated to 30 days of the ~2,000 series ({FULL:,} samples), with the backfill and the worker
overlapping (the slower one sets the pace): **~{full_minutes:.0f} minutes** to a fully warm worker, against
the 30 days a live start needs. Worker peak RSS {marks.peak_rss_mb:,.0f} MB.
"""


if __name__ == "__main__":
    print(run())
