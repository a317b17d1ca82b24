"""Framework ceilings on the local broker: raw aiokafka vs a count-only Faust agent.

Every later figure is reported as a ratio to these, measured in the same run,
so a slower or faster machine does not change the conclusions.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import orjson
from aiokafka import AIOKafkaConsumer

from bench.common import BOOTSTRAP, create_topic, delete_topics, fill_topic, median_of, unique

MESSAGES = int(os.environ.get("SPCWATCH_BENCH_MESSAGES", "300000"))
FAUST_MESSAGES = int(os.environ.get("SPCWATCH_BENCH_FAUST_MESSAGES", "100000"))
RUNS = int(os.environ.get("SPCWATCH_BENCH_RUNS", "3"))
PARTITIONS = 4


@dataclass
class Ceilings:
    produce_rate: float
    getmany_rate: float
    getmany_orjson_rate: float
    faust_count_rate: float
    runs: dict[str, list[float]]


async def _consume_all(topic: str, count: int, decode: bool) -> float:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=BOOTSTRAP, group_id=unique("raw"),
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=4 * 1024 * 1024, fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        seen = 0
        started = time.perf_counter()  # includes the first fetch, as any consumer pays it
        while seen < count:
            batches = await consumer.getmany(timeout_ms=1000, max_records=50000)
            for records in batches.values():
                if decode:
                    for record in records:
                        orjson.loads(record.value)
                seen += len(records)
        return count / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def faust_count_rate(topic: str, count: int) -> float:
    """Run the count-only agent in its own process; events/s from first to last event."""
    from tests.conftest import free_port  # one helper for a free port, shared with the tests

    cmd = [sys.executable, "-m", "bench.faust_count", "--bootstrap", BOOTSTRAP, "--topic", topic,
           "--count", str(count), "--group", unique("faust").replace(".", "-"), "--port", str(free_port())]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # faust prints a banner and terminal escapes first
            if "RESULT " in line:
                result = orjson.loads(line.split("RESULT ", 1)[1])
                break
        else:
            raise RuntimeError(f"faust count-only worker produced no result (exit {proc.wait()})")
        return result["events"] / result["seconds"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def measure() -> Ceilings:
    topic = unique("samples")
    asyncio.run(create_topic(BOOTSTRAP, topic, PARTITIONS))
    try:
        produce = asyncio.run(fill_topic(BOOTSTRAP, topic, MESSAGES))
        raw, raw_runs = median_of(RUNS, lambda: asyncio.run(_consume_all(topic, MESSAGES, decode=False)))
        dec, dec_runs = median_of(RUNS, lambda: asyncio.run(_consume_all(topic, MESSAGES, decode=True)))
        fst, fst_runs = median_of(RUNS, lambda: faust_count_rate(topic, FAUST_MESSAGES))
    finally:
        asyncio.run(delete_topics(BOOTSTRAP, [topic]))
    return Ceilings(produce, raw, dec, fst, {"getmany": raw_runs, "getmany+orjson": dec_runs, "faust": fst_runs})


def run() -> str:
    c = measure()

    def runs(name: str) -> str:
        return ", ".join(f"{v:,.0f}" for v in c.runs[name])

    getmany_x = c.getmany_rate / c.faust_count_rate
    orjson_x = c.getmany_orjson_rate / c.faust_count_rate
    return f"""## Framework ceilings (local Kafka, {PARTITIONS} partitions, ~150-byte messages)

What one worker process can consume before spcwatch does any work. Medians of {RUNS} runs;
raw consumers read {MESSAGES:,} messages, the Faust agent {FAUST_MESSAGES:,} (timed from its
first event to its last, so start-up and rebalancing are excluded).

| what | messages/s (median) | runs | ratio to faust count-only |
| --- | ---: | --- | ---: |
| aiokafka `getmany()` | {c.getmany_rate:,.0f} | {runs("getmany")} | {getmany_x:.1f} |
| aiokafka `getmany()` + `orjson.loads` | {c.getmany_orjson_rate:,.0f} | {runs("getmany+orjson")} | {orjson_x:.1f} |
| faust agent that only counts | {c.faust_count_rate:,.0f} | {runs("faust")} | 1.0 |
| (producer filling the topic, once) | {c.produce_rate:,.0f} | 1 | |
"""


if __name__ == "__main__":
    print(run())
