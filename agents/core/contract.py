"""What a use case is, so the streaming worker and the offline replay run the same code.

A use case is a :class:`Processor`: pure(ish) Python over a key-value state
store, fed decoded events, returning :class:`Outputs` (alerts and table rows).
The worker feeds it from Kafka with a Faust table as the store
(``stream_app/runtime/runner.py``); ``spcwatch replay`` feeds it from a JSONL file with a dict
(``stream_app/replay.py``). Neither path has detection logic of its own, and this
module imports no Faust: the use cases in ``agents/`` depend on it, never on the runtime.

Rules a processor keeps so both paths give the same alerts:

* State lives only in ``store`` (values JSON-able), keyed by the input
  message's key (``resource_id``, ``order_id``, ``store_id``): that keeps a key's
  state on the partition that receives its events.
* ``tick(store, now)`` is the timer (absent resources, deadlines, day closes).
  ``now`` is event time: the highest event timestamp seen on that partition.
  A tick may only do what ``process`` would do lazily for that key at the same
  event time, so how often ticks run changes how *soon* an output appears,
  never *what* it is.
* Outputs are idempotent: deterministic alert ids, rows keyed by natural keys.
"""

from __future__ import annotations

import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from agents.core.alerts import Alert


@dataclass(slots=True)
class Outputs:
    """Alerts to publish and rows to upsert, produced by one step of a processor."""

    alerts: list[Alert] = field(default_factory=list)
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add_row(self, table: str, row: dict[str, Any]) -> None:
        self.rows.setdefault(table, []).append(row)

    def add_rows(self, table: str, rows: Sequence[dict[str, Any]]) -> None:
        if rows:
            self.rows.setdefault(table, []).extend(rows)

    def merge(self, other: Outputs) -> Outputs:
        self.alerts.extend(other.alerts)
        for table, rows in other.rows.items():
            self.add_rows(table, rows)
        return self

    def __bool__(self) -> bool:
        return bool(self.alerts or self.rows)


@dataclass(slots=True)
class StageOutputs(Outputs):
    """A hop's outputs in a staged processor: besides alerts and rows, messages for the next
    stage (``(topic, key, value)``) and input events to dead-letter (``(event, detail)``)."""

    forward: list[tuple[str, str, dict]] = field(default_factory=list)
    dead: list[tuple[Any, str]] = field(default_factory=list)


def run_hops(first: StageOutputs, hop: Callable[[str, Any], StageOutputs]) -> Outputs:
    """Offline (replay): run what a hop forwards at once, in order, through ``hop(topic, value)``."""
    out = Outputs(alerts=list(first.alerts), rows=dict(first.rows))
    queue = deque(first.forward)
    while queue:
        topic, _key, value = queue.popleft()
        result = hop(topic, value)
        out.merge(result)
        queue.extend(result.forward)
    return out


class StateStore(Protocol):
    """The part of a mapping a processor may use (a dict, or a partition of a Faust table)."""

    def get(self, key: str, default: Any = None) -> Any: ...
    def __setitem__(self, key: str, value: Any) -> None: ...
    def __delitem__(self, key: str) -> None: ...
    def __contains__(self, key: object) -> bool: ...
    def keys(self) -> Iterator[str]: ...


class WorkerMetrics(Protocol):
    """What a processor's optional ``bind_metrics`` receives: the worker's Prometheus registry, to
    add its own series to (the runtime's ``SpcMetrics``)."""

    registry: Any


class Processor(Protocol):
    """A use case's detection logic, independent of where events come from.

    These three members are all a processor must have. The runner uses three optional
    capabilities more, each a protocol below that a processor has by defining its members
    (checked once, with ``isinstance``, when the runner wires it): :class:`LiveState`,
    :class:`MetricsUser` and :class:`StagedProcessor`.
    """

    use_case: str
    topics: tuple[str, ...]

    def key(self, topic: str, event: Any) -> str:
        """State key of an event; equals the contract's message key for its topic."""
        ...

    def process(self, store: StateStore, topic: str, events: Sequence[Any]) -> Outputs:
        """Events of one message, all with the same key, in arrival order."""
        ...

    def tick(self, store: StateStore, now: float) -> Outputs:
        """Timer work at event time ``now`` over every key in ``store``."""
        ...


@runtime_checkable
class LiveState(Protocol):
    """State kept as live objects between checkpoints: the runner's cache converts at the table
    boundary, so a detector is deserialised once per checkpoint interval, not once per event.
    Without it, state values are stored as they are (JSON-able)."""

    def load(self, state: Any) -> Any:
        """The live object of a stored (JSON) value."""
        ...

    def dump(self, obj: Any) -> Any:
        """The JSON-able value to store for a live object."""
        ...


@runtime_checkable
class MetricsUser(Protocol):
    """A processor exporting series of its own: the worker binds it to its registry once."""

    def bind_metrics(self, metrics: WorkerMetrics) -> None: ...


@runtime_checkable
class StagedProcessor(Protocol):
    """A processor in stages (repartitioning, e.g. store -> chain): besides its input topics it
    consumes ``internal_topics`` (same partitions, same table), and each message runs one hop,
    :meth:`step`; what a hop forwards (:class:`StageOutputs`) goes to the next stage's topic.
    Offline, :func:`run_hops` runs the hops at once, so ``process``/``tick`` stay the replay's."""

    internal_topics: tuple[str, ...]

    def step(self, store: StateStore, topic: str, events: Sequence[Any], now: float) -> StageOutputs:
        """One hop for one message (input or internal topic) at event time ``now``."""
        ...

    def step_tick(self, store: StateStore, now: float) -> StageOutputs:
        """The timer's hop: like :meth:`Processor.tick`, but forwarding instead of running the next stages."""
        ...


def row_datetime(ts: float | None) -> datetime | None:
    """A timestamp column of a row: an aware UTC datetime (the sink renders it per database)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def partition_of(store: Any) -> int | None:
    """The partition a state store belongs to (the runner's cache, or its backing store); ``None`` for
    the replay's single dict."""
    for candidate in (store, getattr(store, "backing", None)):
        partition = getattr(candidate, "partition", None)
        if partition is not None:
            return int(partition)
    return None


T = TypeVar("T")


class StoreMemory(Generic[T]):
    """In-memory companions of state stores (source clocks, key indexes): one per store object.

    The runner makes a new store object for a partition after a restart or a rebalance; its
    memory must start afresh then, because the events since the last checkpoint are delivered
    again (clocks kept across a revocation would run ahead of the state they describe).
    """

    def __init__(self, make: Callable[[Any], T]) -> None:
        self._make = make
        self._entries: dict[int, tuple[Any, T]] = {}

    def __call__(self, store: Any) -> T:
        entry = self._entries.get(id(store))
        if entry is not None and (entry[0]() if isinstance(entry[0], weakref.ref) else entry[0]) is store:
            return entry[1]
        value = self._make(store)
        try:
            ref: Any = weakref.ref(store)
        except TypeError:  # a plain dict (replay, tests): it lives as long as the run
            ref = store
        self._entries[id(store)] = (ref, value)
        return value
