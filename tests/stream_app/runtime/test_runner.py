"""The write-back cache between processors and a table partition."""

from __future__ import annotations

import json
from typing import Any

from stream_app.runtime.store import CachedStore, PartitionStore


class Codec:
    use_case = "test"
    topics = ("orders",)

    def load(self, raw: dict) -> list:
        return list(raw["items"])

    def dump(self, obj: list) -> dict:
        return {"items": obj}


def test_nothing_reaches_the_table_before_write_back() -> None:
    table: dict = {"a": {"p": 0, "s": {"items": [1]}}, "z": {"p": 1, "s": {"items": [9]}}}
    store = CachedStore(PartitionStore(table, 0), Codec())  # type: ignore[arg-type]
    store["a"] = [*store["a"], 2]
    store["b"] = [3]
    assert table["a"] == {"p": 0, "s": {"items": [1]}} and "b" not in table
    assert sorted(store) == ["a", "b"]  # only partition 0's keys, cached or not
    records = store.write_back()
    assert {k: json.loads(v) for k, v in records.items() if v is not None} == {
        "a": {"p": 0, "s": {"items": [1, 2]}}, "b": {"p": 0, "s": {"items": [3]}}}
    assert table["a"] == {"p": 0, "s": {"items": [1, 2]}}
    assert table["b"] == {"p": 0, "s": {"items": [3]}}
    assert store.write_back() == {}


def test_deletes_are_written_back_and_hidden_until_then() -> None:
    table: dict = {"a": {"p": 0, "s": {"items": [1]}}}
    store = CachedStore(PartitionStore(table, 0), Codec())  # type: ignore[arg-type]
    del store["a"]
    assert "a" not in store and store.get("a") is None and "a" in table
    assert store.write_back() == {"a": None}  # a tombstone for the changelog
    assert "a" not in table


def test_cache_keeps_at_most_its_budget_of_live_objects_after_write_back() -> None:
    table: dict = {}
    store = CachedStore(PartitionStore(table, 0), Codec(), max_cached=2)  # type: ignore[arg-type]
    for key in "abcd":
        store[key] = [key]
    assert store["a"] == ["a"]  # a is now the most recently used
    store.write_back()
    assert set(store.cache) == {"d", "a"}
    assert store["b"] == ["b"]  # evicted objects load again from the table
    assert len(table) == 4


class ChangelogTable(dict):
    """A table's two sides as Faust has them: ``data`` (memory, no changelog) and ``send_changelog``."""

    value_serializer = "json"

    def __init__(self) -> None:
        super().__init__()
        self.data = self
        self.sent: list[tuple[int, str, Any, str]] = []

    def send_changelog(self, partition: int, key: str, value: Any, value_serializer: str) -> None:
        self.sent.append((partition, key, value, value_serializer))


def test_state_reaches_the_changelog_only_when_published_and_as_it_was_at_the_checkpoint() -> None:
    table = ChangelogTable()
    backing = PartitionStore(table, 3)
    store = CachedStore(backing, Codec())  # type: ignore[arg-type]
    live = [1]
    store["a"] = live
    store["b"] = [2]
    records = store.write_back()
    del store["b"]
    tombstones = store.write_back()
    live.append(99)  # processing goes on while the checkpoint's rows are written
    store["a"] = live
    assert table.sent == [] and "a" in table  # memory has it, the changelog not yet
    backing.publish(records)
    backing.publish(tombstones)
    sent = [(p, k, json.loads(v) if v else v, ser) for p, k, v, ser in table.sent]
    assert sorted(sent[:2]) == [(3, "a", {"p": 3, "s": {"items": [1]}}, "raw"),
                                (3, "b", {"p": 3, "s": {"items": [2]}}, "raw")]
    assert sent[2:] == [(3, "b", None, "raw")]


def test_messages_faust_never_delivered_are_read_back_and_a_marker_gap_reads_as_nothing() -> None:
    import asyncio
    from typing import NamedTuple

    from stream_app.runtime.runner import DeliveryGaps

    class TP(NamedTuple):
        topic: str
        partition: int

    log = {("ledger", 0): {0: "a", 1: "b", 2: "c", 3: "d", 4: "e", 6: "g"}}  # offset 5: a transaction marker
    reads: list[tuple[str, int, int, int]] = []
    gaps_seen: list[tuple[str, int]] = []

    async def read(topic: str, partition: int, start: int, end: int) -> list[str]:
        reads.append((topic, partition, start, end))
        return [v for o, v in sorted(log[(topic, partition)].items()) if start <= o < end]

    gaps = DeliveryGaps(read, lambda topic, n: gaps_seen.append((topic, n)))
    ledger0 = TP("ledger", 0)

    def deliver(reader: str, offsets: list[int], tp: TP = ledger0) -> list[list[str]]:
        """What the agent processes before each message: the records read back for its gap."""
        out = []
        for o in offsets:
            gap = gaps.skipped(reader, tp, o)
            out.append([] if gap is None else asyncio.run(gaps.read_back(reader, tp, *gap)))
        return out

    # 0, then 3: offsets 1 and 2 were never delivered -> read back, to be processed before 3
    assert deliver("recon", [0, 3, 4]) == [[], ["b", "c"], []]
    assert reads == [("ledger", 0, 1, 3)] and gaps_seen == [("ledger", 2)]
    # another reader of the same topic keeps its own sequence
    assert deliver("store", [0, 1, 2, 3]) == [[], [], [], []]
    # the marker at 5 is a gap that holds no record: nothing to process, nothing reported
    assert deliver("recon", [6]) == [[]]
    assert reads[-1] == ("ledger", 0, 5, 6) and gaps_seen == [("ledger", 2)]
    # older messages again (a rebalance's redelivery) miss nothing and do not move the sequence back
    assert deliver("recon", [2, 3, 7]) == [[], [], []]
    # after a revocation the next assignment starts wherever the committed offset is
    gaps.forget([ledger0])
    assert deliver("recon", [40, 41]) == [[], []]
    assert len(reads) == 2
