"""CloudWatch as a metrics source: AWS discovery plus ``GetMetricData``, one poll at a time.

:class:`Discovery` lists the estate (EC2 instances, RDS instances, ElastiCache clusters and
their nodes, EKS clusters, MSK clusters and their brokers) and turns each resource into the
metric queries of :data:`STANDARD_METRICS`, with its tags and attributes as labels.
:class:`CloudWatchCollector` asks ``GetMetricData`` for them, up to 500 queries a call,
paginated, with botocore's adaptive retries for throttling (backoff with jitter), and
returns contract samples; it fits :class:`stream_app.collect.Collector`.

Late datapoints: CloudWatch publishes a minute some minutes after it ends, so every poll
asks again for the last ``lookback`` seconds, and a datapoint reaches the detector once
because the collector keeps, per series, the newest timestamp it published and sends only
newer ones (a datapoint that fills a gap *behind* that mark is counted in
``spcwatch_collect_datapoints_skipped_total`` and not sent: the detector would reject it as
out of order anyway). The period still in progress is never asked for (its value would be
partial). Credentials come from boto3's standard chain and are never logged.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from stream_app.collect import CollectError

log = logging.getLogger(__name__)

MAX_QUERIES_PER_CALL = 500  # GetMetricData's limit
SERVICES = ("ec2", "rds", "elasticache", "eks", "msk")

# service -> (namespace, [(metric, stat)]): the standard metrics of each resource (README table).
STANDARD_METRICS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "ec2": ("AWS/EC2", (("CPUUtilization", "Average"), ("NetworkIn", "Sum"), ("NetworkOut", "Sum"),
                        ("EBSReadOps", "Sum"), ("EBSWriteOps", "Sum"), ("StatusCheckFailed", "Maximum"))),
    "rds": ("AWS/RDS", (("CPUUtilization", "Average"), ("FreeableMemory", "Average"),
                        ("DatabaseConnections", "Average"), ("ReadLatency", "Average"),
                        ("WriteLatency", "Average"), ("ReadIOPS", "Average"), ("WriteIOPS", "Average"),
                        ("FreeStorageSpace", "Average"))),
    "elasticache": ("AWS/ElastiCache", (("CPUUtilization", "Average"), ("EngineCPUUtilization", "Average"),
                                        ("DatabaseMemoryUsagePercentage", "Average"),
                                        ("CurrConnections", "Average"), ("Evictions", "Sum"),
                                        ("CacheHitRate", "Average"), ("NetworkBytesIn", "Sum"),
                                        ("NetworkBytesOut", "Sum"))),
    "eks": ("ContainerInsights", (("node_cpu_utilization", "Average"), ("node_memory_utilization", "Average"),
                                  ("node_filesystem_utilization", "Average"), ("cluster_node_count", "Average"),
                                  ("cluster_failed_node_count", "Maximum"))),
    "msk": ("AWS/Kafka", (("ActiveControllerCount", "Maximum"), ("OfflinePartitionsCount", "Maximum"),
                          ("GlobalPartitionCount", "Average"), ("GlobalTopicCount", "Average"))),
}
# MSK's broker-level metrics, one series per broker (dimension "Broker ID").
MSK_BROKER_METRICS: tuple[tuple[str, str], ...] = (
    ("CpuUser", "Average"), ("KafkaDataLogsDiskUsed", "Average"), ("UnderReplicatedPartitions", "Maximum"),
    ("BytesInPerSec", "Average"), ("BytesOutPerSec", "Average"))

_AUTH_CODES = frozenset({
    "InvalidClientTokenId", "UnrecognizedClientException", "AuthFailure", "SignatureDoesNotMatch",
    "ExpiredToken", "ExpiredTokenException", "InvalidAccessKeyId", "AccessDenied", "AccessDeniedException",
    "UnauthorizedOperation", "IncompleteSignature", "MissingAuthenticationToken"})


class CredentialsError(CollectError):
    """AWS did not accept (or could not find) our credentials: retrying will not help."""

    fatal = True


_LABEL = re.compile(r"[^a-zA-Z0-9_]")


def _label_name(text: str) -> str:
    return _LABEL.sub("_", text).lower()


def _tags(pairs: Iterable[dict[str, Any]] | dict[str, str] | None) -> dict[str, str]:
    """AWS tags (``[{"Key", "Value"}]`` or a dict) as ``tag_<key>`` labels (``aws:`` tags left out)."""
    if not pairs:
        return {}
    items = pairs.items() if isinstance(pairs, dict) else ((p.get("Key", ""), p.get("Value", "")) for p in pairs)
    return {f"tag_{_label_name(k)}": str(v) for k, v in items if k and not str(k).startswith("aws:")}


@dataclass(frozen=True, slots=True)
class Query:
    """One metric of one resource: what ``GetMetricData`` is asked and what the sample says."""

    resource_type: str
    resource_id: str
    namespace: str
    metric: str
    stat: str
    dimensions: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...] = ()  # series labels (e.g. the node), beside the resource's

    @property
    def series(self) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        return (self.resource_id, self.metric, self.labels)


@dataclass(slots=True)
class Resource:
    resource_type: str
    resource_id: str
    labels: dict[str, str]
    queries: list[Query] = field(default_factory=list)


def _queries(rtype: str, rid: str, dims: tuple[tuple[str, str], ...],
             metrics: Sequence[tuple[str, str]] | None = None, namespace: str | None = None,
             labels: tuple[tuple[str, str], ...] = ()) -> list[Query]:
    ns, standard = STANDARD_METRICS[rtype]
    return [Query(rtype, rid, namespace or ns, m, s, dims, labels) for m, s in (metrics or standard)]


class Discovery:
    """The estate, from the AWS APIs (read-only ``Describe*``/``List*`` calls, paginated)."""

    def __init__(self, client: Callable[[str], Any], region: str, services: Sequence[str] = SERVICES) -> None:
        self.client = client
        self.region = region
        self.services = tuple(services)

    def resources(self) -> list[Resource]:
        found: list[Resource] = []
        for service in self.services:
            found.extend(getattr(self, f"_{service}")())
        for resource in found:
            resource.labels.setdefault("region", self.region)
        return found

    @staticmethod
    def _pages(client: Any, operation: str, key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
        for page in client.get_paginator(operation).paginate(**kwargs):
            yield from page.get(key, [])

    def _ec2(self) -> list[Resource]:
        ec2 = self.client("ec2")
        out = []
        for reservation in self._pages(ec2, "describe_instances", "Reservations",
                                       Filters=[{"Name": "instance-state-name", "Values": ["running"]}]):
            for inst in reservation.get("Instances", []):
                rid = inst["InstanceId"]
                labels = {"instance_type": inst.get("InstanceType", ""),
                          "availability_zone": inst.get("Placement", {}).get("AvailabilityZone", ""),
                          **_tags(inst.get("Tags"))}
                out.append(Resource("ec2", rid, labels, _queries("ec2", rid, (("InstanceId", rid),))))
        return out

    def _rds(self) -> list[Resource]:
        out = []
        for db in self._pages(self.client("rds"), "describe_db_instances", "DBInstances"):
            rid = db["DBInstanceIdentifier"]
            labels = {"instance_class": db.get("DBInstanceClass", ""), "engine": db.get("Engine", ""),
                      "engine_version": db.get("EngineVersion", ""),
                      "availability_zone": db.get("AvailabilityZone", ""), **_tags(db.get("TagList"))}
            if db.get("DBClusterIdentifier"):
                labels["cluster"] = db["DBClusterIdentifier"]
            out.append(Resource("rds", rid, labels, _queries("rds", rid, (("DBInstanceIdentifier", rid),))))
        return out

    def _elasticache(self) -> list[Resource]:
        client = self.client("elasticache")
        out = []
        for cluster in self._pages(client, "describe_cache_clusters", "CacheClusters", ShowCacheNodeInfo=True):
            rid = cluster["CacheClusterId"]
            labels = {"node_type": cluster.get("CacheNodeType", ""), "engine": cluster.get("Engine", ""),
                      "engine_version": cluster.get("EngineVersion", "")}
            if cluster.get("ReplicationGroupId"):
                labels["cluster"] = cluster["ReplicationGroupId"]
            if cluster.get("ARN"):
                labels.update(_tags(client.list_tags_for_resource(ResourceName=cluster["ARN"]).get("TagList")))
            nodes = [n["CacheNodeId"] for n in cluster.get("CacheNodes") or []] or ["0001"]
            queries = [q for node in nodes for q in _queries(
                "elasticache", rid, (("CacheClusterId", rid), ("CacheNodeId", node)),
                labels=(("cache_node", node),) if len(nodes) > 1 else ())]
            out.append(Resource("elasticache", rid, labels, queries))
        return out

    def _eks(self) -> list[Resource]:
        client = self.client("eks")
        out = []
        for name in self._pages(client, "list_clusters", "clusters"):
            cluster = client.describe_cluster(name=name)["cluster"]
            labels = {"version": cluster.get("version", ""), **_tags(cluster.get("tags"))}
            out.append(Resource("eks", name, labels, _queries("eks", name, (("ClusterName", name),))))
        return out

    def _msk(self) -> list[Resource]:
        out = []
        for cluster in self._pages(self.client("kafka"), "list_clusters_v2", "ClusterInfoList"):
            name = cluster["ClusterName"]
            provisioned = cluster.get("Provisioned") or {}
            brokers = int(provisioned.get("NumberOfBrokerNodes") or 0)
            labels = {"cluster_type": cluster.get("ClusterType", ""),
                      "kafka_version": (provisioned.get("CurrentBrokerSoftwareInfo") or {}).get("KafkaVersion", ""),
                      "instance_type": (provisioned.get("BrokerNodeGroupInfo") or {}).get("InstanceType", ""),
                      **_tags(cluster.get("Tags"))}
            queries = _queries("msk", name, (("Cluster Name", name),))
            for broker in range(1, brokers + 1):
                queries += _queries("msk", name, (("Cluster Name", name), ("Broker ID", str(broker))),
                                    MSK_BROKER_METRICS, labels=(("broker", str(broker)),))
            out.append(Resource("msk", name, labels, queries))
        return out


def parse_metric_spec(spec: str) -> tuple[str, str, str]:
    """``NAMESPACE:METRIC[:STAT]`` -> (namespace, metric, stat); the stat defaults to Average."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"--metric must be NAMESPACE:METRIC[:STAT], got {spec!r}")
    return parts[0], parts[1], parts[2] if len(parts) == 3 else "Average"


_NAMESPACE_TYPE = {ns: rtype for rtype, (ns, _) in STANDARD_METRICS.items()}


def extra_queries(resources: Sequence[Resource], specs: Sequence[tuple[str, str, str]]) -> None:
    """Add ``--metric`` queries to the discovered resources of that namespace (same dimensions)."""
    for namespace, metric, stat in specs:
        rtype = _NAMESPACE_TYPE.get(namespace)
        for resource in resources:
            if resource.resource_type != rtype:
                continue
            seen = {(q.dimensions, q.labels) for q in resource.queries}
            for dims, labels in sorted(seen):
                if resource.resource_type == "msk" and ("Broker ID" in dict(dims)) != (metric in dict(
                        MSK_BROKER_METRICS)):
                    continue
                resource.queries.append(Query(rtype, resource.resource_id, namespace, metric, stat, dims, labels))


@dataclass
class PollStats:
    api_calls: int = 0  # HTTP requests to CloudWatch, retries included
    metrics_requested: int = 0  # what CloudWatch bills (per metric requested)
    throttled: int = 0


class CloudWatchCollector:
    """``poll(now)``: the datapoints of the last ``lookback`` seconds not yet published."""

    source = "cloudwatch"

    def __init__(self, session: Any, region: str, *, endpoint_url: str | None = None, period: int = 60,
                 lookback: float = 600.0, discover: bool = True, refresh_seconds: float = 600.0,
                 metric_specs: Sequence[tuple[str, str, str]] = (), static: Sequence[Resource] = (),
                 services: Sequence[str] = SERVICES, registry: Any = None, max_attempts: int = 8) -> None:
        from botocore.config import Config

        self.session = session
        self.region = region
        self.endpoint_url = endpoint_url
        self.period = period
        self.lookback = lookback
        self.discover = discover
        self.refresh_seconds = refresh_seconds
        self.metric_specs = tuple(metric_specs)
        self.static = list(static)
        self.services = services
        self._config = Config(region_name=region, retries={"mode": "adaptive", "max_attempts": max_attempts},
                              connect_timeout=10, read_timeout=30)
        self._clients: dict[str, Any] = {}
        self._resources: list[Resource] = []
        self._discovered_at = -float("inf")
        self._published: dict[tuple[str, str, tuple[tuple[str, str], ...]], float] = {}
        self.stats = PollStats()
        self._metrics = _collector_metrics(registry)

    # -- AWS clients ---------------------------------------------------------------
    def client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is None:
            client = self.session.client(service, endpoint_url=self.endpoint_url, config=self._config)
            client.meta.events.register("before-send", functools.partial(self._count_request, service))
            client.meta.events.register("needs-retry", self._count_retry)
            self._clients[service] = client
        return client

    def _count_request(self, service: str, **kwargs: Any) -> None:
        self.stats.api_calls += 1
        if self._metrics:
            self._metrics["calls"].labels(service).inc()

    def _count_retry(self, response: Any = None, **kwargs: Any) -> None:
        if response is not None:
            _http, parsed = response
            code = (parsed or {}).get("Error", {}).get("Code", "")
            if "Throttl" in code or code in ("RequestLimitExceeded", "TooManyRequestsException"):
                self.stats.throttled += 1
                if self._metrics:
                    self._metrics["throttled"].inc()

    # -- polling -----------------------------------------------------------------------
    def resources(self, now: float) -> list[Resource]:
        """The estate, re-discovered every ``refresh_seconds``."""
        if self.discover and now - self._discovered_at >= self.refresh_seconds:
            found = Discovery(self.client, self.region, self.services).resources()
            extra_queries(found, self.metric_specs)
            self._resources = found
            self._discovered_at = now
            log.info("cloudwatch: discovered %d resources (%s)", len(found), ", ".join(
                f"{t} {sum(r.resource_type == t for r in found)}" for t in self.services))
        elif not self.discover and now - self._discovered_at >= self.refresh_seconds:
            self._resources = self.listed(self.metric_specs)
            self._discovered_at = now
        return [*self._resources, *self.static]

    def listed(self, specs: Sequence[tuple[str, str, str]]) -> list[Resource]:
        """Without discovery: every dimension set ``ListMetrics`` knows for each ``--metric``; the
        resource is the first dimension's value, its type the namespace's service (or the namespace)."""
        resources: dict[str, Resource] = {}
        client = self.client("cloudwatch")
        for namespace, metric, stat in specs:
            for listed in Discovery._pages(client, "list_metrics", "Metrics", Namespace=namespace, MetricName=metric):
                dims = tuple((d["Name"], d["Value"]) for d in listed.get("Dimensions", []))
                if not dims:
                    continue
                rtype = _NAMESPACE_TYPE.get(namespace, _label_name(namespace))
                rid = dims[0][1]
                resource = resources.setdefault(rid, Resource(rtype, rid, {"region": self.region}))
                extra = tuple((_label_name(k), v) for k, v in dims[1:])
                resource.queries.append(Query(rtype, rid, namespace, metric, stat, dims, extra))
        return list(resources.values())

    async def poll(self, now: float) -> list[dict[str, Any]]:
        import asyncio

        return await asyncio.to_thread(self.poll_sync, now)

    def poll_sync(self, now: float) -> list[dict[str, Any]]:
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        self.stats = PollStats()
        end = now - now % self.period  # the period in progress is not asked for
        start = end - max(self.lookback, self.period)
        try:
            resources = self.resources(now)
            samples = self.fetch(resources, start, end, only_new=True)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            raise (CredentialsError if code in _AUTH_CODES else CollectError)(_client_error(exc)) from None
        except NoCredentialsError:
            raise CredentialsError("no AWS credentials found (environment, profile or instance role)") from None
        except BotoCoreError as exc:
            raise CollectError(f"cannot reach AWS ({self.region}): {exc}") from None
        if self._metrics:
            self._metrics["last_calls"].set(self.stats.api_calls)
            self._metrics["last_metrics"].set(self.stats.metrics_requested)
            self._metrics["resources"].set(len(resources))
        log.info("cloudwatch: %d samples, %d API calls, %d metrics requested, %d throttled",
                 len(samples), self.stats.api_calls, self.stats.metrics_requested, self.stats.throttled)
        return samples

    def fetch(self, resources: Sequence[Resource], start: float, end: float,
              only_new: bool = False) -> list[dict[str, Any]]:
        """Samples of every query of ``resources`` in ``[start, end)``, time-ordered per series."""
        by_id: dict[str, tuple[Query, dict[str, str]]] = {}
        queries = []
        for resource in resources:
            for query in resource.queries:
                qid = f"q{len(by_id)}"
                by_id[qid] = (query, resource.labels)
                queries.append(qid)
        samples: list[dict[str, Any]] = []
        for i in range(0, len(queries), MAX_QUERIES_PER_CALL):
            chunk = queries[i:i + MAX_QUERIES_PER_CALL]
            self.stats.metrics_requested += len(chunk)
            if self._metrics:
                self._metrics["requested"].inc(len(chunk))
            results: dict[str, tuple[list[datetime], list[float]]] = {}
            for page in self.client("cloudwatch").get_paginator("get_metric_data").paginate(
                    MetricDataQueries=[_data_query(qid, by_id[qid][0], self.period) for qid in chunk],
                    StartTime=datetime.fromtimestamp(start, UTC), EndTime=datetime.fromtimestamp(end, UTC),
                    ScanBy="TimestampAscending"):
                for result in page.get("MetricDataResults", []):
                    stamps, values = results.setdefault(result["Id"], ([], []))
                    stamps.extend(result.get("Timestamps", []))
                    values.extend(result.get("Values", []))
            for qid, (stamps, values) in results.items():
                query, resource_labels = by_id[qid]
                samples.extend(self._samples(query, resource_labels, stamps, values, only_new))
        return samples

    def _samples(self, query: Query, resource_labels: dict[str, str], stamps: list[datetime],
                 values: list[float], only_new: bool) -> list[dict[str, Any]]:
        points = sorted((ts.timestamp(), float(v)) for ts, v in zip(stamps, values, strict=True))
        if only_new:
            newest = self._published.get(query.series, -float("inf"))
            fresh = [(t, v) for t, v in points if t > newest]
            skipped = sum(1 for t, _ in points if t < newest)  # re-fetched ones (== newest is a repeat)
            if skipped and self._metrics:
                self._metrics["skipped"].inc(skipped)
            points = fresh
            if points:
                self._published[query.series] = points[-1][0]
        labels = {**resource_labels, **dict(query.labels)}
        if query.stat != STANDARD_STAT.get((query.namespace, query.metric)):
            labels["stat"] = query.stat
        return [{"ts": t, "source": "cloudwatch", "resource_type": query.resource_type,
                 "resource_id": query.resource_id, "metric": query.metric, "value": v, "labels": labels}
                for t, v in points]


STANDARD_STAT = {(ns, m): s for ns, metrics in STANDARD_METRICS.values() for m, s in metrics} | {
    ("AWS/Kafka", m): s for m, s in MSK_BROKER_METRICS}


def _data_query(qid: str, query: Query, period: int) -> dict[str, Any]:
    return {"Id": qid, "ReturnData": True, "MetricStat": {
        "Metric": {"Namespace": query.namespace, "MetricName": query.metric,
                   "Dimensions": [{"Name": k, "Value": v} for k, v in query.dimensions]},
        "Period": period, "Stat": query.stat}}


def _client_error(exc: Any) -> str:
    error = exc.response.get("Error", {})
    code, message = error.get("Code", "error"), (error.get("Message") or "").splitlines()[0:1]
    operation = getattr(exc, "operation_name", "a call")
    text = f"AWS refused {operation}: {code}"
    return f"{text}: {message[0]}" if message else text


def _collector_metrics(registry: Any) -> dict[str, Any] | None:
    if registry is None:
        return None
    from prometheus_client import Counter, Gauge

    return {
        "calls": Counter("spcwatch_collect_api_calls", "AWS API requests, retries included", ["service"],
                         registry=registry),
        "throttled": Counter("spcwatch_collect_throttled", "AWS API requests throttled and retried",
                             registry=registry),
        "requested": Counter("spcwatch_collect_metrics_requested",
                             "Metrics requested from GetMetricData (what CloudWatch bills)", registry=registry),
        "skipped": Counter("spcwatch_collect_datapoints_skipped",
                           "Datapoints fetched again by the lookback and not re-sent", registry=registry),
        "last_calls": Gauge("spcwatch_collect_api_calls_last_poll", "AWS API requests of the last poll",
                            registry=registry),
        "last_metrics": Gauge("spcwatch_collect_metrics_requested_last_poll",
                              "Metrics requested from GetMetricData in the last poll", registry=registry),
        "resources": Gauge("spcwatch_collect_resources", "Resources queried in the last poll", registry=registry),
    }


def session(profile: str | None = None) -> Any:
    """A boto3 session with the standard credential chain (environment, profile, instance role)."""
    import boto3

    return boto3.Session(profile_name=profile) if profile else boto3.Session()
