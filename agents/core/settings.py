"""Settings from ``SPCWATCH_*`` environment variables.

Everything a deployment can change lives here, validated once at start-up so a
bad value stops the process with one clear line instead of a stack trace deep
inside Kafka or SQLAlchemy.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from sqlalchemy.engine import make_url

PREFIX = "SPCWATCH_"
_TOPIC_CHARS = re.compile(r"^[A-Za-z0-9._-]*$")
_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LOG_FORMATS = ("json", "text")
_DB_DRIVERS = ("mysql+aiomysql", "sqlite+aiosqlite")


T = TypeVar("T")


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
    state_cache_keys: int = 20000
    sink_batch_size: int = 1000
    sink_retry_max_seconds: float = 300.0
    db_timeout_seconds: float = 30.0
    """Longest one database write (a transaction) may take before it counts as a failed, retried attempt."""
    crash_exit_seconds: float = 30.0
    """After a crash is requested, the process exits (code 1) within this time even if shutdown hangs."""
    health_stall_seconds: float = 300.0
    """/health answers 503 when an input partition has lag but its committed offset stood still this long."""
    poison_max_restarts: int = 3
    """A message whose processing stopped the worker this many times is dead-lettered and skipped."""
    kafka_session_timeout_seconds: float = 60.0
    """How long the broker waits for a silent worker before handing its partitions to the others
    (failover detection; a restart within it gets its own partitions back without a rebalance)."""
    runbook_base_url: str = ""
    """Public base of the runbook links (default: this worker's own web server)."""
    alertmanager_url: str = ""
    """Alertmanager base URL(s), comma-separated for an HA pair; empty: no forwarding."""
    alertmanager_resend_seconds: float = 60.0
    alertmanager_lease_seconds: float = 0.0
    """endsAt of a firing alert = now + this (0: 4 x the re-send interval, as Prometheus)."""
    alertmanager_queue_max: int = 10000
    alertmanager_timeout_seconds: float = 10.0
    max_clock_skew_seconds: float = 300.0
    """Live events more than this ahead of the wall clock are dead-lettered (0: no bound)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate; raises :class:`ConfigError` naming the variable."""
        return load_env(cls, PREFIX, environ)

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
        _check_db_tls(url)
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
        _check(self.state_cache_keys >= 1, "state_cache_keys", f"must be >= 1, got {self.state_cache_keys}")
        _check(1 <= self.sink_batch_size <= 100_000, "sink_batch_size",
               f"must be 1-100000, got {self.sink_batch_size}")
        _check(self.sink_retry_max_seconds > 0, "sink_retry_max_seconds", "must be > 0")
        _check(self.db_timeout_seconds > 0, "db_timeout_seconds", "must be > 0")
        _check(self.crash_exit_seconds > 0, "crash_exit_seconds", "must be > 0")
        _check(self.health_stall_seconds > 0, "health_stall_seconds", "must be > 0")
        _check(6 <= self.kafka_session_timeout_seconds <= 1800, "kafka_session_timeout_seconds",
               "must be 6-1800 (the broker's group.min/max.session.timeout.ms defaults), "
               f"got {self.kafka_session_timeout_seconds:g}")
        _check(self.poison_max_restarts >= 1, "poison_max_restarts", f"must be >= 1, got {self.poison_max_restarts}")
        for url in self.alertmanager_urls:
            _check(url.startswith(("http://", "https://")), "alertmanager_url",
                   f"expects http(s)://host:port[,http(s)://host:port], got {url!r}")
        _check(self.alertmanager_resend_seconds > 0, "alertmanager_resend_seconds", "must be > 0")
        _check(self.alertmanager_lease_seconds >= 0, "alertmanager_lease_seconds", "must be >= 0")
        _check(self.alertmanager_queue_max >= 1, "alertmanager_queue_max", "must be >= 1")
        _check(self.alertmanager_timeout_seconds > 0, "alertmanager_timeout_seconds", "must be > 0")
        _check(0 <= self.max_clock_skew_seconds <= 366 * 86400, "max_clock_skew_seconds",
               f"must be 0 (no bound) to 31622400 seconds, got {self.max_clock_skew_seconds:g}")
        if self.runbook_base_url:
            _check(self.runbook_base_url.startswith(("http://", "https://")), "runbook_base_url",
                   f"expects an http(s) URL, got {self.runbook_base_url!r}")

    def topic(self, name: str) -> str:
        """The full Kafka topic name for a contract topic name."""
        return f"{self.topic_prefix}{name}"

    @property
    def group_id(self) -> str:
        """Consumer group / Faust app id; the prefix keeps environments apart."""
        return f"{self.topic_prefix}{self.app_id}"

    @property
    def alertmanager_urls(self) -> tuple[str, ...]:
        return tuple(u.strip().rstrip("/") for u in self.alertmanager_url.split(",") if u.strip())

    @property
    def runbook_base(self) -> str:
        """Where runbook links point: ``SPCWATCH_RUNBOOK_BASE_URL``, else this worker's web server."""
        return self.runbook_base_url.rstrip("/") or f"http://127.0.0.1:{self.web_port}"

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


@dataclass(frozen=True, slots=True)
class Env:
    """How one config field is spelled in the environment, when not ``<PREFIX><FIELD>`` read by its type.

    A use case's settings dataclass extends its model's config and lists these in a class attribute
    ``ENV: ClassVar[Mapping[str, Env]]`` (field name -> spelling), so the model keeps its own types
    (pairs, ``None``) while the documented variables keep theirs.
    """

    parse: Callable[[str], Any] | None = None
    """raw string -> the field's value (``ValueError``: one line naming the variable); None: by type."""
    names: tuple[str, ...] = ()
    """The variables, without the prefix: one (another name), or one per element of a tuple field
    (each parsed by ``parse`` or the element type, the unset ones keep the default's element).
    Empty: the field's name."""
    form: str = ""
    """The expected form, for the error line (e.g. ``STORE=Area/City,...``)."""


def upper_list(raw: str) -> tuple[str, ...]:
    """``a,b,...`` upper-cased (currency codes)."""
    return tuple(part.strip().upper() for part in raw.split(",") if part.strip())


def lower_list(raw: str) -> tuple[str, ...]:
    """``A,b,...`` lower-cased (category names)."""
    return tuple(part.strip().lower() for part in raw.split(",") if part.strip())


def pairs(raw: str) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE,...`` as pairs (the spelling of per-store overrides)."""
    out = []
    for item in (part.strip() for part in raw.split(",")):
        key, sep, value = item.partition("=")
        if item and not (sep and key.strip() and value.strip()):
            raise ValueError(f"entries are KEY=VALUE, got {item!r}")
        if item:
            out.append((key.strip(), value.strip()))
    return tuple(out)


def load_env(cls: type[T], prefix: str, environ: Mapping[str, str] | None = None) -> T:
    """Build dataclass ``cls`` from ``<prefix><FIELD>`` variables, then ``validate()`` it.

    A use case's settings dataclass extends its model's config with the processor's own fields,
    so one dataclass holds every ``SPCWATCH_<USE CASE>_*`` variable and *is* the model's config;
    fields spelled otherwise in the environment say so in ``cls.ENV`` (:class:`Env`). A model's
    ``ValueError`` messages, which start with the field name, become :class:`ConfigError` naming
    the variable. Field types: ``str``, ``int``, ``float``, ``bool``, ``tuple[str, ...]``,
    ``tuple[int, ...]`` (comma-separated) and ``tuple[tuple[str, str], ...]`` (``KEY=VALUE,...``).
    """
    environ = os.environ if environ is None else environ
    spelling: Mapping[str, Env] = getattr(cls, "ENV", {})
    values: dict[str, Any] = {}
    variables: dict[str, str] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        env = spelling.get(f.name, Env())
        names = env.names or (f.name.upper(),)
        variables[f.name] = ", ".join(prefix + n for n in names)
        if len(names) == 1:
            raw = environ.get(prefix + names[0])
            if raw is not None:
                values[f.name] = _parse(prefix + names[0], f.type, raw.strip(), env)
            continue
        raws = [environ.get(prefix + n) for n in names]
        if any(r is not None for r in raws):
            default = f.default if isinstance(f.default, tuple) else (None,) * len(names)
            element = str(f.type).removeprefix("tuple[").partition(",")[0]
            values[f.name] = tuple(d if r is None else _parse(prefix + n, element, r.strip(), env)
                                   for n, r, d in zip(names, raws, default, strict=True))
    try:
        obj = cls(**values)
        validate = getattr(obj, "validate", None)
        if validate is not None:
            validate()
    except ConfigError:
        raise
    except ValueError as exc:
        field_name, _, rest = str(exc).partition(" ")
        if field_name in variables:
            raise ConfigError(f"{variables[field_name]} {rest}") from None
        raise ConfigError(f"{prefix}* {exc}") from None
    return obj


def _parse(variable: str, type_: Any, raw: str, env: Env) -> Any:
    if env.parse is None:
        return _coerce(variable, type_, raw)
    try:
        return env.parse(raw)
    except (ValueError, KeyError) as exc:
        form = f"must be {env.form}: " if env.form else ""
        raise ConfigError(f"{variable} {form}{exc}") from None


def _coerce(variable: str, type_: Any, raw: str) -> Any:
    type_name = type_ if isinstance(type_, str) else getattr(type_, "__name__", str(type_))
    if type_name == "int":
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be an integer, got {raw!r}") from None
    if type_name == "float":
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{variable} must be a number, got {raw!r}") from None
    if type_name == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{variable} must be true or false, got {raw!r}")
    if type_name.startswith("tuple[tuple[str, str]"):
        try:
            return pairs(raw)
        except ValueError as exc:
            raise ConfigError(f"{variable} must be KEY=VALUE,...: {exc}") from None
    if type_name.startswith("tuple[tuple"):
        raise ConfigError(f"{variable} cannot be set from the environment")
    if type_name.startswith("tuple[int"):
        try:
            return tuple(int(part) for part in raw.split(",") if part.strip())
        except ValueError:
            raise ConfigError(f"{variable} must be comma-separated integers, got {raw!r}") from None
    if type_name.startswith("tuple"):
        return tuple(part.strip() for part in raw.split(",") if part.strip())
    if variable.endswith(("LOG_LEVEL", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM")):
        return raw.upper()
    if variable.endswith("LOG_FORMAT"):
        return raw.lower()
    return raw


def check(ok: bool, variable: str, message: str) -> None:
    """Raise :class:`ConfigError` ``"<variable> <message>"`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"{variable} {message}")


def _check(ok: bool, name: str, message: str) -> None:
    check(ok, f"{PREFIX}{name.upper()}", message)


_DB_TLS_FILES = ("ssl_ca", "ssl_cert", "ssl_key")


def _check_db_tls(url: Any) -> None:
    """The TLS options of a MySQL URL name files that exist (stream_app/runtime/db.py uses them)."""
    given = {k: v[-1] if isinstance(v, tuple) else v for k, v in url.query.items()
             if k in (*_DB_TLS_FILES, "ssl_check_hostname")}
    if not given:
        return
    _check(url.drivername.startswith("mysql"), "db_url", f"{', '.join(given)}: TLS options are for mysql+aiomysql")
    for key in _DB_TLS_FILES:
        if given.get(key):
            _check(os.path.isfile(given[key]), "db_url", f"{key}: file not found: {given[key]}")
    _check(not given.get("ssl_key") or bool(given.get("ssl_cert")), "db_url", "ssl_key needs ssl_cert")
    _check(given.get("ssl_check_hostname", "true").lower() in ("1", "true", "yes", "on", "0", "false", "no", "off"),
           "db_url", f"ssl_check_hostname must be true or false, got {given.get('ssl_check_hostname')!r}")


def _mask_url(url: str) -> str:
    """The URL with its password hidden, whatever characters the password holds.

    SQLAlchemy renders it when the URL is unambiguous. An unencoded ``@`` in the
    password makes SQLAlchemy take the rest for the host (``:***@456@host``), so
    with more than one ``@`` everything up to the last one after the user is
    hidden; a string without a scheme is not echoed at all.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "***"
    if rest.count("@") <= 1:
        try:
            return make_url(url).render_as_string(hide_password=True)
        except Exception:
            pass
    if "@" not in rest:
        return f"{scheme}://***"
    userinfo, _, host = rest.rpartition("@")
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"
