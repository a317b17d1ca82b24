"""Logging configuration handed to the worker."""

from __future__ import annotations

import logging
import logging.config

import orjson
import pytest

from stream_app.logs import logging_config


def test_faust_buffer_warnings_are_dropped_and_other_warnings_kept(capsys: pytest.CaptureFixture[str]) -> None:
    logging.config.dictConfig(logging_config("INFO", "json"))
    producer_log = logging.getLogger("faust.transport.producer")
    producer_log.warning("producer buffer full size 1104")
    producer_log.info("producer flush took 0.0136")
    producer_log.warning("producer could not reach the broker")
    lines = [orjson.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["level"], r["msg"]) for r in lines] == [("WARNING", "producer could not reach the broker")]
