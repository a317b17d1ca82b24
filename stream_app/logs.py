"""Structured logging: one JSON object per line, or plain text for terminals."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "msg", ...extra}``; extras come from ``extra=``."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                payload[key] = value
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(payload, default=str).decode()


class ExpectedBufferWarnings(logging.Filter):
    """Drops Faust's "producer buffer full" warnings and the "producer flush took" lines after them.

    Faust buffers at most 100 changelog records before making the agents wait for the
    producer; every checkpoint that publishes more keys than that says so, at WARNING, each
    time. That wait is the intended back-pressure here, not a fault.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str)
                    and record.msg.startswith(("producer buffer full size", "producer flush took")))


def logging_config(level: str, fmt: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dict, also handed to Faust's worker."""
    formatter = ({"()": JsonFormatter} if fmt == "json"
                 else {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"})
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "filters": {"expected_buffer_warnings": {"()": ExpectedBufferWarnings}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "default",
                                "stream": "ext://sys.stderr", "filters": ["expected_buffer_warnings"]}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {"aiokafka": {"level": "WARNING"}},
    }


def setup(level: str, fmt: str) -> None:
    import logging.config

    logging.config.dictConfig(logging_config(level, fmt))
