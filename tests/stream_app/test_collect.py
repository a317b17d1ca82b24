"""``spcwatch collect prometheus`` against a real Prometheus (Debian package) scraping itself."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from agents.core.events import decode_samples
from stream_app.collect import PrometheusCollector, batches
from tests.conftest import free_port
from tests.stream_app.runtime.test_worker import consume

pytestmark = pytest.mark.integration


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (.ci/run installs the Debian package)"
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: self\n"
                      f"    static_configs: [{{targets: ['127.0.0.1:{port}'], labels: {{env: test}}}}]\n")
    proc = subprocess.Popen([binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the first scrape of itself is stored
            try:
                with urllib.request.urlopen(f"{url}/api/v1/query?query=up", timeout=2) as response:
                    if orjson.loads(response.read())["data"]["result"]:
                        break
            except OSError:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("prometheus did not come up")
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


def test_poll_maps_a_vector_to_samples_with_labels(prometheus: str) -> None:
    collector = PrometheusCollector(prometheus, ["up", "prometheus_build_info", "sum(up)"])
    samples = asyncio.run(collector.poll(time.time()))
    by_metric = {s["metric"]: s for s in samples}
    up = by_metric["up"]
    assert up["value"] == 1.0
    assert up["resource_id"] == prometheus.removeprefix("http://")  # the instance label
    assert up["labels"] == {"job": "self", "env": "test"}  # every other label kept
    assert "version" in by_metric["prometheus_build_info"]["labels"]
    assert by_metric["sum(up)"]["resource_id"] == "unknown" and by_metric["sum(up)"]["labels"] == {}
    for payload in batches(samples).values():  # what is published decodes as contract samples
        decoded = decode_samples(payload)
        assert decoded.errors == [] and decoded.events


def test_collect_command_publishes_one_batch_per_resource(prometheus: str, kafka_bootstrap: str,
                                                          topic_prefix: str) -> None:
    env = {"SPCWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap, "SPCWATCH_TOPIC_PREFIX": topic_prefix,
           "PATH": "/usr/bin:/bin"}
    create = subprocess.run([sys.executable, "-m", "stream_app.cli", "topics", "create"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert create.returncode == 0, create.stderr
    result = subprocess.run([sys.executable, "-m", "stream_app.cli", "collect", "prometheus", "--url", prometheus,
                             "--query", "up", "--query", "prometheus_tsdb_head_series", "--once"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "published 2 samples" in result.stderr
    records = asyncio.run(consume(kafka_bootstrap, topic_prefix + "metrics.samples", 1))
    assert len(records) == 1  # both samples are of one resource: one message
    instance = prometheus.removeprefix("http://")
    assert records[0].key == instance.encode()
    metrics = sorted(s.metric for s in decode_samples(records[0].value).events)
    assert metrics == ["prometheus_tsdb_head_series", "up"]


def test_bad_arguments_and_unreachable_source_are_one_line() -> None:
    bad = subprocess.run([sys.executable, "-m", "stream_app.cli", "collect", "prometheus", "--url", "ftp://x",
                          "--query", "up"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip() == "spcwatch: error: --url must be an http(s) URL, got 'ftp://x'"
    port = free_port()
    down = subprocess.run([sys.executable, "-m", "stream_app.cli", "collect", "prometheus", "--once",
                           "--url", f"http://127.0.0.1:{port}", "--query", "up"],
                          capture_output=True, text=True, timeout=60)
    assert down.returncode == 69
    (line,) = down.stderr.strip().splitlines()
    assert line.startswith(f"spcwatch: error: cannot query Prometheus at http://127.0.0.1:{port}")
