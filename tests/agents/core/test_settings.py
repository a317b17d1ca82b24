from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import pytest

from agents.core.settings import ConfigError, Env, Settings, load_env


def test_defaults_serve_a_local_run() -> None:
    settings = Settings.from_env({})
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.db_url == "sqlite+aiosqlite:///spcwatch.db"
    assert settings.web_port == 6066
    assert settings.topic("alerts") == "alerts"


def test_prefix_applies_to_topics_and_group() -> None:
    settings = Settings.from_env({"SPCWATCH_TOPIC_PREFIX": "prod.", "SPCWATCH_WEB_PORT": "7000"})
    assert settings.topic("metrics.samples") == "prod.metrics.samples"
    assert settings.group_id == "prod.spcwatch"
    assert settings.web_port == 7000


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SPCWATCH_WEB_PORT": "abc"}, "SPCWATCH_WEB_PORT must be an integer"),
        ({"SPCWATCH_WEB_PORT": "70000"}, "SPCWATCH_WEB_PORT must be 1-65535"),
        ({"SPCWATCH_KAFKA_BOOTSTRAP": "localhost"}, "SPCWATCH_KAFKA_BOOTSTRAP expects host:port"),
        ({"SPCWATCH_DB_URL": "postgresql://x@y/z"}, "SPCWATCH_DB_URL driver must be one of"),
        ({"SPCWATCH_DB_URL": "::not a url::"}, "SPCWATCH_DB_URL is not a valid SQLAlchemy URL"),
        ({"SPCWATCH_TOPIC_PREFIX": "a b"}, "SPCWATCH_TOPIC_PREFIX may only contain"),
        ({"SPCWATCH_LOG_LEVEL": "loud"}, "SPCWATCH_LOG_LEVEL must be one of"),
        ({"SPCWATCH_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "SPCWATCH_KAFKA_SASL_USERNAME and"),
        ({"SPCWATCH_PARTITIONS": "0"}, "SPCWATCH_PARTITIONS must be 1-1000"),
        ({"SPCWATCH_MAX_CLOCK_SKEW_SECONDS": "soon"}, "SPCWATCH_MAX_CLOCK_SKEW_SECONDS must be a number"),
        ({"SPCWATCH_MAX_CLOCK_SKEW_SECONDS": "-1"}, "SPCWATCH_MAX_CLOCK_SKEW_SECONDS must be 0 (no bound)"),
        ({"SPCWATCH_MAX_CLOCK_SKEW_SECONDS": "nan"}, "SPCWATCH_MAX_CLOCK_SKEW_SECONDS must be 0 (no bound)"),
        ({"SPCWATCH_DB_TIMEOUT_SECONDS": "0"}, "SPCWATCH_DB_TIMEOUT_SECONDS must be > 0"),
        ({"SPCWATCH_CRASH_EXIT_SECONDS": "-1"}, "SPCWATCH_CRASH_EXIT_SECONDS must be > 0"),
        ({"SPCWATCH_HEALTH_STALL_SECONDS": "0"}, "SPCWATCH_HEALTH_STALL_SECONDS must be > 0"),
        ({"SPCWATCH_KAFKA_SESSION_TIMEOUT_SECONDS": "2"}, "SPCWATCH_KAFKA_SESSION_TIMEOUT_SECONDS must be 6-1800"),
        ({"SPCWATCH_POISON_MAX_RESTARTS": "0"}, "SPCWATCH_POISON_MAX_RESTARTS must be >= 1"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_secrets_never_appear_in_repr_or_describe() -> None:
    settings = Settings.from_env({
        "SPCWATCH_DB_URL": "mysql+aiomysql://spc:hunter2@db:3306/spcwatch",
        "SPCWATCH_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "SPCWATCH_KAFKA_SASL_USERNAME": "svc",
        "SPCWATCH_KAFKA_SASL_PASSWORD": "s3cret",
    })
    assert settings.kafka_security_protocol == "SASL_SSL"
    for text in (repr(settings), str(settings.describe())):
        assert "hunter2" not in text
        assert "s3cret" not in text
    assert settings.describe()["db_url"] == "mysql+aiomysql://spc:***@db:3306/spcwatch"


_PASSWORDS = ("secret@456", "pa:ss:word", "a/b/c", "100%sure", "p@ss:w/rd%41")


@pytest.mark.parametrize("password", _PASSWORDS)
def test_a_db_url_is_masked_whatever_the_password_holds(password: str) -> None:
    from urllib.parse import quote

    for url in (f"mysql+aiomysql://spcwatch:{password}@db.internal:3306/spcwatch",
                f"mysql+aiomysql://spcwatch:{quote(password, safe='')}@db.internal:3306/spcwatch"):
        try:
            masked = Settings.from_env({"SPCWATCH_DB_URL": url}).describe()["db_url"]
        except ConfigError as exc:  # SQLAlchemy cannot parse some unencoded passwords
            masked = str(exc).split(": ", 1)[1].strip("'")
        assert masked == "mysql+aiomysql://spcwatch:***@db.internal:3306/spcwatch", masked


@pytest.mark.parametrize("password", _PASSWORDS)
def test_a_db_url_without_a_scheme_is_not_echoed_in_the_config_error(password: str, capsys) -> None:  # type: ignore[no-untyped-def]
    from stream_app.cli import main

    url = f"spcwatch:{password}@127.0.0.1:3306/spcwatch"
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"SPCWATCH_DB_URL": url})
    assert password not in str(info.value) and "SPCWATCH_DB_URL" in str(info.value)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SPCWATCH_DB_URL", url)
        assert main(["db", "status"]) != 0
    err = capsys.readouterr().err
    assert password not in err and err.count("\n") == 1, err


@dataclass(frozen=True, slots=True)
class _ModelConfig:
    """A model's config as models/ writes them: its own types, a ValueError naming the field."""

    zones: tuple[tuple[str, str], ...] = ()
    scale: tuple[int, int] = (0, 0)
    weights: tuple[tuple[str, float], ...] = ()
    mode: str | None = None

    def __post_init__(self) -> None:
        if any(not -6 <= e <= 6 for e in self.scale):
            raise ValueError("scale must be in [-6, 6]")


@dataclass(frozen=True, slots=True)
class _UseCaseSettings(_ModelConfig):
    ENV: ClassVar[Mapping[str, Env]] = {
        "scale": Env(names=("LEFT_SCALE", "RIGHT_SCALE")),
        "mode": Env(lambda raw: None if raw == "off" else raw, names=("MODE_NAME",)),
    }

    own: float = 1.0


def test_one_settings_dataclass_is_the_models_config_with_its_own_spellings() -> None:
    s = load_env(_UseCaseSettings, "X_", {"X_ZONES": "a=Europe/Paris, b=Asia/Tokyo", "X_RIGHT_SCALE": "-2",
                                          "X_MODE_NAME": "off", "X_OWN": "2.5"})
    assert isinstance(s, _ModelConfig)
    assert s.zones == (("a", "Europe/Paris"), ("b", "Asia/Tokyo"))
    assert s.scale == (0, -2) and s.mode is None and s.own == 2.5
    assert load_env(_UseCaseSettings, "X_", {"X_MODE_NAME": "fast"}).mode == "fast"


@pytest.mark.parametrize(("env", "message"), [
    ({"X_ZONES": "a"}, "X_ZONES must be KEY=VALUE"),
    ({"X_LEFT_SCALE": "two"}, "X_LEFT_SCALE must be an integer"),
    ({"X_LEFT_SCALE": "9"}, "X_LEFT_SCALE, X_RIGHT_SCALE must be in"),
    ({"X_WEIGHTS": "a=1"}, "X_WEIGHTS cannot be set from the environment"),
])
def test_a_bad_spelling_is_one_line_naming_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_env(_UseCaseSettings, "X_", env)
