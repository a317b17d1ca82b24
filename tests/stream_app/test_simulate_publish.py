"""``spcwatch simulate`` publishes what the generators produce, keyed as the contract says."""

from __future__ import annotations

import asyncio
import collections
import os
import subprocess
import sys
import time

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from agents.core.events import INPUT_TOPICS
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

ARGS = ["--speed", "max", "--history-days", "0.2", "--infra-history-days", "0", "--duration", "20m",
        "--start", "2026-02-17T10:00:00Z", "--scenario", "all", "--seed", "5"]


async def drain(bootstrap: str, topics: list[str], expected: int, timeout: float = 60) -> list:
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records: list = []
    try:
        deadline = time.monotonic() + timeout
        while len(records) < expected and time.monotonic() < deadline:
            for part in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                records.extend(part)
    finally:
        await consumer.stop()
    return records


def test_publish_sends_every_generated_event(kafka_bootstrap: str, topic_prefix: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPCWATCH_")}
    env.update(SPCWATCH_KAFKA_BOOTSTRAP=kafka_bootstrap, SPCWATCH_TOPIC_PREFIX=topic_prefix, SPCWATCH_PARTITIONS="2")
    out = tmp_path / "expected.jsonl"
    cli = [sys.executable, "-m", "stream_app.cli", "simulate", *ARGS]
    subprocess.run([*cli, "--out", str(out)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)
    expected = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    done = subprocess.run(cli, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    assert f"done: {len(expected):,} messages" in done.stderr

    records = asyncio.run(drain(kafka_bootstrap, [topic_prefix + t for t in INPUT_TOPICS], len(expected)))
    assert len(records) == len(expected)
    by_topic = collections.Counter(r.topic[len(topic_prefix):] for r in records)
    assert by_topic == collections.Counter(e["topic"] for e in expected)
    sent = sorted(orjson.dumps({"topic": r.topic[len(topic_prefix):], **orjson.loads(r.value)}) for r in records)
    assert sent == sorted(orjson.dumps(e) for e in expected)
    for record in records:
        value = orjson.loads(record.value)
        key = (value["samples"][0]["resource_id"] if "samples" in value
               else value["store_id"] if "sku" in value else value["order_id"])
        assert record.key == key.encode()
