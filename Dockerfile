# syntax=docker/dockerfile:1
#
# spcwatch image: the Faust worker, the simulator and the CLI (`spcwatch ...`).
#   docker build -t spcwatch:0.1.0 .
#   docker run --rm -p 6066:6066 -e SPCWATCH_KAFKA_BOOTSTRAP=... spcwatch:0.1.0
# The same image runs `spcwatch db upgrade`, `spcwatch topics create` and
# `spcwatch simulate ...`
# (see docker-compose.yml).

ARG PYTHON_IMAGE=python:3.11-slim
FROM ${PYTHON_IMAGE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Unprivileged runtime user (fixed uid/gid so volume permissions are predictable).
RUN groupadd --system --gid 10001 spcwatch \
 && useradd --system --uid 10001 --gid spcwatch --home-dir /app \
        --no-create-home --shell /usr/sbin/nologin spcwatch

# Install the project from pyproject.toml (non-editable). The build context is
# bind-mounted read-write so setuptools' build/ and *.egg-info never land in a
# layer; the pip cache lives in a BuildKit cache mount, not in the image.
RUN --mount=type=bind,target=/src,rw \
    --mount=type=cache,target=/root/.cache/pip \
    pip install /src \
 && spcwatch --help > /dev/null

# The numbered SQL migrations (`spcwatch db upgrade`) live in /app/sql.
# pyproject.toml does not put sql/ in the wheel, and stream_app.runtime.db looks for it
# next to the installed package (SQL_DIR = <site-packages>/sql), so link it
# there when that directory is missing. Then prove the image can migrate: run
# the migrations against a throwaway SQLite file and check that the contract's
# `alerts` table exists (an empty sql/ lookup would otherwise "succeed").
# The worker creates its Faust data directory in the working directory, so
# /app itself belongs to the runtime user (its contents stay root-owned).
WORKDIR /app
COPY sql/ ./sql/
RUN sql_dir="$(python -c "import stream_app.runtime.db as d; print(getattr(d, 'SQL_DIR', ''))")" \
 && if [ -n "$sql_dir" ] && [ ! -e "$sql_dir" ]; then ln -s /app/sql "$sql_dir"; fi \
 && SPCWATCH_DB_URL=sqlite+aiosqlite:////tmp/migrate-smoke.db spcwatch db upgrade \
 && python -c "import sqlite3; sqlite3.connect('/tmp/migrate-smoke.db').execute('SELECT 1 FROM alerts')" \
 && rm -f /tmp/migrate-smoke.db \
 && chown spcwatch:spcwatch /app

USER 10001:10001

# Worker HTTP: /metrics (Prometheus) and /health.
ENV SPCWATCH_WEB_PORT=6066
EXPOSE 6066

CMD ["spcwatch", "worker"]
