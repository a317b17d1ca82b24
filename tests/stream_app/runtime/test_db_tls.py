"""MySQL/MariaDB over TLS (issue #20): ``ssl_*`` options on ``SPCWATCH_DB_URL``, against a MariaDB
that requires TLS -- the TLS profile of ``scripts/services.sh`` (``SPCWATCH_MYSQL_TLS=1``), started
for this module in its own run dir on a free port and stopped afterwards."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from stream_app.runtime import db
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.integration


def _services(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / "services.sh"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tls_mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL without TLS options, the server's CA file)."""
    run_dir = tmp_path_factory.mktemp("tls-run")
    port = free_port()
    env = {**os.environ, "SPCWATCH_RUN_DIR": str(run_dir), "SPCWATCH_MYSQL_TLS": "1",
           "SPCWATCH_MYSQL_TLS_PORT": str(port)}
    try:
        result = _services(["up", "mariadb"], env)
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        assert "(TLS required)" in result.stdout
        url = f"mysql+aiomysql://spcwatch:spcwatch@127.0.0.1:{port}/spcwatch"
        yield url, run_dir / "mariadb-tls" / "tls" / "ca.pem"
    finally:
        _services(["down", "mariadb"], env)


def _cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPCWATCH_")}
    return subprocess.run([sys.executable, "-m", "stream_app.cli", *args], cwd=ROOT,
                          env={**env, "SPCWATCH_DB_URL": url}, capture_output=True, text=True, timeout=120)


async def _session_tls(url: str) -> str:
    engine = db.create_engine(url)
    try:
        async with engine.connect() as conn:
            status = (await conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Ssl_version'")).one()
            migrations = (await conn.exec_driver_sql("SELECT COUNT(*) FROM schema_migrations")).scalar()
            assert migrations == len(db.discover())
            return str(status[1])
    finally:
        await engine.dispose()


def test_migrations_and_queries_run_over_tls_verified_against_ssl_ca(tls_mariadb: tuple[str, Path]) -> None:
    url, ca = tls_mariadb
    result = _cli(f"{url}?ssl_ca={ca}", "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "is up to date" in result.stdout and "spcwatch:spcwatch@" not in result.stdout
    assert asyncio.run(_session_tls(f"{url}?ssl_ca={ca}&ssl_check_hostname=true")).startswith("TLSv1.")


def test_the_server_refuses_a_connection_without_tls(tls_mariadb: tuple[str, Path]) -> None:
    url, _ = tls_mariadb
    result = _cli(url, "db", "status")
    assert result.returncode == 69
    assert result.stderr.count("\n") == 1 and "Access denied for user 'spcwatch'" in result.stderr


def test_an_unknown_ca_is_one_line_naming_the_tls_error(tls_mariadb: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = tls_mariadb
    other_ca = tmp_path / "other-ca.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=other",
                    "-keyout", str(tmp_path / "other.key"), "-out", str(other_ca)], check=True, capture_output=True)
    result = _cli(f"{url}?ssl_ca={other_ca}", "db", "status")
    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("spcwatch: error: TLS handshake with the database at "), lines
    assert "certificate verify failed: " in lines[0] and "spcwatch:spcwatch@" not in lines[0]


def test_a_missing_ca_file_is_a_configuration_error(tls_mariadb: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = tls_mariadb
    result = _cli(f"{url}?ssl_ca={tmp_path / 'nope.pem'}", "db", "status")
    assert result.returncode == 2
    assert result.stderr.strip() == f"spcwatch: error: SPCWATCH_DB_URL ssl_ca: file not found: {tmp_path / 'nope.pem'}"


def test_the_tls_options_become_an_sslcontext_and_leave_the_url() -> None:
    """Hostname checking can be turned off (an IP, a tunnel); verifying the chain cannot."""
    import ssl

    from sqlalchemy.engine import make_url

    # without ssl_ca: the system's CAs
    url, context = db.tls_context(make_url("mysql+aiomysql://u:p@db:3306/x?charset=utf8mb4&ssl_check_hostname=false"))
    assert url.render_as_string(hide_password=False) == "mysql+aiomysql://u:p@db:3306/x?charset=utf8mb4"
    assert context is not None and context.verify_mode == ssl.CERT_REQUIRED and not context.check_hostname
    assert db.tls_context(make_url("mysql+aiomysql://u:p@db/x"))[1] is None
