"""A seeded generator of orders, payments and ledger entries with a known mix of injected problems.

Every order is either clean (matched, possibly within tolerance, split tender,
refunded on all three sources, a retried identical payment, ids as integers or
padded strings) or carries exactly one injected problem, so the expected
``recon_exceptions`` rows are known: ``expected[(order_id, category)] = status``.
A batch of test-currency (NZD) orders after the last deadline closes the stream:
it moves every source's clock past every deadline on every partition.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

T0 = datetime(2026, 2, 17, 13, 0, tzinfo=UTC).timestamp()  # 08:00 in New York
STORES = [f"US{n:05d}" for n in range(1, 11)]
PROBLEMS = {
    "missing_payment": "open", "missing_ledger": "open", "orphan_payment": "open", "orphan_ledger": "open",
    "amount_mismatch": "open", "unit_scale_mismatch": "open", "currency_mismatch": "open",
    "status_mismatch": "open", "partial_payment": "open", "overpayment": "open", "refund_unmatched": "open",
    "duplicate": "open", "late_payment": "resolved",
}


@dataclass
class Scenario:
    events: list[dict[str, Any]] = field(default_factory=list)  # each with "topic", sorted by ts
    expected: dict[tuple[str, str], str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # order_id -> what was generated

    def by_topic(self, topic: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["topic"] == topic]


def _money(rng: random.Random, minor: int) -> dict[str, Any]:
    """Either form the contract allows."""
    return {"amount_minor": minor} if rng.random() < 0.5 else {"amount": f"{minor / 100:.2f}"}


def generate(n_orders: int = 2000, seed: int = 7, problem_rate: float = 0.3, sentinels: int = 16) -> Scenario:
    rng = random.Random(seed)
    sc = Scenario()
    ev = sc.events
    problems = list(PROBLEMS)
    for i in range(n_orders):
        oid = str(1_000_000 + i)
        t = T0 + rng.uniform(0, 10 * 3600)
        store = rng.choice(STORES)
        total = rng.randrange(300, 3000)
        kind = rng.choice(problems) if rng.random() < problem_rate else rng.choice(
            ["clean", "clean", "clean", "tolerance", "split", "refund", "retry", "intid"])
        sc.kinds[oid] = kind
        order_id: Any = int(oid) if kind == "intid" else (f" {oid} " if rng.random() < 0.2 else oid)
        status = "cancelled" if kind == "status_mismatch" else "paid"
        o = {"topic": "orders", "event_id": f"o-{oid}", "order_id": order_id, "store_id": store, "ts": t,
             "status": status, "total": f"{total / 100:.2f}", "currency": "USD", "channel": "app", "items": []}
        pay_ts = t + rng.uniform(2, 300)
        p = {"topic": "payments", "event_id": f"p-{oid}", "payment_id": f"pay-{oid}", "order_id": oid,
             "ts": pay_ts, "currency": "USD", "status": "captured", "method": "card", **_money(rng, total)}
        led_ts = t + rng.uniform(600, 4 * 3600)
        lg = {"topic": "ledger", "event_id": f"l-{oid}", "entry_id": f"je-{oid}", "order_id": oid, "ts": led_ts,
              "currency": "USD", "account": "4000-revenue", "kind": "revenue", "amount": f"{total / 100:.2f}"}
        parts = [o, p, lg]
        if kind == "missing_payment":
            parts.remove(p)
        elif kind == "missing_ledger":
            parts.remove(lg)
        elif kind == "orphan_payment":
            parts = [p]
        elif kind == "orphan_ledger":
            parts = [lg]
        elif kind == "amount_mismatch":
            lg["amount"] = f"{(total + rng.choice([-1, 1]) * rng.randrange(20, 200)) / 100:.2f}"
        elif kind == "unit_scale_mismatch":
            p.pop("amount", None)
            p["amount_minor"] = total * 100
        elif kind == "currency_mismatch":
            p["currency"] = "EUR"
        elif kind == "status_mismatch":
            parts.remove(lg)
        elif kind == "partial_payment":
            p.pop("amount", None)
            p["amount_minor"] = total - rng.randrange(50, 200)
        elif kind == "overpayment":
            parts.append({**p, "event_id": f"p2-{oid}", "payment_id": f"pay2-{oid}", "ts": pay_ts + 3,
                          "amount_minor": rng.randrange(50, 200), "amount": None})
        elif kind == "refund_unmatched" or kind == "refund":
            r = t + rng.uniform(3600, 2 * 3600)
            parts.append({**o, "event_id": f"o2-{oid}", "ts": r, "status": "refunded"})
            parts.append({**p, "event_id": f"p2-{oid}", "payment_id": f"ref-{oid}", "ts": r + 30,
                          "status": "refunded", "amount_minor": total, "amount": None})
            if kind == "refund":
                parts.append({**lg, "event_id": f"l2-{oid}", "entry_id": f"jr-{oid}", "ts": r + 600,
                              "kind": "refund"})
        elif kind == "duplicate":
            parts.append({**p, "event_id": f"p2-{oid}", "ts": pay_ts + 5, "amount_minor": total + 100,
                          "amount": None})
        elif kind == "late_payment":
            p["ts"] = t + 1800
        elif kind == "tolerance":
            p.pop("amount", None)
            p["amount_minor"] = total - 1
        elif kind == "split":
            first = rng.randrange(100, total - 100)
            p.pop("amount", None)
            p["amount_minor"] = first
            parts.append({**p, "event_id": f"p2-{oid}", "payment_id": f"pay2-{oid}", "ts": pay_ts + 4,
                          "amount_minor": total - first})
        elif kind == "retry":
            parts.append(dict(p))  # the producer sent the same payment twice
        for part in parts:
            ev.append({k: v for k, v in part.items() if v is not None})
        if kind in PROBLEMS:
            category = "missing_payment" if kind == "late_payment" else kind
            sc.expected[(oid, category)] = PROBLEMS[kind]
    end = max(e["ts"] for e in ev) + 86400
    for j in range(sentinels):
        oid = f"T{j:04d}"
        sc.kinds[oid] = "test"
        for topic, extra in (("orders", {"event_id": f"o-{oid}", "store_id": "TEST1", "status": "paid",
                                         "total": "10.00", "items": []}),
                             ("payments", {"event_id": f"p-{oid}", "payment_id": f"pay-{oid}",
                                           "status": "captured", "amount_minor": 1000}),
                             ("ledger", {"event_id": f"l-{oid}", "entry_id": f"je-{oid}", "kind": "revenue",
                                         "amount": "10.00"})):
            ev.append({"topic": topic, "order_id": oid, "ts": end + j, "currency": "NZD", **extra})
        sc.expected[(oid, "excluded_test_data")] = "resolved"
    ev.sort(key=lambda e: e["ts"])
    for e in ev:
        e["ts"] = round(e["ts"], 3)
    return sc


def key_of(event: dict[str, Any]) -> bytes:
    """The contract's message key: the normalised order id."""
    return str(event["order_id"]).strip().encode()


def generate_days(days: int = 20, stores: int = 3, per_day: int = 20, seed: int = 23, noise: float = 0.05,
                  drop: tuple[str, int] | None = ("US00001", 16), drop_rate: float = 0.5) -> Scenario:
    """``days`` business days of ``stores`` stores: ``per_day`` orders each between 08:00 and 18:00 in
    New York, a fraction ``noise`` missing their ledger entry (the usual exception rate), and on day
    ``drop[1]`` store ``drop[0]`` misses ``drop_rate`` of them: a match-rate drop the daily SPC must
    see. Test-currency orders a day after the last close every day on every partition."""
    rng = random.Random(seed)
    sc = Scenario()
    for d in range(days):
        for store in STORES[:stores]:
            rate = drop_rate if drop == (store, d) else noise
            for k in range(per_day):
                oid = f"{d:02d}{store[-2:]}{k:03d}"
                t = T0 + d * 86400 + rng.uniform(0, 10 * 3600)
                total = rng.randrange(300, 3000)
                missing = rng.random() < rate
                sc.kinds[oid] = "missing_ledger" if missing else "clean"
                sc.events.append({"topic": "orders", "event_id": f"o-{oid}", "order_id": oid, "store_id": store,
                                  "ts": t, "status": "paid", "total": f"{total / 100:.2f}", "currency": "USD",
                                  "items": []})
                sc.events.append({"topic": "payments", "event_id": f"p-{oid}", "payment_id": f"pay-{oid}",
                                  "order_id": oid,
                                  "ts": t + rng.uniform(2, 300), "currency": "USD", "status": "captured",
                                  "amount_minor": total})
                if missing:
                    sc.expected[(oid, "missing_ledger")] = "open"
                else:
                    sc.events.append({"topic": "ledger", "event_id": f"l-{oid}", "entry_id": f"je-{oid}",
                                      "order_id": oid,
                                      "ts": t + rng.uniform(600, 4 * 3600), "currency": "USD", "kind": "revenue",
                                      "amount": f"{total / 100:.2f}"})
    end = max(e["ts"] for e in sc.events) + 86400
    for j in range(16):
        oid = f"T{j:04d}"
        for topic, extra in (("orders", {"event_id": f"o-{oid}", "store_id": "TEST1", "status": "paid",
                                         "total": "10.00", "items": []}),
                             ("payments", {"event_id": f"p-{oid}", "payment_id": f"pay-{oid}", "status": "captured",
                                           "amount_minor": 1000}),
                             ("ledger", {"event_id": f"l-{oid}", "entry_id": f"je-{oid}", "kind": "revenue",
                                         "amount": "10.00"})):
            sc.events.append({"topic": topic, "order_id": oid, "ts": end + j, "currency": "NZD", **extra})
        sc.expected[(oid, "excluded_test_data")] = "resolved"
    sc.events.sort(key=lambda e: e["ts"])
    for e in sc.events:
        e["ts"] = round(e["ts"], 3)
    return sc
