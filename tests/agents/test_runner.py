"""The write-back cache between processors and a table partition."""

from __future__ import annotations

import json
from typing import Any

from agents.runner import CachedStore
from stream_app.usecase import PartitionStore


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


def test_a_message_faust_never_delivered_is_read_again_and_a_marker_gap_is_accepted() -> None:
    import asyncio
    from typing import NamedTuple

    from agents.runner import DeliveryGaps

    class TP(NamedTuple):
        topic: str
        partition: int

    sought: list[tuple[TP, int]] = []

    async def seek(tp: TP, offset: int) -> None:
        sought.append((tp, offset))

    gaps = DeliveryGaps(seek)
    ledger0, ledger1 = TP("ledger", 0), TP("ledger", 1)

    def deliver(reader: str, tp: TP, offsets: list[int]) -> list[bool]:
        return [asyncio.run(gaps.in_order(reader, tp, o)) for o in offsets]

    # 0 and 1, then 3: offset 2 was never delivered -> seek back to 2, leave 3 for the re-read
    assert deliver("recon", ledger0, [0, 1, 3]) == [True, True, False]
    assert sought == [(ledger0, 2)]
    assert deliver("recon", ledger0, [2, 3, 4]) == [True, True, True]
    # another reader of the same topic and another partition keep their own sequence
    assert deliver("store", ledger0, [0, 1, 2]) == [True, True, True]
    assert deliver("recon", ledger1, [5, 6]) == [True, True]
    # a gap that is still there after its re-read (a transaction marker at 7) is accepted
    assert deliver("recon", ledger0, [5, 6, 8]) == [True, True, False]
    assert deliver("recon", ledger0, [8]) == [True]
    assert sought == [(ledger0, 2), (ledger0, 7)]
    # redelivered older messages (after a seek or a rebalance) pass and do not move the sequence back
    assert deliver("recon", ledger0, [3, 9]) == [True, True]
    # after a revocation the next assignment starts wherever the committed offset is
    gaps.forget([ledger0])
    assert deliver("recon", ledger0, [40, 41]) == [True, True]
    assert len(sought) == 2
