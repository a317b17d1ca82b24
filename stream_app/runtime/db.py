"""Database engine and the numbered migrations in ``sql/``.

Migrations are plain SQL in the MySQL dialect that SQLite also accepts, so the
schema reads as documentation. The only translation for SQLite is dropping
MySQL table options (``ENGINE=... DEFAULT CHARSET=...``). Statements end with a
``;`` at the end of a line. MySQL DDL is not transactional: a migration that
fails half-way must be fixed by hand, which is why each one is small.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine


def _sql_dir() -> Path:
    """``sql/`` of the source checkout, else the copy installed inside the package."""
    checkout = Path(__file__).resolve().parents[2] / "sql"  # stream_app/runtime/db.py -> the checkout
    if checkout.is_dir():
        return checkout
    return Path(str(resources.files("stream_app") / "sql"))


SQL_DIR = _sql_dir()
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_TABLE_OPTIONS = re.compile(r"\)\s*ENGINE\s*=[^;]*;", re.IGNORECASE)
_LOCK_NAME = "spcwatch_migrations"


def create_engine(url: str) -> AsyncEngine:
    """An async engine with settings that survive database restarts."""
    if url.startswith("sqlite"):
        return create_async_engine(url, connect_args={"timeout": 30})
    return create_async_engine(url, pool_pre_ping=True, pool_recycle=3600, pool_size=4)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    path: Path

    def statements(self, dialect: str) -> list[str]:
        sql = self.path.read_text(encoding="utf-8")
        sql = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
        if dialect == "sqlite":
            sql = _TABLE_OPTIONS.sub(");", sql)
        return [stmt.strip() for stmt in re.split(r";\s*$", sql, flags=re.MULTILINE) if stmt.strip()]


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(sql_dir.glob("*.sql")):
        match = _MIGRATION_NAME.match(path.name)
        if not match:
            raise ValueError(f"migration file name must be NNNN_name.sql: {path.name}")
        migrations.append(Migration(int(match.group(1)), match.group(2), path))
    if not migrations:
        raise ValueError(f"no migrations found in {sql_dir}: the installation is incomplete")
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {sql_dir}")
    return migrations


async def _ensure_log_table(conn: AsyncConnection) -> None:
    await conn.exec_driver_sql(
        "CREATE TABLE IF NOT EXISTS schema_migrations ("
        " version INT NOT NULL PRIMARY KEY,"
        " name VARCHAR(255) NOT NULL,"
        " applied_at DATETIME(6) NOT NULL)"
    )


async def applied_versions(conn: AsyncConnection) -> set[int]:
    await _ensure_log_table(conn)
    result = await conn.exec_driver_sql("SELECT version FROM schema_migrations")
    return {row[0] for row in result}


async def upgrade(engine: AsyncEngine, sql_dir: Path = SQL_DIR) -> list[Migration]:
    """Apply pending migrations in order; returns what was applied. Safe to rerun."""
    dialect = engine.dialect.name
    applied: list[Migration] = []
    async with engine.connect() as conn:
        if dialect == "mysql":
            # Two workers starting at once must not both run the same DDL.
            got = (await conn.execute(text("SELECT GET_LOCK(:n, 60)"), {"n": _LOCK_NAME})).scalar()
            if got != 1:
                raise RuntimeError("another process holds the migration lock")
        try:
            done = await applied_versions(conn)
            await conn.commit()
            for migration in discover(sql_dir):
                if migration.version in done:
                    continue
                for statement in migration.statements(dialect):
                    await conn.exec_driver_sql(statement)
                await conn.execute(
                    text("INSERT INTO schema_migrations (version, name, applied_at) VALUES (:v, :n, :t)"),
                    {"v": migration.version, "n": migration.name,
                     "t": datetime.now(UTC).replace(tzinfo=None)},
                )
                await conn.commit()
                applied.append(migration)
        finally:
            if dialect == "mysql":
                await conn.execute(text("SELECT RELEASE_LOCK(:n)"), {"n": _LOCK_NAME})
                await conn.commit()
    return applied


async def pending(engine: AsyncEngine, sql_dir: Path = SQL_DIR) -> list[Migration]:
    async with engine.connect() as conn:
        done = await applied_versions(conn)
        await conn.commit()
    return [m for m in discover(sql_dir) if m.version not in done]
