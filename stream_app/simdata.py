"""The simulated world: the estate, the stores, the menu, the raw-material SKUs.

Fixed catalogues (independent of ``--seed``), so scenario targets and the names
in the docs never move: 233 EC2, 62 RDS, 76 Redis, 3 EKS and 2 MSK resources;
10 Manhattan stores; a 58-product menu; 88 raw-material SKUs. ``--seed`` only
drives the noise, the orders and the forecast errors (see ``simgen``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from stream_app.simmenu import Product, catalogue

DAY = 86400.0
TZ = ZoneInfo("America/New_York")  # every store is in Manhattan
REGION = "us-east-1"

# Relative traffic by local hour (coffee shops: breakfast rush, lunch bump, quiet evenings).
HOURLY_ORDERS = (0, 0, 0, 0, 0, 0, 0.45, 1.6, 2.0, 1.55, 1.1, 1.0, 1.3, 1.15, 0.9, 0.85, 0.75, 0.6,
                 0.45, 0.3, 0, 0, 0, 0)
OPEN_HOUR, CLOSE_HOUR = 6, 20
# Day-of-week factor (Monday = 0): office-district stores are quieter at weekends.
WEEKDAY_ORDERS = (1.0, 1.02, 1.04, 1.03, 1.0, 0.8, 0.72)


def load_factor(hour: int, weekday: int) -> float:
    """Infrastructure load at a local hour: follows the stores, never below 35 % at night."""
    peak = max(HOURLY_ORDERS)
    weekly = 1.0 if weekday < 5 else 0.85
    return (0.35 + 0.65 * HOURLY_ORDERS[hour] / peak) * weekly


def local_midnight(day: date) -> float:
    """Epoch seconds of 00:00 local time on ``day`` (DST-aware)."""
    return datetime(day.year, day.month, day.day, tzinfo=TZ).timestamp()


def local_date(ts: float) -> date:
    return datetime.fromtimestamp(ts, TZ).date()


def utc_day_start(ts: float) -> float:
    return (ts // DAY) * DAY


def rfc3339_utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339_local(ts: float) -> str:
    return datetime.fromtimestamp(ts, TZ).isoformat(timespec="seconds")


def day_range(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


# --------------------------------------------------------------------------- infrastructure


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One metric of a resource: its usual level and how it moves.

    ``load`` is how strongly it follows the daily/weekly load (0 = flat, 1 =
    proportional, negative = inverse, e.g. free memory); ``noise`` the relative
    standard deviation of a sample; ``cap`` an upper bound (percentages).
    """

    name: str
    level: float
    load: float = 0.6
    noise: float = 0.05
    cap: float | None = None
    integer: bool = False


@dataclass(frozen=True, slots=True)
class Resource:
    resource_id: str
    resource_type: str
    source: str
    labels: dict[str, str]
    metrics: tuple[MetricSpec, ...]


def _pct(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 1)


def _ec2(rng: random.Random, i: int) -> Resource:
    roles = ("api", "web", "worker", "batch", "gateway", "pos-sync", "etl", "jenkins", "bastion", "cache-proxy")
    role = roles[i % len(roles)]
    rid = "i-0" + "%016x" % (0x5A17C0FFEE000000 + i * 7919)
    return Resource(rid, "ec2", "cloudwatch", {"region": REGION, "role": role}, (
        MetricSpec("CPUUtilization", _pct(rng, 8, 45), load=0.8, noise=0.08, cap=100.0),
        MetricSpec("mem_used_percent", _pct(rng, 30, 70), load=0.15, noise=0.02, cap=100.0),
        MetricSpec("NetworkIn", round(rng.uniform(2e6, 6e7)), load=0.9, noise=0.1),
        MetricSpec("disk_used_percent", _pct(rng, 20, 60), load=0.0, noise=0.003, cap=100.0),
    ))


_RDS_NAMES = ("salesorder", "payment", "member", "coupon", "inventory", "menu", "store", "delivery", "ledger",
              "report", "dbatest", "marketing", "loyalty", "supply", "forecast", "pricing", "auth", "notify",
              "audit", "hr", "finance", "crm", "search", "recommend", "config", "scheduler", "gift", "invoice",
              "settlement", "risk", "device")


def _rds(rng: random.Random, i: int) -> Resource:
    name = _RDS_NAMES[i // 2]
    role = "rw" if i % 2 == 0 else "ro"
    return Resource(f"aws-luckyus-{name}-{role}", "rds", "cloudwatch",
                    {"region": REGION, "engine": "mysql", "role": role}, (
        MetricSpec("CPUUtilization", _pct(rng, 10, 40), load=0.8, noise=0.07, cap=100.0),
        MetricSpec("FreeableMemory", round(rng.uniform(2e9, 12e9)), load=-0.1, noise=0.01),
        MetricSpec("DatabaseConnections", round(rng.uniform(20, 300)), load=0.7, noise=0.06, integer=True),
        MetricSpec("ReadLatency", round(rng.uniform(0.0005, 0.004), 5), load=0.3, noise=0.1),
        MetricSpec("WriteLatency", round(rng.uniform(0.001, 0.006), 5), load=0.3, noise=0.1),
    ))


_REDIS_NAMES = ("session", "cart", "menu", "coupon", "member", "token", "ratelimit", "inventory", "queue", "geo",
                "price", "feature", "store", "order", "lock", "search", "recommend", "notify", "device")


def _redis(rng: random.Random, i: int) -> Resource:
    name = _REDIS_NAMES[i // 4]
    return Resource(f"luckyus-{name}-redis-{i % 4 + 1:03d}", "redis", "cloudwatch",
                    {"region": REGION, "engine": "redis"}, (
        MetricSpec("EngineCPUUtilization", _pct(rng, 3, 25), load=0.8, noise=0.08, cap=100.0),
        MetricSpec("DatabaseMemoryUsagePercentage", _pct(rng, 20, 40), load=0.05, noise=0.01, cap=100.0),
        MetricSpec("CurrConnections", round(rng.uniform(50, 2000)), load=0.6, noise=0.05, integer=True),
        MetricSpec("Evictions", 0.0, load=0.0, noise=0.0, integer=True),
        MetricSpec("CacheHitRate", _pct(rng, 90, 99), load=0.0, noise=0.004, cap=100.0),
    ))


def _eks(rng: random.Random, i: int) -> Resource:
    return Resource(f"eks-luckyus-prod-{i + 1}", "eks", "prometheus", {"region": REGION, "cluster": f"prod-{i + 1}"}, (
        MetricSpec("node_cpu_utilization", _pct(rng, 25, 45), load=0.7, noise=0.04, cap=100.0),
        MetricSpec("node_memory_utilization", _pct(rng, 45, 65), load=0.2, noise=0.02, cap=100.0),
        MetricSpec("pod_count", round(rng.uniform(150, 600)), load=0.3, noise=0.02, integer=True),
        MetricSpec("apiserver_request_latency_p99", round(rng.uniform(0.08, 0.3), 3), load=0.3, noise=0.12),
    ))


def _msk(rng: random.Random, i: int) -> Resource:
    return Resource(f"msk-luckyus-prod-{i + 1}", "msk", "cloudwatch", {"region": REGION}, (
        MetricSpec("CpuUser", _pct(rng, 10, 30), load=0.7, noise=0.06, cap=100.0),
        MetricSpec("BytesInPerSec", round(rng.uniform(2e5, 3e6)), load=0.9, noise=0.08),
        MetricSpec("MaxOffsetLag", round(rng.uniform(50, 400)), load=0.8, noise=0.25, integer=True),
    ))


ESTATE_SIZES = {"ec2": 233, "rds": 62, "redis": 76, "eks": 3, "msk": 2}
_BUILDERS = {"ec2": _ec2, "rds": _rds, "redis": _redis, "eks": _eks, "msk": _msk}


def build_estate() -> tuple[Resource, ...]:
    """The 376 resources, always the same (their own fixed seed)."""
    rng = random.Random("spcwatch-estate")
    return tuple(_BUILDERS[kind](rng, i) for kind, count in ESTATE_SIZES.items() for i in range(count))


# --------------------------------------------------------------------------- stores, menu, SKUs


@dataclass(frozen=True, slots=True)
class Store:
    store_id: str
    name: str
    orders_per_day: float  # a usual weekday


STORES = (
    Store("US00001", "8th Ave & W 36th St", 240),
    Store("US00002", "Broadway & W 28th St", 230),
    Store("US00003", "Lexington Ave & E 45th St", 215),
    Store("US00004", "Maiden Ln (FiDi)", 205),
    Store("US00005", "Union Square", 235),
    Store("US00006", "Columbus Circle", 200),
    Store("US00007", "Hudson Yards", 220),
    Store("US00008", "Madison Ave & E 52nd St", 210),
    Store("US00009", "Chelsea Market", 195),
    Store("US00010", "Astor Place", 225),
)


def build_menu() -> tuple[Product, ...]:
    """58 products (40 drinks, 18 food) in five categories: the catalogue of ``stream_app.simmenu``."""
    return catalogue()


@dataclass(frozen=True, slots=True)
class Sku:
    sku: str
    daily_mean: float  # usual weekday usage at an average store


def build_skus() -> tuple[Sku, ...]:
    """88 raw-material SKUs (milk, beans, syrups, cups, ...) with usage from a few to a few hundred a day."""
    rng = random.Random("spcwatch-skus")
    return tuple(Sku(f"GS{i + 1:04d}", round(rng.lognormvariate(3.2, 1.1), 1) + 3.0) for i in range(88))


@dataclass(frozen=True)
class World:
    estate: tuple[Resource, ...] = field(default_factory=build_estate)
    stores: tuple[Store, ...] = STORES
    menu: tuple[Product, ...] = field(default_factory=build_menu)
    skus: tuple[Sku, ...] = field(default_factory=build_skus)
