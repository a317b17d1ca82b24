"""A processor's state store in the worker: a partition's view of the Faust table, and the
write-back cache the processor works on between checkpoints (see :mod:`stream_app.runtime.runner`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableMapping
from typing import Any

from faust.serializers import codecs

from agents.core.contract import LiveState, Processor


class PartitionStore(MutableMapping[str, Any]):
    """One partition's view of a table whose values remember their partition.

    Faust tables hold every partition a worker owns in one mapping; a tick for
    partition ``p`` must touch only the keys of ``p``, so each value is stored as
    ``{"p": partition, "s": state}``.

    Writes go to the table's memory only. Their changelog records are sent by
    :meth:`publish`, which the runner calls once the rows computed from that state
    are committed: state restored after a crash never runs ahead of the database
    (an event it already reflects is skipped as a repeat, so its rows must be in).
    """

    def __init__(self, table: MutableMapping[str, Any], partition: int) -> None:
        self.table = table
        self.partition = partition
        # a Faust table's store (writes there send no changelog); a plain dict in tests
        self._memory: MutableMapping[str, Any] = getattr(table, "data", table)

    def __getitem__(self, key: str) -> Any:
        return self.table[key]["s"]

    def get(self, key: str, default: Any = None) -> Any:
        wrapped = self.table.get(key)
        return default if wrapped is None else wrapped["s"]

    def __setitem__(self, key: str, value: Any) -> None:
        self._memory[key] = {"p": self.partition, "s": value}

    def __delitem__(self, key: str) -> None:
        del self._memory[key]

    def __contains__(self, key: object) -> bool:
        return key in self.table

    def __iter__(self) -> Iterator[str]:
        for key, wrapped in list(self.table.items()):
            if wrapped is not None and wrapped.get("p") == self.partition:
                yield key

    def keys(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def snapshot(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        """The changelog records of ``keys`` as stored now (``None`` for a deleted key), encoded
        at once so that later changes to live values cannot leak into them."""
        serializer = getattr(self.table, "value_serializer", None) or "json"
        out: dict[str, bytes | None] = {}
        for key in keys:
            wrapped = self._memory.get(key)
            out[key] = None if wrapped is None else codecs.dumps(serializer, wrapped)
        return out

    def publish(self, records: Mapping[str, bytes | None]) -> None:
        """Send a :meth:`snapshot` to the changelog (to this partition), tombstones for deletions."""
        send = getattr(self.table, "send_changelog", None)
        if send is None:  # a plain dict: nothing to replicate
            return
        for key, record in records.items():
            send(self.partition, key, record, value_serializer="raw")


class CachedStore(MutableMapping[str, Any]):
    """Write-back cache over one partition of the table.

    Values may be live objects: a :class:`~agents.core.contract.LiveState` processor's
    ``load(json)`` / ``dump(obj)`` convert at the table boundary (identity otherwise), so a
    detector is deserialised once per checkpoint interval, not once per event.
    """

    def __init__(self, backing: PartitionStore, processor: Processor, max_cached: int = 20000) -> None:
        self.backing = backing
        self.max_cached = max_cached
        live = processor if isinstance(processor, LiveState) else None
        self._load = live.load if live else None
        self._dump = live.dump if live else None
        self.cache: dict[str, Any] = {}
        self.dirty: set[str] = set()
        self.deleted: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        if key in self.cache:
            value = self.cache[key] = self.cache.pop(key)  # most recently used goes last
            return value
        if key in self.deleted:
            raise KeyError(key)
        raw = self.backing[key]
        value = self._load(raw) if self._load else raw
        self.cache[key] = value
        return value

    def get(self, key: str, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def peek(self, key: str) -> Any:
        """The live object if cached, else the stored JSON, without loading it (timers skim with this)."""
        if key in self.cache:
            return self.cache[key]
        if key in self.deleted:
            return None
        return self.backing.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        self.cache[key] = value
        self.dirty.add(key)
        self.deleted.discard(key)

    def __delitem__(self, key: str) -> None:
        self.cache.pop(key, None)
        self.dirty.discard(key)
        self.deleted.add(key)

    def __contains__(self, key: object) -> bool:
        if key in self.cache:
            return True
        return key not in self.deleted and key in self.backing

    def __iter__(self) -> Iterator[str]:
        seen = set()
        for key in self.cache:
            seen.add(key)
            yield key
        for key in self.backing:
            if key not in seen and key not in self.deleted:
                yield key

    def keys(self) -> Iterator[str]:  # type: ignore[override]
        return iter(self)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def write_back(self) -> dict[str, bytes | None]:
        """Move dirty keys into the table's memory; returns their changelog records, for the
        runner to publish once this checkpoint's rows are committed (see :class:`PartitionStore`)."""
        for key in self.deleted:
            if key in self.backing:
                del self.backing[key]
        for key in self.dirty:
            value = self.cache[key]
            self.backing[key] = self._dump(value) if self._dump else value
        records = self.backing.snapshot(self.dirty | self.deleted)
        self.dirty.clear()
        self.deleted.clear()
        # Everything is in the table now: live objects beyond the budget can go
        # (least recently used first) and are loaded again when next needed.
        excess = len(self.cache) - self.max_cached
        if excess > 0:
            for key in list(self.cache)[:excess]:
                del self.cache[key]
        return records
