"""UC-IT-01 end to end on the local broker and MariaDB, beside the Faust ceiling.

A real ``spcwatch worker`` subprocess consumes a pre-filled topic; the rate is
samples counted on its ``/metrics`` from the first to the last, so start-up is
excluded. The sink writes every row to MariaDB (rollups and anomaly scores:
two rows per sample), as in production.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import tracemalloc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.common import (
    BOOTSTRAP,
    WorkerRun,
    create_topic,
    delete_prefixed,
    fill_topic,
    mysql_url,
    run_worker,
    scratch_database,
    wait_consumed,
    worker,
)
from bench.framework import faust_count_rate

ROOT = Path(__file__).resolve().parent.parent
# Enough for runs of several seconds: the harness reads /metrics once a second (bench/common.py).
# The batched input lasts several checkpoints (5 s each): shorter, the worker would consume it all
# before its first checkpoint and the run would time one big write after an idle database.
SINGLE = int(os.environ.get("SPCWATCH_BENCH_INFRA_SINGLE", "120000"))
BATCHES = int(os.environ.get("SPCWATCH_BENCH_INFRA_BATCHES", "2400"))
BATCH_SIZE = 500
# Worker memory with 100k series: 10,000 resources x 10 metrics, a day and a bit of hourly points
# (every hour-of-day slot of the seasonal profile filled, the first baseline bucket closed).
MEMORY_RESOURCES = int(os.environ.get("SPCWATCH_BENCH_INFRA_MEMORY_RESOURCES", "10000"))
MEMORY_METRICS = 10
MEMORY_HOURS = 26
LATENCY_FIXED_RATE = 2000  # messages/s: the latency figure comparable from run to run
RESOURCES = 2000
T0 = 1_771_286_400.0


def _single(i: int) -> bytes:
    return orjson.dumps({"ts": T0 + 60.0 * (i // RESOURCES), "resource_type": "ec2", "source": "cloudwatch",
                         "resource_id": f"i-{i % RESOURCES:05d}", "metric": "CPUUtilization",
                         "value": 40.0 + (i % 13)})


def _batch(i: int) -> bytes:
    """500 samples of one resource: 10 metrics x 50 minutes (a backfill or a busy exporter)."""
    rid = f"i-{i % RESOURCES:05d}"
    start = T0 + 60.0 * 50 * (i // RESOURCES)
    return orjson.dumps({"samples": [
        {"ts": start + 60.0 * (k // 10), "resource_type": "ec2", "source": "cloudwatch", "resource_id": rid,
         "metric": f"m{k % 10}", "value": 40.0 + (k % 7)} for k in range(BATCH_SIZE)]})


def _memory_batch(i: int) -> bytes:
    """One resource's whole history in one message (10 metrics x 26 hourly points)."""
    rid = f"m-{i:05d}"
    return orjson.dumps({"samples": [
        {"ts": T0 + 3600.0 * h, "resource_type": "ec2", "source": "cloudwatch", "resource_id": rid,
         "metric": f"m{m}", "value": 40.0 + (7 * h + m) % 11}
        for h in range(MEMORY_HOURS) for m in range(MEMORY_METRICS)]})


def _key_memory(i: int) -> bytes:
    return f"m-{i:05d}".encode()


def _key_single(i: int) -> bytes:
    return f"i-{i % RESOURCES:05d}".encode()


@dataclass
class WorkerRate:
    end_to_end: float  # samples/s until every sample's rollup row is committed in MariaDB
    consumed: float  # samples/s until the worker has counted every sample (rows may still be in flight)
    run: WorkerRun  # its marks and memory


def worker_rate(prefix: str, expected: int, env: dict[str, str] | None = None,
                command: tuple[str, ...] = ("-m", "stream_app.cli", "worker"), rows: bool = True) -> WorkerRate:
    """A real worker over a pre-filled topic, with a database of its own.

    Every sample here is a series-minute of its own, so the rollup rows count the samples
    committed. ``rows=False`` (a worker that writes nothing) times consumption only.
    """
    with scratch_database() as database:
        marks = run_worker(prefix, database, ("metrics.samples",), expected, env=env, command=command,
                           rows_table="infra_metric_rollups" if rows else "", n_rows=expected if rows else 0)
    return WorkerRate(marks.rate(expected), marks.rate(expected, end_to_end=False), marks)


def _histogram_quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """Prometheus ``histogram_quantile``: linear interpolation inside the bucket."""
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if bound == float("inf"):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(count - lower_count, 1e-9)
        lower_bound, lower_count = bound, count
    return lower_bound


def alert_latency(rate: float, series: int = 200,
                  live_seconds: float = 20.0) -> tuple[float, float, int]:
    """p50/p99 event-to-alert seconds at ``rate`` single-sample messages/s, samples stamped *now*.

    Three days of half-hourly history warm the baselines; then every series gets
    one spike (x5) at a random moment of the live phase.
    """
    import random
    import urllib.request

    from aiokafka import AIOKafkaProducer

    suffix = uuid.uuid4().hex[:6]
    prefix = f"blat{suffix}."
    topic = prefix + "metrics.samples"
    now = time.time()
    rng = random.Random(1)
    history = [
        orjson.dumps({"samples": [{"ts": now - 3 * 86400 + 1800 * k, "resource_type": "ec2", "resource_id": f"r{i}",
                                   "metric": "CPUUtilization", "value": 50 + rng.gauss(0, 2)}
                                  for k in range(3 * 48 - 2)]}) for i in range(series)]
    rounds = int(rate * live_seconds / series)
    spike_round = [rng.randrange(2, rounds) for _ in range(series)]

    async def produce_history() -> None:
        await create_topic(BOOTSTRAP, topic, 4)
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=10)
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send(topic, m, key=f"r{i}".encode()) for i, m in enumerate(history)])
        finally:
            await producer.stop()

    async def produce_live() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=BOOTSTRAP, linger_ms=2)
        await producer.start()
        started = time.perf_counter()
        try:
            for r in range(rounds):
                for i in range(series):
                    value = 50 + rng.gauss(0, 2)
                    if r == spike_round[i]:
                        value *= 5
                    await producer.send(topic, orjson.dumps({
                        "ts": time.time(), "resource_type": "ec2", "resource_id": f"r{i}",
                        "metric": "CPUUtilization", "value": value}), key=f"r{i}".encode())
                    sent = r * series + i + 1
                    ahead = sent / rate - (time.perf_counter() - started)
                    if ahead > 0.005:
                        await asyncio.sleep(ahead)
            await producer.flush()
        finally:
            await producer.stop()

    asyncio.run(produce_history())
    try:
        with scratch_database() as database, worker(prefix, database) as port:
            wait_consumed(port, ("metrics.samples",), series * len(range(3 * 48 - 2)))
            asyncio.run(produce_live())
            time.sleep(10)  # the last spikes' alerts
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
    finally:
        asyncio.run(delete_prefixed(BOOTSTRAP, prefix))
    buckets = []
    for line in text.splitlines():
        if line.startswith("spcwatch_event_to_alert_seconds_bucket{"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    return _histogram_quantile(buckets, 0.5), _histogram_quantile(buckets, 0.99), int(buckets[-1][1])


def verdict(met: bool) -> str:
    return "met" if met else "not met"


def processor_rate(make: Callable[[int], bytes], messages: int) -> float:
    """Samples/s of decode + ``InfraProcessor.process`` alone, in this process (no Kafka, no database)."""
    from agents.core.events import DECODERS
    from agents.infra import InfraProcessor, InfraSettings

    processor = InfraProcessor(InfraSettings())
    decode = DECODERS["metrics.samples"]
    store: dict = {}
    raw = [make(i) for i in range(messages)]
    for message in raw[:messages // 4]:  # the first sample of a series builds its detector
        processor.process(store, "metrics.samples", decode(message).events)
    started = time.perf_counter()
    samples = 0
    for message in raw[messages // 4:]:
        events = decode(message).events
        processor.process(store, "metrics.samples", events)
        samples += len(events)
    return samples / (time.perf_counter() - started)


def sink_rate(checkpoints: int = 4) -> tuple[float, float]:
    """``Sink.upsert`` alone for the batched input's rows, one checkpoint after another.

    Returns rows/s (wall clock: this process and MariaDB) and this process's CPU µs per row
    (what the sink costs the worker's core; the database works on the other).
    """
    from agents.core.events import DECODERS
    from agents.infra import InfraProcessor, InfraSettings
    from stream_app.runtime.db import create_engine, upgrade
    from stream_app.runtime.sink import Sink

    processor = InfraProcessor(InfraSettings())
    decode = DECODERS["metrics.samples"]
    store: dict = {}
    per_checkpoint = BATCHES // checkpoints
    outputs = []
    for c in range(checkpoints):
        rows: dict[str, list[dict]] = {}
        for i in range(c * per_checkpoint, (c + 1) * per_checkpoint):
            for table, table_rows in processor.process(store, "metrics.samples", decode(_batch(i)).events).rows.items():
                rows.setdefault(table, []).extend(table_rows)
        outputs.append(rows)

    async def write(url: str) -> tuple[float, float]:
        engine = create_engine(url)
        try:
            await upgrade(engine)
            sink = Sink(engine)
            started, cpu, n = time.perf_counter(), time.process_time(), 0
            for rows in outputs:
                for table, table_rows in rows.items():
                    n += await sink.upsert(table, table_rows)
            return n / (time.perf_counter() - started), (time.process_time() - cpu) / n * 1e6
        finally:
            await engine.dispose()

    with scratch_database() as database:
        return asyncio.run(write(mysql_url(database)))


def memory_per_100k_series(seasonality: str, days: int) -> tuple[float, float]:
    """MB per 100k series after ``days`` of hourly points: (live detectors, their stored states).

    Live detectors are what the worker's write-back cache holds (up to
    ``SPCWATCH_STATE_CACHE_KEYS`` resources per partition); stored states are the JSON
    objects the Faust table keeps for every resource. Python heap, tracemalloc.
    """
    import gc

    from agents.core.events import sample_from_obj
    from agents.infra import InfraProcessor, InfraSettings

    processor = InfraProcessor(InfraSettings(seasonality=seasonality))
    store: dict = {}
    resources, metrics = 20, 10
    tracemalloc.start()
    for day in range(days):  # one call per resource-day: the batched path, quick
        for r in range(resources):
            processor.process(store, "metrics.samples", [sample_from_obj(
                {"ts": T0 + 86400.0 * day + 3600.0 * h, "resource_id": f"r{r}", "metric": f"m{m}",
                 "value": 50.0 + m + (7 * h + day) % 5}) for h in range(24) for m in range(metrics)])
    gc.collect()
    live = tracemalloc.get_traced_memory()[0]
    states = {key: processor.dump(monitor) for key, monitor in store.items()}
    gc.collect()
    stored = tracemalloc.get_traced_memory()[0] - live
    tracemalloc.stop()
    del states
    scale = 100_000 / (resources * metrics) / 2**20
    return live * scale, stored * scale


def run() -> str:
    suffix = uuid.uuid4().hex[:6]
    single_prefix, plain_prefix, batch_prefix = f"bsingle{suffix}.", f"bplain{suffix}.", f"bbatch{suffix}."
    signals_prefix, floor_prefix, gc_prefix = f"bsignals{suffix}.", f"bfloor{suffix}.", f"bgc{suffix}."
    memory_prefix = f"bmem{suffix}."
    prefixes = (single_prefix, plain_prefix, batch_prefix, signals_prefix, floor_prefix, gc_prefix, memory_prefix)
    inputs = [(_single, SINGLE, _key_single)] * 2 + [(_batch, BATCHES, _key_single)] * 2 + \
        [(_single, SINGLE, _key_single)] * 2 + [(_memory_batch, MEMORY_RESOURCES, _key_memory)]
    try:
        for prefix, (make, count, key) in zip(prefixes, inputs, strict=True):
            asyncio.run(create_topic(BOOTSTRAP, prefix + "metrics.samples", 4))
            asyncio.run(fill_topic(BOOTSTRAP, prefix + "metrics.samples", count, make, key))
        ceiling = statistics.median(faust_count_rate(single_prefix + "metrics.samples", SINGLE) for _ in range(3))
        single = worker_rate(single_prefix, SINGLE)
        floor = worker_rate(floor_prefix, SINGLE, command=("-m", "bench.runner_floor"), rows=False)
        default_gc = worker_rate(gc_prefix, SINGLE, command=("-m", "bench.worker_default_gc"))
        plain = worker_rate(plain_prefix, SINGLE, {"SPCWATCH_INFRA_SEASONALITY": "none"})
        batched = worker_rate(batch_prefix, BATCHES * BATCH_SIZE)
        signals = worker_rate(signals_prefix, BATCHES * BATCH_SIZE, {"SPCWATCH_INFRA_SCORES": "signals"})
        memory = worker_rate(memory_prefix, MEMORY_RESOURCES * MEMORY_METRICS * MEMORY_HOURS)
        p50, p99, n_alerts = alert_latency(single.end_to_end / 2)
        fixed_p50, fixed_p99, fixed_alerts = alert_latency(LATENCY_FIXED_RATE)
    finally:
        for prefix in prefixes:
            asyncio.run(delete_prefixed(BOOTSTRAP, prefix))
    alone_single = processor_rate(_single, SINGLE)
    alone_batch = processor_rate(_batch, BATCHES)
    sink_rows, sink_cpu_us = sink_rate()
    heap = {(seasonality, days): memory_per_100k_series(seasonality, days)
            for seasonality in ("hour_of_day", "none") for days in (2, 31)}

    def row(label: str, samples: int, r: WorkerRate) -> str:
        return (f"| {label} | {samples:,} | {r.end_to_end:,.0f} | {r.end_to_end / ceiling:.2f} | {r.consumed:,.0f} "
                f"| {r.run.peak_rss_mb:,.0f} MB |")

    return f"""## UC-IT-01 infrastructure worker, end to end (Kafka → worker → MariaDB)

One `spcwatch worker` process, 4 partitions, {RESOURCES:,} resources, default infra config, every row
written to MariaDB (a rollup row and an anomaly-score row per sample), each run with a database of its
own. **End to end** is samples/s from the first consumed sample until the last sample's rows are
committed in MariaDB (start-up excluded); *consumed* stops the clock when the worker has counted the
last sample, while up to two checkpoints of rows (5 s of input per partition) may still be in flight,
so it flatters short runs. The Faust count-only ceiling was measured in this run on the single-sample
topic (median of 3).

| input | samples | samples/s end to end | x count-only ({ceiling:,.0f}/s) | samples/s consumed | worker peak RSS |
| --- | ---: | ---: | ---: | ---: | ---: |
{row("single-sample messages", SINGLE, single)}
{row("*single-sample messages, runner floor (a processor that does nothing; no rows)*", SINGLE, floor)}
{row("*single-sample messages, CPython's default GC thresholds*", SINGLE, default_gc)}
{row("single-sample, `SEASONALITY=none`", SINGLE, plain)}
{row("500-sample batches", BATCHES * BATCH_SIZE, batched)}
{row("500-sample batches, `SCORES=signals`", BATCHES * BATCH_SIZE, signals)}
| *processor alone, in process, single samples* | | {alone_single:,.0f} | {alone_single / ceiling:.2f} | | |
| *processor alone, in process, 500-sample batches* | | {alone_batch:,.0f} | {alone_batch / ceiling:.2f} | | |
| *sink alone, in process: rows/s into MariaDB (rollups + scores, one connection)* | | \
{sink_rows:,.0f} rows/s | | {sink_cpu_us:.1f} µs CPU/row | |

`SCORES=signals` writes anomaly-score rows only for points that signal (rollups still per minute).
"Processor alone" is decode + detection + building the rows, without Kafka or the database. "Sink
alone" is `stream_app.runtime.sink.Sink.upsert` of the processor's rows for the batched input, as a checkpoint
writes them: rows/s on the wall clock (the worker writes checkpoints one after another on one
connection, so this bounds the end-to-end rate at half of it in samples/s), and the CPU the writing
process spends per row (driver escaping, statement building). The runner floor is
`python -m bench.runner_floor`: the same worker with one processor that returns nothing (Faust,
decoding and validation, re-routing, checkpoints, acknowledgements, the worker's metrics).
The default-GC row is `python -m bench.worker_default_gc`: the worker without `tune_gc()`
(`stream_app/runtime/app.py`), i.e. with CPython's collection thresholds, under which collections traverse the
detectors' long-lived heap over and over: the tuned worker consumes {single.consumed / default_gc.consumed:.2f}x
as fast, end to end {single.end_to_end / default_gc.end_to_end:.2f}x.

Targets (issue #4), end to end: single-sample messages >= 0.8 x the count-only rate:
**{verdict(single.end_to_end >= 0.8 * ceiling)}** ({single.end_to_end / ceiling:.2f}); 500-sample batches
>= 200,000 samples/s: **{verdict(batched.end_to_end >= 200_000)}** ({batched.end_to_end:,.0f}).
Per message: the count-only agent {1e6 / ceiling:.0f} µs, the runner floor {1e6 / floor.consumed:.0f} µs,
the processor alone {1e6 / alone_single:.0f} µs, the worker {1e6 / single.end_to_end:.0f} µs in all (sink
rows, state checkpoints); the floor alone is {floor.consumed / ceiling:.2f} x the count-only rate. A
batched sample costs the worker's core {1e6 / alone_batch:.1f} µs of decoding and detection and
{2 * sink_cpu_us:.1f} µs of sink work for its two rows, {1e6 / alone_batch + 2 * sink_cpu_us:.1f} µs before
Faust and checkpoints: at most {1e6 / (1e6 / alone_batch + 2 * sink_cpu_us):,.0f} samples/s for one process
on this machine; and the database, one write at a time, takes {sink_rows / 2:,.0f} samples/s of rows.

Event-to-alert latency, samples stamped with the wall clock, 200 warmed series, one x5 spike each
(`spcwatch_event_to_alert_seconds`, interpolated inside histogram buckets as Prometheus's
`histogram_quantile` does). Every sample of these 200 series moves its detector and its rows, so
this load costs more per sample than the 2,000-resource run above:

| offered load | p50 | p99 | alerts observed |
| --- | ---: | ---: | ---: |
| half the single-sample rate above ({single.end_to_end / 2:,.0f} messages/s) | {p50:.2f} s | {p99:.2f} s | {n_alerts} |
| {LATENCY_FIXED_RATE:,} messages/s | {fixed_p50:.2f} s | {fixed_p99:.2f} s | {fixed_alerts} |

Worker memory with 100,000 series: one worker over {MEMORY_RESOURCES:,} resources x {MEMORY_METRICS} metrics,
{MEMORY_HOURS} hourly points per series (every hour-of-day slot filled, the first baseline bucket
closed), one message of {MEMORY_HOURS * MEMORY_METRICS} samples per resource, default config, every row written:

| series | samples | samples/s end to end | worker RSS when done | peak RSS | idle worker (runner floor run, peak) |
| --- | ---: | ---: | ---: | ---: | ---: |
| {MEMORY_RESOURCES * MEMORY_METRICS:,} | {MEMORY_RESOURCES * MEMORY_METRICS * MEMORY_HOURS:,} | \
{memory.end_to_end:,.0f} | {memory.run.rss_mb:,.0f} MB | {memory.run.peak_rss_mb:,.0f} MB | \
{floor.run.peak_rss_mb:,.0f} MB |

Where it goes, and what a full baseline costs (Python heap per 100,000 series, tracemalloc,
hourly points, `bench_infra.memory_per_100k_series`). *Live* detectors are what the write-back
cache holds, up to `SPCWATCH_STATE_CACHE_KEYS` resources per partition (default 20,000; fewer
bound the live part and cost a state load per evicted resource); *stored* states are the JSON
objects the Faust table keeps for every resource of the worker's partitions:

| seasonality | baseline filled | live detectors | stored states | together |
| --- | --- | ---: | ---: | ---: |
| `hour_of_day` (default) | 2 days | {heap["hour_of_day", 2][0]:,.0f} MB | {heap["hour_of_day", 2][1]:,.0f} MB | \
{sum(heap["hour_of_day", 2]):,.0f} MB |
| `hour_of_day` (default) | 31 days (full 30-day window) | {heap["hour_of_day", 31][0]:,.0f} MB | \
{heap["hour_of_day", 31][1]:,.0f} MB | {sum(heap["hour_of_day", 31]):,.0f} MB |
| `none` | 2 days | {heap["none", 2][0]:,.0f} MB | {heap["none", 2][1]:,.0f} MB | {sum(heap["none", 2]):,.0f} MB |
| `none` | 31 days (full 30-day window) | {heap["none", 31][0]:,.0f} MB | {heap["none", 31][1]:,.0f} MB | \
{sum(heap["none", 31]):,.0f} MB |

A worker that owns 100,000 series with full seasonal baselines needs about
{(sum(heap["hour_of_day", 31]) + floor.run.peak_rss_mb) / 1024:,.1f} GB; the estate this replaces (~376
resources, ~2,000 series) about {(sum(heap["hour_of_day", 31]) / 50 + floor.run.peak_rss_mb):,.0f} MB. More
series per worker than memory allows: more partitions and workers (each owns its partitions'
resources), `SEASONALITY=none`, or a smaller state cache.
"""


if __name__ == "__main__":
    print(run())
