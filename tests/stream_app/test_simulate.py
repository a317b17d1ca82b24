"""The simulator's generators: deterministic, ordered, contract-valid, realistic in size and error."""

from __future__ import annotations

import argparse
import collections
import itertools
from datetime import UTC, datetime

import orjson
import pytest

from agents.core.events import DECODERS
from agents.core.settings import ConfigError
from stream_app import simulate
from stream_app.simdata import ESTATE_SIZES, World, build_menu, build_skus
from stream_app.simgen import (
    DOMAINS,
    SCENARIOS,
    SimConfig,
    forecast_events,
    generate,
    infra_events,
    order_events,
    resolve_scenarios,
)

DAY = 86400.0
# Tuesday 2026-02-17 15:00 UTC (10:00 in Manhattan): stores open, infra at its morning peak.
T0 = datetime(2026, 2, 17, 15, 0, tzinfo=UTC).timestamp()
WORLD = World()


def config(**changes) -> SimConfig:  # type: ignore[no-untyped-def]
    base = {"t0": T0, "start": T0 - DAY, "end": T0 + 3600.0, "world": WORLD}
    return SimConfig(**{**base, **changes})


def encode(events) -> list[bytes]:  # type: ignore[no-untyped-def]
    return [e.topic.encode() + b"|" + e.key + b"|" + orjson.dumps(e.value) for e in events]


def test_same_seed_same_events_and_another_seed_differs() -> None:
    cfg = config(scenarios=tuple(SCENARIOS))
    first = encode(generate(cfg))
    assert first == encode(generate(cfg))
    assert first != encode(generate(config(scenarios=tuple(SCENARIOS), seed=7)))


def test_events_are_in_event_time_order_and_inside_the_run() -> None:
    cfg = config(scenarios=tuple(SCENARIOS))
    times = [e.ts for e in generate(cfg)]
    assert times == sorted(times)
    assert times[0] >= cfg.start and times[-1] < cfg.end


def test_a_day_is_the_same_whatever_the_start_and_the_other_domains() -> None:
    """Randomness is per (entity, day): starting earlier or adding domains changes nothing of a day."""
    window = (T0 - 6 * 3600, T0)
    late = [e for e in generate(config(start=T0 - 8 * 3600, domains=("orders",)))
            if window[0] <= e.ts < window[1]]
    early = [e for e in generate(config(start=T0 - 3 * DAY, domains=DOMAINS))
             if window[0] <= e.ts < window[1] and e.topic in ("orders", "payments", "ledger")]
    assert late and encode(late) == encode(early)


def test_every_event_is_valid_under_the_contract_and_keyed_as_it_says() -> None:
    cfg = config(scenarios=tuple(SCENARIOS))
    counts: collections.Counter[str] = collections.Counter()
    for event in generate(cfg):
        decoded = DECODERS[event.topic](orjson.dumps(event.value))
        assert not decoded.errors, (event, decoded.errors)
        for item in decoded.events:
            key = item.resource_id if event.topic == "metrics.samples" else (
                item.store_id if event.topic in ("forecasts", "demand") else item.order_id)
            assert key.encode() == event.key
            assert item.ts == pytest.approx(event.ts, abs=1.0)
        counts[event.topic] += 1
    assert set(counts) == {"metrics.samples", "orders", "payments", "ledger", "forecasts", "demand"}


def test_the_estate_has_the_size_of_the_one_it_replaces() -> None:
    kinds = collections.Counter(r.resource_type for r in WORLD.estate)
    assert kinds == {"ec2": 233, "rds": 62, "redis": 76, "eks": 3, "msk": 2} == ESTATE_SIZES
    assert len({r.resource_id for r in WORLD.estate}) == 376
    metrics = {r.resource_type: {m.name for m in r.metrics} for r in WORLD.estate}
    assert {"CPUUtilization", "DatabaseConnections", "ReadLatency"} <= metrics["rds"]
    assert {"Evictions", "DatabaseMemoryUsagePercentage"} <= metrics["redis"]
    assert "MaxOffsetLag" in metrics["msk"]


def test_infra_sends_one_batch_per_resource_per_interval_with_a_daily_cycle() -> None:
    cfg = config(start=T0 - DAY, end=T0, domains=("infra",), infra_interval=300.0)
    per_interval = collections.Counter(e.ts for e in infra_events(cfg))
    assert set(per_interval.values()) == {376}
    assert len(per_interval) == 288
    cpu: dict[int, list[float]] = collections.defaultdict(list)
    for event in infra_events(cfg):
        for sample in event.value["samples"]:
            assert sample["resource_id"].encode() == event.key
            if sample["metric"] == "CPUUtilization" and sample["resource_type"] == "ec2":
                cpu[datetime.fromtimestamp(event.ts, UTC).hour].append(sample["value"])
    mean = {hour: sum(v) / len(v) for hour, v in cpu.items()}
    # 13:00 UTC is the Manhattan breakfast rush, 07:00 UTC is 2 a.m. there.
    assert mean[13] > 1.5 * mean[7]


def test_orders_look_like_the_chain() -> None:
    cfg = config(start=T0 - 7 * DAY, end=T0, domains=("orders",))
    events = list(order_events(cfg))
    orders = [e.value for e in events if e.topic == "orders"]
    first_events = {o["order_id"]: o for o in reversed(orders)}  # the first event of each order
    paid = [o for o in first_events.values() if o["status"] == "paid"]
    per_day = len(first_events) / 7
    assert 1700 < per_day < 2300  # ~520K orders over 8 months at 10 stores
    assert {o["store_id"] for o in paid} == {f"US{i:05d}" for i in range(1, 11)}
    average = sum(float(o["total"]) for o in paid) / len(paid)
    assert 3.5 < average < 6.0  # $2.19M over 521K orders
    assert any(float(i["discount"]) > 0 for o in paid for i in o["items"])
    statuses = collections.Counter(o["status"] for o in orders)
    assert statuses["refunded"] > 0 and statuses["cancelled"] > 0
    payments = [e.value for e in events if e.topic == "payments"]
    methods = collections.Counter(p["method"] for p in payments)
    assert methods["card"] > 0 and methods["app"] > 0
    by_order = collections.Counter(p["order_id"] for p in payments if p["status"] == "captured")
    assert any(n == 2 for n in by_order.values()), "some payments are split"
    # Every paid order's captured payments sum to its total; its ledger entry comes minutes later.
    ts_of = {e.value["order_id"]: e.ts for e in events
             if e.topic == "orders" and e.value["event_id"] == f"o-{e.value['order_id']}"}
    sums: dict[str, int] = collections.defaultdict(int)
    for p in payments:
        if p["status"] == "captured":
            sums[p["order_id"]] += p["amount_minor"]
    ledger = {e.value["order_id"]: e for e in events if e.topic == "ledger" and e.value["kind"] == "revenue"}
    settled = [o for o in paid if ts_of[o["order_id"]] < cfg.stop - 4 * 3600]  # payments and ledger are in
    assert len(settled) > 1000
    for order in settled:
        assert sums[order["order_id"]] == round(float(order["total"]) * 100)
        if order["order_id"] in ledger:
            assert 60 < ledger[order["order_id"]].ts - ts_of[order["order_id"]] < 4 * 3600


def test_weekends_are_quieter_in_the_office_district() -> None:
    cfg = config(start=T0 - 14 * DAY, end=T0, domains=("orders",))
    per_weekday: dict[int, int] = collections.Counter()
    for event in order_events(cfg):
        if event.topic == "orders" and event.value["event_id"] == f"o-{event.value['order_id']}":
            per_weekday[datetime.fromisoformat(event.value["ts"]).weekday()] += 1
    assert per_weekday[6] < 0.85 * per_weekday[2]


def test_catalogues() -> None:
    menu, skus = build_menu(), build_skus()
    assert len(menu) == 58 and len({p.spu for p in menu}) == 58
    assert all(0 < p.cost_minor < p.price_minor for p in menu)
    assert len(skus) == 88 and len(WORLD.stores) == 10
    assert all(s.store_id.startswith("US0000") or s.store_id == "US00010" for s in WORLD.stores)


def test_forecast_error_is_like_the_real_systems() -> None:
    """MAPE ~38% and WMAPE ~31% (observed 37.8% / 30.7%)."""
    cfg = config(start=T0 - 21 * DAY, end=T0, domains=("forecast",))
    forecast, actual = {}, {}
    for event in forecast_events(cfg):
        v = event.value
        key = (v["store_id"], v["sku"], v["date"])
        if event.topic == "forecasts":
            forecast[key] = v["forecast_qty"]
            assert event.ts < datetime.fromisoformat(v["date"]).replace(tzinfo=UTC).timestamp()
        else:
            actual[key] = v["actual_qty"]
    both = [k for k in actual if k in forecast]
    assert len(both) > 10 * 88 * 15
    assert {k[1] for k in both} == {s.sku for s in WORLD.skus}
    positive = [k for k in both if actual[k] > 0]
    mape = sum(abs(actual[k] - forecast[k]) / actual[k] for k in positive) / len(positive)
    wmape = sum(abs(actual[k] - forecast[k]) for k in both) / sum(actual[k] for k in both)
    assert 0.34 < mape < 0.42
    assert 0.28 < wmape < 0.34


def test_resolve_scenarios() -> None:
    assert resolve_scenarios(["all"]) == tuple(SCENARIOS)
    assert resolve_scenarios(["host-silent", "host-silent"]) == ("host-silent",)
    assert resolve_scenarios([]) == ()
    with pytest.raises(ValueError, match="nope"):
        resolve_scenarios(["nope"])
    assert len(SCENARIOS) == 12  # 10 + the two menu scenarios (UC-PR-01)
    assert all(s.expect and s.summary for s in SCENARIOS.values())


# --------------------------------------------------------------------------- CLI parsing


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    simulate.add_arguments(parser)
    return parser.parse_args(argv)


def test_compose_command_line_is_valid() -> None:
    plan = simulate.plan_from_args(parse("--speed", "60", "--scenario", "all"), now=T0 + 17)
    assert plan.speed == 60 and plan.config.scenarios == tuple(SCENARIOS)
    assert plan.config.t0 == T0 and plan.config.start == T0 - 30 * DAY and plan.config.end is None
    # Infra history: from the UTC midnight one day before the live day.
    assert plan.config.infra_start == datetime(2026, 2, 16, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("argv", "message"), [
    (("--speed", "fast"), "--speed"),
    (("--speed", "0"), "--speed"),
    (("--duration", "soon"), "--duration"),
    (("--domains", "infra,weather"), "--domains"),
    (("--scenario", "meteor"), "meteor"),
    (("--out", "x.jsonl"), "--duration"),
    (("--infra-interval", "7m"), "--infra-interval"),
    (("--start", "yesterday"), "--start"),
])
def test_bad_flags_are_one_line_errors(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        simulate.plan_from_args(parse(*argv))


def test_flags() -> None:
    plan = simulate.plan_from_args(parse("--speed", "max", "--duration", "2h", "--history-days", "0",
                                         "--start", "2026-02-17T15:00:00Z", "--domains", "infra", "--seed", "3"))
    assert plan.speed is None
    assert (plan.config.start, plan.config.t0, plan.config.end) == (T0, T0, T0 + 7200)
    assert plan.config.domains == ("infra",) and plan.config.seed == 3
    no_infra_history = simulate.plan_from_args(parse("--infra-history-days", "0"), now=T0)
    assert no_infra_history.config.infra_start == T0
    assert simulate.parse_duration("90", "--x") == 90 and simulate.parse_duration("1.5d", "--x") == 1.5 * DAY


def test_out_writes_jsonl_with_topics(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "sim.jsonl"
    plan = simulate.plan_from_args(parse("--duration", "30m", "--history-days", "0.25", "--scenario", "all",
                                         "--start", "2026-02-17T09:00:00Z", "--out", str(out), "--quiet"))
    assert simulate.write_file(plan) == 0
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    expected = [{"topic": e.topic, **e.value} for e in generate(plan.config)]
    assert lines == expected and len(lines) > 1000
    assert "done:" in capsys.readouterr().err


def test_list_names_every_scenario_and_its_expectation() -> None:
    text = simulate.describe_scenarios()
    for name, scenario in SCENARIOS.items():
        assert name in text
        for expectation in scenario.expect:
            assert all(rule in text for rule in expectation.rules)


def test_pacer_maps_event_time_to_wall_time() -> None:
    clock = itertools.count(100.0, 0.0)  # a frozen clock: 100.0 for ever
    pacer = simulate.Pacer(t0=1000.0, speed=60.0, clock=lambda: next(clock))
    assert pacer.delay(10.0) == 0.0  # history: no waiting
    assert pacer.delay(1000.0) == 0.0  # t0 pins the wall clock
    assert pacer.delay(1600.0) == pytest.approx(10.0)  # 10 event minutes at x60
    assert simulate.Pacer(t0=0.0, speed=None).delay(5e9) == 0.0


def test_max_speed_over_a_finite_span_ends_now_and_a_faster_than_real_time_run_says_it_runs_ahead() -> None:
    """The worker dead-letters events too far ahead of the wall clock (README, Delivery guarantees)."""
    import io

    from agents.core.settings import Settings

    finite = simulate.plan_from_args(parse("--speed", "max", "--duration", "2h", "--history-days", "1"), now=T0 + 17)
    assert (finite.config.t0, finite.config.end) == (T0 - 7200, T0)
    said = io.StringIO()
    assert not simulate.ahead_of_wall(finite, Settings(), said, now=T0 + 17) and not said.getvalue()
    paced = simulate.plan_from_args(parse("--speed", "60"), now=T0)
    assert simulate.ahead_of_wall(paced, Settings(), said, now=T0)
    assert "SPCWATCH_MAX_CLOCK_SKEW_SECONDS=0" in said.getvalue()
    assert not simulate.ahead_of_wall(paced, Settings(max_clock_skew_seconds=0), io.StringIO(), now=T0)
