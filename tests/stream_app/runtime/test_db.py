"""Migrations on the embedded SQLite default and on real MariaDB/MySQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from stream_app.runtime import db

pytestmark = pytest.mark.integration


async def _tables(url: str) -> set[str]:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))
    finally:
        await engine.dispose()


async def test_upgrade_applies_everything_once(db_url: str) -> None:
    engine = db.create_engine(db_url)
    try:
        first = await db.upgrade(engine)
        second = await db.upgrade(engine)
        assert [m.version for m in first] == [m.version for m in db.discover()]
        assert second == []
        assert await db.pending(engine) == []
        async with engine.connect() as conn:
            rows = (await conn.exec_driver_sql("SELECT version, name FROM schema_migrations ORDER BY version")).all()
        assert [tuple(r) for r in rows] == [(m.version, m.name) for m in db.discover()]
    finally:
        await engine.dispose()
    tables = await _tables(db_url)
    assert {"schema_migrations", "alerts"} <= tables


async def test_alerts_table_has_the_contract_fields(db_url: str) -> None:
    engine = db.create_engine(db_url)
    try:
        await db.upgrade(engine)
        async with engine.connect() as conn:
            columns = await conn.run_sync(lambda sync: {c["name"] for c in inspect(sync).get_columns("alerts")})
            pk = await conn.run_sync(lambda sync: inspect(sync).get_pk_constraint("alerts"))
    finally:
        await engine.dispose()
    contract = {"alert_id", "status", "severity", "use_case", "rule", "rules", "entity", "value",
                "expected_center", "expected_lower", "expected_upper", "zscore", "starts_at", "ends_at",
                "summary", "runbook_url"}
    assert contract <= columns
    assert pk["constrained_columns"] == ["alert_id"]


async def test_new_migration_is_picked_up_and_applied_in_order(db_url: str, tmp_path: Path) -> None:
    for migration in db.discover():
        (tmp_path / migration.path.name).write_text(migration.path.read_text())
    engine = db.create_engine(db_url)
    try:
        await db.upgrade(engine, tmp_path)
        (tmp_path / "9999_extra.sql").write_text(
            "-- a later migration\nCREATE TABLE extra (\n  k VARCHAR(10) NOT NULL PRIMARY KEY\n)"
            " ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;\nCREATE INDEX extra_k ON extra (k);\n")
        assert [m.name for m in await db.pending(engine, tmp_path)] == ["extra"]
        applied = await db.upgrade(engine, tmp_path)
        assert [m.version for m in applied] == [9999]
    finally:
        await engine.dispose()
    assert "extra" in await _tables(db_url)


def test_migration_files_are_numbered_and_split_per_dialect() -> None:
    migrations = db.discover()
    assert migrations, "sql/ holds no migrations"
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    first = migrations[0]
    mysql_statements = first.statements("mysql")
    sqlite_statements = first.statements("sqlite")
    assert len(mysql_statements) == len(sqlite_statements) > 1
    assert any("ENGINE=InnoDB" in s for s in mysql_statements)
    assert not any("ENGINE" in s for s in sqlite_statements)


def test_bad_migration_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "1_init.sql").write_text("SELECT 1;")
    with pytest.raises(ValueError, match=r"NNNN_name\.sql"):
        db.discover(tmp_path)


async def test_infra_series_migration_keeps_every_row_and_names_each_series_once(db_url: str,
                                                                                 tmp_path: Path) -> None:
    """0006 moves the series' names out of the per-point tables: nothing may be lost on the way."""
    for migration in db.discover():
        if migration.version < 6:
            (tmp_path / migration.path.name).write_text(migration.path.read_text())
    engine = db.create_engine(db_url)
    try:
        await db.upgrade(engine, tmp_path)
        async with engine.begin() as conn:
            for minute in range(3):  # series a: its labels changed at minute 2 (the latest row names it)
                labels = '{"az": "b"}' if minute == 2 else '{"az": "a"}'
                for sid, rid, metric in (("a" * 24, "i-1", "CPUUtilization"), ("b" * 24, "i-2", "disk")):
                    await conn.exec_driver_sql(
                        "INSERT INTO infra_metric_rollups VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        if engine.dialect.name == "sqlite" else
                        "INSERT INTO infra_metric_rollups VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (sid, f"2026-11-0{minute + 1} 00:00:00", rid, metric, labels, 2, 1.5 + minute, 1.0, 2.0))
                    await conn.exec_driver_sql(
                        "INSERT INTO infra_anomaly_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                        if engine.dialect.name == "sqlite" else
                        "INSERT INTO infra_anomaly_scores VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (sid, f"2026-11-0{minute + 1} 00:00:30", rid, metric, 1.5 + minute, 1.0, 0.5,
                         1.0 + minute, '["WE1"]' if minute else "[]", "ok"))
        applied = await db.upgrade(engine)  # sql/ itself: 0006 and anything after it
        assert [m.version for m in applied][:1] == [6]
        async with engine.connect() as conn:
            series = (await conn.exec_driver_sql(
                "SELECT series_id, resource_id, metric, labels FROM infra_series ORDER BY series_id")).all()
            rollups = (await conn.exec_driver_sql(
                "SELECT resource_id, metric, minute, value_mean FROM infra_rollups ORDER BY series_id, minute")).all()
            scores = (await conn.exec_driver_sql(
                "SELECT resource_id, zscore, rules FROM infra_scores ORDER BY series_id, ts")).all()
            columns = await conn.run_sync(
                lambda sync: {c["name"] for c in inspect(sync).get_columns("infra_anomaly_scores")})
    finally:
        await engine.dispose()
    import orjson

    assert [(s[0], s[1], s[2], orjson.loads(s[3])) for s in series] == [
        ("a" * 24, "i-1", "CPUUtilization", {"az": "b"}), ("b" * 24, "i-2", "disk", {"az": "b"})]
    assert [(r[0], r[1], r[3]) for r in rollups] == [
        (rid, metric, 1.5 + m) for rid, metric in (("i-1", "CPUUtilization"), ("i-2", "disk")) for m in range(3)]
    assert [(s[0], s[1], orjson.loads(s[2])) for s in scores] == [
        (rid, 1.0 + m, ["WE1"] if m else []) for rid in ("i-1", "i-2") for m in range(3)]
    assert "resource_id" not in columns and "metric" not in columns
