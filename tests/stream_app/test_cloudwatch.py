"""``spcwatch collect cloudwatch`` against moto's server mode (AWS itself is unreachable here).

The test starts moto on a free loopback port, seeds EC2/RDS/ElastiCache/EKS/MSK resources and
``PutMetricData`` history, and checks discovery, the samples on a real Kafka topic, the
lookback's once-only delivery, throttling retries (through a small proxy that throttles) and
the one-line error for bad credentials.
"""

from __future__ import annotations

import asyncio
import http.server
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import boto3
import orjson
import pytest
from moto.server import ThreadedMotoServer

from agents.core.events import decode_samples
from agents.infra import InfraProcessor, InfraSettings
from stream_app import cloudwatch
from stream_app.cloudwatch import CloudWatchCollector, Discovery
from tests.conftest import free_port
from tests.stream_app.runtime.test_worker import consume

REGION = "us-east-1"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
NOW = time.time()
MINUTE = NOW - NOW % 60


def _client(endpoint: str, service: str):  # type: ignore[no-untyped-def]
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing",
                        aws_secret_access_key="testing")


def _put(endpoint: str, namespace: str, metric: str, dims: dict[str, str], minutes: range, base: float) -> None:
    _client(endpoint, "cloudwatch").put_metric_data(Namespace=namespace, MetricData=[
        {"MetricName": metric, "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()],
         "Timestamp": datetime.fromtimestamp(MINUTE - 60 * m, UTC), "Value": base + m} for m in minutes])


def seed(endpoint: str) -> dict[str, str]:
    ec2 = _client(endpoint, "ec2").run_instances(
        ImageId="ami-12c6146b", MinCount=2, MaxCount=2, InstanceType="m5.large",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "web"},
                                                                  {"Key": "team", "Value": "shop"}]}])
    instance = ec2["Instances"][0]["InstanceId"]
    _client(endpoint, "rds").create_db_instance(
        DBInstanceIdentifier="aws-luckyus-dbatest-rw", DBInstanceClass="db.r6g.large", Engine="mysql",
        MasterUsername="admin", MasterUserPassword="password1", AllocatedStorage=20,
        Tags=[{"Key": "env", "Value": "test"}])
    _client(endpoint, "elasticache").create_cache_cluster(
        CacheClusterId="redis-orders", Engine="redis", CacheNodeType="cache.t3.micro", NumCacheNodes=1)
    _client(endpoint, "eks").create_cluster(name="eks-prod", roleArn="arn:aws:iam::123456789012:role/eks",
                                            resourcesVpcConfig={}, tags={"env": "prod"})
    _client(endpoint, "kafka").create_cluster_v2(ClusterName="msk-events", Tags={"env": "prod"}, Provisioned={
        "BrokerNodeGroupInfo": {"InstanceType": "kafka.m5.large", "ClientSubnets": ["subnet-1"]},
        "KafkaVersion": "3.6.0", "NumberOfBrokerNodes": 2})
    # History: 5 minutes of the RDS instance's CPU and the first instance's CPU, ending a minute ago.
    _put(endpoint, "AWS/RDS", "CPUUtilization", {"DBInstanceIdentifier": "aws-luckyus-dbatest-rw"}, range(1, 6), 40)
    _put(endpoint, "AWS/EC2", "CPUUtilization", {"InstanceId": instance}, range(1, 6), 10)
    return {"instance": instance}


@pytest.fixture(scope="module")
def moto() -> Iterator[tuple[str, dict[str, str]]]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        yield endpoint, seed(endpoint)
    finally:
        server.stop()


def _collector(endpoint: str, **kwargs) -> CloudWatchCollector:  # type: ignore[no-untyped-def]
    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return CloudWatchCollector(session, REGION, endpoint_url=endpoint, **kwargs)


def test_discovery_lists_every_service_with_tags_and_standard_metrics(moto: tuple[str, dict[str, str]]) -> None:
    endpoint, seeded = moto
    resources = Discovery(_collector(endpoint).client, REGION).resources()
    by_id = {r.resource_id: r for r in resources}
    assert sorted(r.resource_type for r in resources) == ["ec2", "ec2", "eks", "elasticache", "msk", "rds"]
    ec2 = by_id[seeded["instance"]]
    assert ec2.labels["instance_type"] == "m5.large" and ec2.labels["tag_name"] == "web"
    assert ec2.labels["tag_team"] == "shop" and ec2.labels["region"] == REGION
    rds = by_id["aws-luckyus-dbatest-rw"]
    assert rds.labels["engine"] == "mysql" and rds.labels["tag_env"] == "test"
    assert [q.metric for q in rds.queries] == [m for m, _ in cloudwatch.STANDARD_METRICS["rds"][1]]
    assert by_id["redis-orders"].labels["engine"] == "redis"
    assert by_id["eks-prod"].labels["tag_env"] == "prod"
    msk = by_id["msk-events"]
    brokers = {dict(q.labels).get("broker") for q in msk.queries if q.labels}
    assert brokers == {"1", "2"}  # broker-level series, one per broker
    assert len(msk.queries) == 4 + 2 * len(cloudwatch.MSK_BROKER_METRICS)


def test_lookback_fetches_again_but_each_datapoint_is_sent_once(moto: tuple[str, dict[str, str]]) -> None:
    endpoint, _ = moto
    collector = _collector(endpoint, lookback=900, services=("rds",))
    first = collector.poll_sync(MINUTE + 1)
    rds = [s for s in first if s["metric"] == "CPUUtilization"]
    assert [s["value"] for s in rds] == [45, 44, 43, 42, 41]  # time order, minutes 5..1 ago
    assert collector.stats.metrics_requested == len(cloudwatch.STANDARD_METRICS["rds"][1])
    assert collector.stats.api_calls >= 2  # DescribeDBInstances + GetMetricData
    assert collector.poll_sync(MINUTE + 2) == []  # the same window again: nothing new
    # A late datapoint: the minute that just ended shows up after the poll that asked for it.
    _put(endpoint, "AWS/RDS", "CPUUtilization", {"DBInstanceIdentifier": "aws-luckyus-dbatest-rw"}, range(0, 1), 40)
    later = collector.poll_sync(MINUTE + 61)
    assert [(s["ts"], s["value"]) for s in later] == [(MINUTE, 40.0)]


class _ThrottlingProxy(http.server.ThreadingHTTPServer):
    """Forwards to moto, but answers the first ``throttle`` GetMetricData calls with a throttling error."""

    def __init__(self, target: str, throttle: int) -> None:
        self.target, self.throttle, self.throttled = target, throttle, 0
        super().__init__(("127.0.0.1", 0), _ProxyHandler)


class _ProxyHandler(http.server.BaseHTTPRequestHandler):
    server: _ThrottlingProxy

    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        target = self.headers.get("X-Amz-Target", "")
        if target.endswith(".GetMetricData") and self.server.throttled < self.server.throttle:
            self.server.throttled += 1
            # CloudWatch's JSON-protocol throttling answer, as AWS sends it
            payload = b'{"__type": "Throttling", "message": "Rate exceeded"}'
            self.send_response(400)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("x-amzn-query-error", "Throttling;Sender")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
        request = urllib.request.Request(self.server.target + self.path, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                status, reply, reply_headers = response.status, response.read(), response.headers
        except urllib.error.HTTPError as exc:
            status, reply, reply_headers = exc.code, exc.read(), exc.headers
        self.send_response(status)
        for key, value in reply_headers.items():
            if key.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    do_GET = do_POST


def test_throttling_is_retried_and_counted(moto: tuple[str, dict[str, str]]) -> None:
    from prometheus_client import CollectorRegistry

    endpoint, _ = moto
    proxy = _ThrottlingProxy(endpoint, throttle=2)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        registry = CollectorRegistry()
        collector = _collector(f"http://127.0.0.1:{proxy.server_address[1]}", services=("rds",), registry=registry)
        samples = collector.poll_sync(MINUTE + 1)
    finally:
        proxy.shutdown()
    assert proxy.throttled == 2
    assert any(s["metric"] == "CPUUtilization" for s in samples)  # the poll got through after the retries
    assert collector.stats.throttled == 2
    assert registry.get_sample_value("spcwatch_collect_throttled_total") == 2
    assert registry.get_sample_value("spcwatch_collect_api_calls_last_poll") == collector.stats.api_calls >= 4


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "stream_app.cli", *args], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=120)


@pytest.mark.integration
def test_collect_command_publishes_labelled_batches_that_reach_the_inventory(
        moto: tuple[str, dict[str, str]], kafka_bootstrap: str, topic_prefix: str) -> None:
    endpoint, seeded = moto
    env = {"SPCWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap, "SPCWATCH_TOPIC_PREFIX": topic_prefix, **CREDS}
    assert _cli("topics", "create", env=env).returncode == 0
    result = _cli("collect", "cloudwatch", "--region", REGION, "--endpoint-url", endpoint, "--discover", "--once",
                  "--lookback", "7200", env=env)  # wall clock: the seeded minutes stay inside however late this runs
    assert result.returncode == 0, result.stderr
    # 5 minutes of two CPU series (the others have no data), plus the minute the lookback test adds to the
    # RDS series once that minute is complete: 10 or 11, whatever the order and pace of the tests
    published = int(re.search(r"published (\d+) samples", result.stderr).group(1))  # type: ignore[union-attr]
    assert published in (10, 11), result.stderr
    records = asyncio.run(consume(kafka_bootstrap, topic_prefix + "metrics.samples", 2))
    assert sum(len(orjson.loads(r.value)["samples"]) for r in records) == published
    assert sorted(r.key for r in records) == sorted([b"aws-luckyus-dbatest-rw", seeded["instance"].encode()])
    processor = InfraProcessor(InfraSettings())
    store: dict = {}
    for record in records:
        decoded = decode_samples(record.value)
        assert decoded.errors == [] and len(decoded.events) in (5, 6)
        assert {s.source for s in decoded.events} == {"cloudwatch"}
        assert {s.resource_id for s in decoded.events} == {record.key.decode()}
        out = processor.process(store, "metrics.samples", decoded.events)
        (inventory,) = out.rows["infra_inventory"]
        assert inventory["source"] == "cloudwatch" and inventory["labels"]["region"] == REGION
        if inventory["resource_type"] == "ec2":
            assert inventory["labels"]["tag_name"] == "web" and inventory["labels"]["instance_type"] == "m5.large"
        else:
            assert inventory["resource_type"] == "rds" and inventory["labels"]["engine"] == "mysql"


def test_bad_credentials_and_bad_flags_are_one_line_and_exit_2(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    # moto checks signatures against its IAM only when told to (INITIAL_NO_AUTH_ACTION_COUNT=0).
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                               "-p", str(port)], env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        bad = _cli("collect", "cloudwatch", "--region", REGION, "--endpoint-url", f"http://127.0.0.1:{port}",
                   "--discover", "--once", env={"AWS_ACCESS_KEY_ID": "AKIAWRONG", "AWS_SECRET_ACCESS_KEY": "nope",
                                                "SPCWATCH_KAFKA_BOOTSTRAP": "127.0.0.1:9092"})
    finally:
        server.terminate()
        server.wait(10)
    assert bad.returncode == 2, bad.stderr
    (line,) = bad.stderr.strip().splitlines()
    assert line.startswith("spcwatch: error: AWS refused DescribeInstances: ")
    assert "nope" not in bad.stderr  # the secret is never printed
    none = _cli("collect", "cloudwatch", "--region", REGION, "--endpoint-url", f"http://127.0.0.1:{port}",
                "--discover", "--once", env={"HOME": str(tmp_path), "AWS_EC2_METADATA_DISABLED": "true"})
    assert none.returncode == 2
    assert none.stderr.strip() == "spcwatch: error: no AWS credentials found (environment, profile or instance role)"
    spec = _cli("collect", "cloudwatch", "--region", REGION, "--metric", "AWS/RDS", env={})
    assert spec.returncode == 2
    assert spec.stderr.strip() == "spcwatch: error: --metric must be NAMESPACE:METRIC[:STAT], got 'AWS/RDS'"


@pytest.mark.integration
def test_backfill_cloudwatch_publishes_the_history_as_history_batches(
        moto: tuple[str, dict[str, str]], kafka_bootstrap: str, topic_prefix: str) -> None:
    endpoint, _ = moto
    env = {"SPCWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap, "SPCWATCH_TOPIC_PREFIX": topic_prefix, **CREDS}
    assert _cli("topics", "create", env=env).returncode == 0
    result = _cli("backfill", "cloudwatch", "--region", REGION, "--endpoint-url", endpoint, "--discover",
                  "--services", "rds", "--since", "2h", "--chunk", "30m",
                  "--until", datetime.fromtimestamp(MINUTE, UTC).isoformat(), env=env)  # before a later test's point
    assert result.returncode == 0, result.stderr
    assert "published 5 samples of history" in result.stderr  # the RDS instance's 5 minutes
    (record,) = asyncio.run(consume(kafka_bootstrap, topic_prefix + "metrics.samples", 1))
    decoded = decode_samples(record.value)
    assert record.key == b"aws-luckyus-dbatest-rw" and all(s.history for s in decoded.events)
    assert sorted(s.value for s in decoded.events) == [41, 42, 43, 44, 45]


def test_without_discovery_a_metric_is_queried_for_every_dimension_set_listed(
        moto: tuple[str, dict[str, str]]) -> None:
    endpoint, seeded = moto
    collector = _collector(endpoint, discover=False, metric_specs=[("AWS/EC2", "CPUUtilization", "Maximum")])
    samples = collector.poll_sync(MINUTE + 1)
    assert {s["resource_id"] for s in samples} == {seeded["instance"]}
    assert {s["resource_type"] for s in samples} == {"ec2"} and len(samples) == 5
    assert all(s["labels"]["stat"] == "Maximum" for s in samples)  # not the table's statistic: labelled


def test_more_than_500_queries_take_several_get_metric_data_calls(moto: tuple[str, dict[str, str]]) -> None:
    endpoint, _ = moto
    collector = _collector(endpoint, discover=False)
    resource = cloudwatch.Resource("rds", "aws-luckyus-dbatest-rw", {}, [
        cloudwatch.Query("rds", "aws-luckyus-dbatest-rw", "AWS/RDS", "CPUUtilization", "Average",
                         (("DBInstanceIdentifier", "aws-luckyus-dbatest-rw"),), (("copy", str(i)),))
        for i in range(1001)])
    samples = collector.fetch([resource], MINUTE - 900, MINUTE + 60)
    assert collector.stats.metrics_requested == 1001 and collector.stats.api_calls == 3
    per_copy = sum(1 for s in samples if s["labels"]["copy"] == "0")
    assert per_copy >= 5 and len(samples) == 1001 * per_copy  # every query of every call answered
