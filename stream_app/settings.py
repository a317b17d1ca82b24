"""Settings from ``SPCWATCH_*`` environment variables.

Everything a deployment can change lives here, validated once at start-up so a
bad value stops the process with one clear line instead of a stack trace deep
inside Kafka or SQLAlchemy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy.engine import make_url

PREFIX = "SPCWATCH_"
_TOPIC_CHARS = re.compile(r"^[A-Za-z0-9._-]*$")
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_FORMATS = ("json", "text")
_DB_DRIVERS = ("mysql+aiomysql", "sqlite+aiosqlite")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable."""


@dataclass(frozen=True, slots=True, repr=False)
class Settings:
    """Validated configuration. Field ``x`` comes from ``SPCWATCH_X``."""

    kafka_bootstrap: str = "127.0.0.1:9092"
    db_url: str = "sqlite+aiosqlite:///spcwatch.db"
    topic_prefix: str = ""
    web_port: int = 6066
    web_host: str = "0.0.0.0"
    app_id: str = "spcwatch"
    partitions: int = 4
    replication_factor: int = 1
    data_dir: str = ".spcwatch-data"
    log_level: str = "INFO"
    log_format: str = "json"
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_sasl_username: str = ""
    kafka_sasl_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""
    sink_batch_size: int = 1000
    sink_retry_max_seconds: float = 300.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate; raises :class:`ConfigError` naming the variable."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(PREFIX + f.name.upper())
            if raw is None:
                continue
            values[f.name] = _coerce(f.name, f.type, raw.strip())
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        _check(bool(self.kafka_bootstrap), "kafka_bootstrap", "must not be empty")
        for server in self.kafka_bootstrap.split(","):
            host, sep, port = server.strip().rpartition(":")
            _check(
                bool(sep and host and port.isdigit() and 0 < int(port) < 65536),
                "kafka_bootstrap",
                f"expects host:port[,host:port], got {server.strip()!r}",
            )
        try:
            url = make_url(self.db_url)
        except Exception:
            raise ConfigError(
                f"{PREFIX}DB_URL is not a valid SQLAlchemy URL: {_mask_url(self.db_url)!r}"
            ) from None
        _check(
            url.drivername in _DB_DRIVERS,
            "db_url",
            f"driver must be one of {', '.join(_DB_DRIVERS)}, got {url.drivername!r}",
        )
        _check(
            bool(_TOPIC_CHARS.match(self.topic_prefix)),
            "topic_prefix",
            "may only contain letters, digits, '.', '_' and '-'",
        )
        _check(bool(self.app_id) and bool(_TOPIC_CHARS.match(self.app_id)), "app_id",
               "must be non-empty letters, digits, '.', '_' or '-'")
        _check(0 < self.web_port < 65536, "web_port", f"must be 1-65535, got {self.web_port}")
        _check(1 <= self.partitions <= 1000, "partitions", f"must be 1-1000, got {self.partitions}")
        _check(1 <= self.replication_factor <= 10, "replication_factor",
               f"must be 1-10, got {self.replication_factor}")
        _check(self.log_level in _LOG_LEVELS, "log_level",
               f"must be one of {', '.join(_LOG_LEVELS)}, got {self.log_level!r}")
        _check(self.log_format in _LOG_FORMATS, "log_format",
               f"must be one of {', '.join(_LOG_FORMATS)}, got {self.log_format!r}")
        _check(self.kafka_security_protocol in _SECURITY_PROTOCOLS, "kafka_security_protocol",
               f"must be one of {', '.join(_SECURITY_PROTOCOLS)}, got {self.kafka_security_protocol!r}")
        _check(self.kafka_sasl_mechanism in _SASL_MECHANISMS, "kafka_sasl_mechanism",
               f"must be one of {', '.join(_SASL_MECHANISMS)}, got {self.kafka_sasl_mechanism!r}")
        if self.kafka_security_protocol.startswith("SASL"):
            _check(bool(self.kafka_sasl_username and self.kafka_sasl_password),
                   "kafka_sasl_username",
                   f"and {PREFIX}KAFKA_SASL_PASSWORD are required with {self.kafka_security_protocol}")
        if self.kafka_ssl_cafile:
            _check(os.path.isfile(self.kafka_ssl_cafile), "kafka_ssl_cafile",
                   f"file not found: {self.kafka_ssl_cafile}")
        _check(1 <= self.sink_batch_size <= 100_000, "sink_batch_size",
               f"must be 1-100000, got {self.sink_batch_size}")
        _check(self.sink_retry_max_seconds > 0, "sink_retry_max_seconds", "must be > 0")

    def topic(self, name: str) -> str:
        """The full Kafka topic name for a contract topic name."""
        return f"{self.topic_prefix}{name}"

    @property
    def group_id(self) -> str:
        """Consumer group / Faust app id; the prefix keeps environments apart."""
        return f"{self.topic_prefix}{self.app_id}"

    @property
    def db_url_masked(self) -> str:
        return _mask_url(self.db_url)

    def __repr__(self) -> str:
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in self.describe().items()) + ")"

    def describe(self) -> dict[str, Any]:
        """Settings safe to log: secrets masked."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["db_url"] = self.db_url_masked
        out["kafka_sasl_password"] = "***" if self.kafka_sasl_password else ""
        return out


def _coerce(name: str, type_: Any, raw: str) -> Any:
    type_name = type_ if isinstance(type_, str) else type_.__name__
    if type_name == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name.upper()} must be an integer, got {raw!r}") from None
    if type_name == "float":
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{PREFIX}{name.upper()} must be a number, got {raw!r}") from None
    if name in ("log_level", "kafka_security_protocol", "kafka_sasl_mechanism"):
        return raw.upper()
    if name == "log_format":
        return raw.lower()
    return raw


def _check(ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{PREFIX}{name.upper()} {message}")


def _mask_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"//([^:/@]*):[^@]*@", r"//\1:***@", url)
