"""UC-OP-02: streaming store performance monitoring, as three pure, incremental stages.

Orders arrive keyed by ``order_id`` but a store's day, its SPC charts and the
comparison with its peers need other keys, so the logic is split by key:

1. **order** (key ``order_id``, :func:`apply_order`): remembers which store and
   local business day an order belongs to and its latest status, so a status
   update (paid -> refunded) lands on the order's own day, duplicates and stale
   updates are ignored, and events past the maximum lateness are rejected. It
   forwards the order's *absolute* contribution keyed by ``store_id`` (so
   re-delivery downstream is harmless: the store stage replaces, never adds).
2. **store** (key ``store_id``, :class:`StoreState`): keeps the contributions of
   its open and still-amendable days, closes a day by event time (local
   midnight + grace, also when the store is silent), computes the daily
   metrics, judges them with one :class:`~models.SeriesDetector` per metric,
   runs the intraday early warning, and forwards per-day *summaries* and
   intraday *checks* to the chain.
3. **chain** (one key, :class:`ChainState`): sees every store's summary for a
   day, compares each store with its peers (robust z from median and MAD),
   turns a chain-wide movement into one chain-level episode instead of N store
   alerts, and decides which alert transitions are published.

Late events amend a closed day until ``close + max_lateness``: the store
stage re-runs its detectors from a snapshot taken before the oldest amendable
day (days are few, so this is cheap), and the chain re-decides the days whose
summaries changed. Everything here is event-time driven; states are JSON-able.
With several order partitions the store and chain stages are driven by the low
watermark of the partitions' clocks (:class:`SourceClocks`), so a day closes
and is decided only once all its orders and stores are in.

Modules, one per stage: :mod:`.config` (the config and the stores' calendar), :mod:`.orders`
(stage 1), :mod:`.day` (stage 2), :mod:`.chain` (stage 3); the later stages act at
the low watermark of :mod:`models.clocks` (as the menu use case does).
"""

from ..clocks import SourceClocks
from .chain import ChainOut, ChainState, robust_z
from .config import (
    CANCELLED,
    CUSUM_METRICS,
    DEFAULT_RULES,
    MEDIAN_SE,
    METRICS,
    PAID,
    RATE_METRICS,
    REFUNDED,
    STATUS_CODE,
    Calendar,
    StoreConfig,
    day_type,
)
from .day import IntradayProfile, StoreOut, StoreState, day_metrics, poisson_cdf, rate_counts
from .orders import OrderStep, apply_order, order_expired

__all__ = [
    "CANCELLED",
    "CUSUM_METRICS",
    "DEFAULT_RULES",
    "MEDIAN_SE",
    "METRICS",
    "PAID",
    "RATE_METRICS",
    "REFUNDED",
    "STATUS_CODE",
    "Calendar",
    "ChainOut",
    "ChainState",
    "IntradayProfile",
    "OrderStep",
    "SourceClocks",
    "StoreConfig",
    "StoreOut",
    "StoreState",
    "apply_order",
    "day_metrics",
    "day_type",
    "order_expired",
    "poisson_cdf",
    "rate_counts",
    "robust_z",
]
