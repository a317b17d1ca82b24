"""Database engine and the numbered migrations in ``sql/``.

Migrations are plain SQL in the MySQL dialect that SQLite also accepts, so the
schema reads as documentation. The only translation for SQLite is dropping
MySQL table options (``ENGINE=... DEFAULT CHARSET=...``). Statements end with a
``;`` at the end of a line. MySQL DDL is not transactional: a migration that
fails half-way must be fixed by hand, which is why each one is small.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL, make_url
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


TLS_PARAMS = ("ssl_ca", "ssl_cert", "ssl_key", "ssl_check_hostname")
"""Query parameters of ``SPCWATCH_DB_URL`` that turn on TLS to MySQL/MariaDB (see README)."""


def create_engine(url: str) -> AsyncEngine:
    """An async engine with settings that survive database restarts, over TLS when the URL asks."""
    if url.startswith("sqlite"):
        return create_async_engine(url, connect_args={"timeout": 30})
    plain, context = tls_context(make_url(url))
    connect_args = {"ssl": context} if context is not None else {}
    return create_async_engine(plain, pool_pre_ping=True, pool_recycle=3600, pool_size=4, connect_args=connect_args)


def tls_context(url: URL) -> tuple[URL, ssl.SSLContext | None]:
    """The URL without its TLS parameters, and the SSLContext they describe (None: no TLS).

    aiomysql takes an SSLContext, not the ``ssl`` dict SQLAlchemy's MySQL dialects build from
    these parameters, so they are turned into one here. The server is always verified: against
    ``ssl_ca`` (e.g. the RDS CA bundle), else the system's CAs; its host name too unless
    ``ssl_check_hostname=false`` (a server reached through an IP or a tunnel). ``ssl_cert`` and
    ``ssl_key``: a client certificate, for servers that require one.
    """
    given = {key: _last(url.query[key]) for key in TLS_PARAMS if key in url.query}
    if not given:
        return url, None
    context = ssl.create_default_context(cafile=given.get("ssl_ca") or None)
    if given.get("ssl_cert"):
        context.load_cert_chain(given["ssl_cert"], given.get("ssl_key") or None)
    context.check_hostname = given.get("ssl_check_hostname", "true").lower() not in ("0", "false", "no", "off")
    return url.difference_update_query(TLS_PARAMS), context


def _last(value: str | tuple[str, ...]) -> str:
    return value[-1] if isinstance(value, tuple) else value


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
