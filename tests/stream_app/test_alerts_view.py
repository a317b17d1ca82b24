"""The live alert view: state per alert id, rendering, throughput and lag probes."""

from __future__ import annotations

import asyncio

import pytest

from stream_app.alerts_view import (
    AlertBoard,
    RateProbe,
    Stats,
    consumer_lag,
    format_age,
    format_number,
    log_line,
    read_consumed,
    render,
)

FIRING = {"alert_id": "a1", "status": "firing", "severity": "critical", "use_case": "infra", "rule": "WE1",
          "entity": {"resource_id": "aws-luckyus-salesorder-rw", "metric": "CPUUtilization"},
          "value": 97.2, "expected": {"center": 41.0, "lower": 12.3, "upper": 69.7}, "zscore": 5.9,
          "starts_at": "2026-02-17T10:05:00Z", "ends_at": None, "summary": "CPU"}
RESOLVED = {**FIRING, "status": "resolved", "ends_at": "2026-02-17T12:05:00Z"}
WARNING = {**FIRING, "alert_id": "a2", "severity": "warning", "use_case": "recon", "rule": "RECON_OVERPAYMENT",
           "entity": {"store_id": "US00008"}, "value": 12.4, "expected": None,
           "starts_at": "2026-02-17T11:00:00Z"}


def test_board_keeps_the_latest_state_per_alert_id() -> None:
    board = AlertBoard()
    assert board.apply(FIRING, 1.0) is not None
    assert board.apply(FIRING, 2.0) is None  # a replayed transition changes nothing
    assert board.apply(WARNING, 3.0) is not None
    assert [r.alert_id for r in board.firing] == ["a1", "a2"]  # critical first
    row = board.apply(RESOLVED, 4.0)
    assert row is not None and row.status == "resolved"
    assert board.apply(FIRING, 5.0) is None  # a late redelivery of "firing" does not reopen it
    assert [r.alert_id for r in board.firing] == ["a2"]
    assert [r.alert_id for r in board.resolved] == ["a1"]
    assert board.transitions == 3


def test_ages_use_event_time_when_the_alerts_run_ahead_of_the_wall_clock() -> None:
    board = AlertBoard()
    board.apply(RESOLVED, 0.0)
    ends = 1771322700.0 + 7200  # 2026-02-17T12:05Z
    assert board.clock(wall=1000.0) == ends
    assert board.clock(wall=ends + 60) == ends + 60


def test_render_shows_what_the_issue_asks_for() -> None:
    board = AlertBoard()
    board.apply(FIRING, 0.0)
    board.apply(WARNING, 0.0)
    screen = render(board, Stats(rate=1234.0, lag=56), wall=0.0, width=160, height=30, title="t", colour=False)
    for text in ("FIRING", "critical", "infra", "resource_id=aws-luckyus-salesorder-rw", "WE1",
                 "97.20 vs 41.00 [12.30, 69.70]", "55m00s", "1,234 events/s", "consumer lag 56", "recon",
                 "RECON_OVERPAYMENT", "firing 2"):
        assert text in screen, text
    assert "\x1b[" not in screen
    assert "\x1b[1;31m" in render(board, Stats(), wall=0.0, colour=True)
    assert "no alerts yet" in render(AlertBoard(), Stats(), wall=0.0, colour=False)


def test_render_fits_the_screen() -> None:
    board = AlertBoard()
    for i in range(50):
        board.apply({**FIRING, "alert_id": f"x{i}"}, 0.0)
    screen = render(board, Stats(), wall=0.0, width=100, height=20, colour=False).splitlines()
    assert len(screen) <= 20 and all(len(line) <= 100 for line in screen)
    assert "more firing" in screen[-1]


def test_log_line() -> None:
    board = AlertBoard()
    row = board.apply(RESOLVED, 0.0)
    assert row is not None
    line = log_line(row, board.clock(0.0))
    assert line.startswith("alert RESOLVED") and "lasted 2h00m" in line and "id a1" in line


def test_formatting() -> None:
    assert [format_age(s) for s in (5, 125, 7260, 200000, None)] == ["5s", "2m05s", "2h01m", "2d07h", "-"]
    assert [format_number(v) for v in (0, 0.0042, 3.14159, 250.0, 12345, 2.5e9, None)] == [
        "0", "0.0042", "3.14", "250", "12.3k", "2.50G", "-"]


def test_throughput_from_the_worker_counter() -> None:
    body = ('# TYPE spcwatch_events_consumed_total counter\n'
            'spcwatch_events_consumed_total{topic="orders"} 10.0\n'
            'spcwatch_events_consumed_total{topic="metrics.samples"} 90.0\n')
    assert read_consumed(body) == 100.0
    probe, stats = RateProbe("http://x/metrics", window=10.0), Stats()
    probe.add(0.0, 100.0, stats)
    assert stats.rate is None
    probe.add(2.0, 300.0, stats)
    assert stats.rate == pytest.approx(100.0)
    probe.add(4.0, 50.0, stats)  # the worker restarted: its counter went back
    probe.add(5.0, 150.0, stats)
    assert stats.rate == pytest.approx(100.0)


def test_unreachable_metrics_is_a_note_not_a_crash() -> None:
    stats = Stats()
    asyncio.run(RateProbe("http://127.0.0.1:9/metrics").poll(stats))
    assert stats.rate is None and "no /metrics" in stats.note


@pytest.mark.integration
def test_consumer_lag_against_the_broker(kafka_bootstrap: str, topic_prefix: str) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    topic, group = topic_prefix + "orders", topic_prefix + "group"

    async def scenario() -> tuple[int, int]:
        admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
        await admin.start()
        await admin.create_topics([NewTopic(topic, 2, 1)])
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        for i in range(10):
            await producer.send_and_wait(topic, b"x", partition=i % 2)
        await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
        await consumer.start()
        try:
            before = await consumer_lag(admin, consumer, group, [topic])
            committer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group,
                                         enable_auto_commit=False)
            await committer.start()
            committer.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
            await committer.commit({TopicPartition(topic, 0): 5, TopicPartition(topic, 1): 2})
            await committer.stop()
            after = await consumer_lag(admin, consumer, group, [topic])
        finally:
            await consumer.stop()
            await admin.delete_topics([topic])
            await admin.close()
        return before, after

    assert asyncio.run(scenario()) == (10, 3)
