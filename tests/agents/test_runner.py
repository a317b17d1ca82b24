"""The write-back cache between processors and a table partition."""

from __future__ import annotations

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
    assert store.write_back() == 2
    assert table["a"] == {"p": 0, "s": {"items": [1, 2]}}
    assert table["b"] == {"p": 0, "s": {"items": [3]}}
    assert store.write_back() == 0


def test_deletes_are_written_back_and_hidden_until_then() -> None:
    table: dict = {"a": {"p": 0, "s": {"items": [1]}}}
    store = CachedStore(PartitionStore(table, 0), Codec())  # type: ignore[arg-type]
    del store["a"]
    assert "a" not in store and store.get("a") is None and "a" in table
    store.write_back()
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
