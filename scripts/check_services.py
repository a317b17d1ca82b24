#!/usr/bin/env python3
"""Readiness checks for the local dev services (see scripts/services.sh).

    check_services.py kafka [--bootstrap 127.0.0.1:9092] [--timeout 60] [--probe]
                            [--sasl-user USER --cafile CA.pem]
    check_services.py mysql [--host 127.0.0.1] [--port 3306] [--user spcwatch]
                            [--password spcwatch] [--database spcwatch]
                            [--timeout 60] [--probe] [--ssl-ca CA.pem]

kafka: creates the topic ``_spcwatch_healthcheck`` with the admin client if it is
       missing (the broker runs with auto.create.topics.enable=false), produces a
       unique message, consumes it back and commits its offset for the consumer
       group ``_spcwatch_healthcheck`` (so the group coordinator is exercised too).
       With --probe: a single metadata request ("does this port speak Kafka?").
       With --sasl-user: over SASL_SSL (SCRAM-SHA-512, the password from the environment
       variable SPCWATCH_CHECK_SASL_PASSWORD, the broker's CA from --cafile), as the secure
       profile of services.sh runs it.
mysql: ``SELECT 1`` over TCP with the given credentials (PyMySQL); over TLS, verified
       against --ssl-ca, when given.
       With --probe: only reads the server greeting ("is this MySQL-compatible?"),
       needs no credentials and no PyMySQL.

Retries until --timeout seconds have passed; exit 0 when the check passed, 1 when
it did not, 2 when the Python packages it needs are missing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import socket
import sys
import time
import uuid

HEALTHCHECK_TOPIC = "_spcwatch_healthcheck"
HEALTHCHECK_GROUP = "_spcwatch_healthcheck"


def _missing_packages(what: str) -> None:
    venv_python = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".venv", "bin", "python")
    if os.access(venv_python, os.X_OK) and os.path.realpath(sys.prefix) != os.path.realpath(
        os.path.dirname(os.path.dirname(venv_python))
    ):
        # Run with some other interpreter while the project venv exists: use the venv.
        os.execv(venv_python, [venv_python, os.path.abspath(__file__), *sys.argv[1:]])
    print(
        f"check_services: {what} is not importable by {sys.executable}.\n"
        "check_services: create the project venv first: `make venv` "
        "(then run this with .venv/bin/python).",
        file=sys.stderr,
    )
    sys.exit(2)


def _log(verbose: bool, msg: str) -> None:
    if verbose:
        print(f"check_services: {msg}", file=sys.stderr, flush=True)


def _ok(msg: str) -> None:
    print(f"check_services: {msg}", flush=True)


# --------------------------------------------------------------------------- kafka


def _kafka_options(args: argparse.Namespace) -> dict[str, object]:
    """Client options: plaintext, or SASL_SSL with SCRAM-SHA-512 for the secure profile."""
    options: dict[str, object] = {"bootstrap_servers": args.bootstrap}
    if args.sasl_user:
        import ssl

        options.update(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                       sasl_plain_username=args.sasl_user,
                       sasl_plain_password=os.environ.get("SPCWATCH_CHECK_SASL_PASSWORD", ""),
                       ssl_context=ssl.create_default_context(cafile=args.cafile or None))
    return options


async def _kafka_probe(options: dict[str, object], timeout: float) -> str:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**options, request_timeout_ms=int(timeout * 1000))
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        return f"cluster {cluster.get('cluster_id')}, {len(cluster['brokers'])} broker(s)"
    finally:
        await admin.close()


async def _kafka_ensure_topic(options: dict[str, object]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.errors import TopicAlreadyExistsError, for_code

    admin = AIOKafkaAdminClient(**options, request_timeout_ms=10000)
    await admin.start()
    try:
        if HEALTHCHECK_TOPIC in await admin.list_topics():
            return
        response = await admin.create_topics(
            [
                NewTopic(
                    HEALTHCHECK_TOPIC,
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"retention.ms": "3600000"},
                )
            ]
        )
        for topic_error in response.topic_errors:
            code = topic_error[1]
            if code == 0:
                continue
            err = for_code(code)
            if err is TopicAlreadyExistsError:
                continue
            raise err(f"creating topic {topic_error[0]}: {topic_error[2:]}")
    finally:
        await admin.close()


async def _kafka_round_trip(options: dict[str, object]) -> str:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    from aiokafka.structs import OffsetAndMetadata

    await _kafka_ensure_topic(options)
    token = f"spcwatch-healthcheck-{uuid.uuid4()}".encode()
    tp = TopicPartition(HEALTHCHECK_TOPIC, 0)

    producer = AIOKafkaProducer(**options, acks="all", request_timeout_ms=10000)
    await producer.start()
    try:
        meta = await producer.send_and_wait(HEALTHCHECK_TOPIC, token, partition=0)
    finally:
        await producer.stop()

    consumer = AIOKafkaConsumer(
        **options,
        group_id=HEALTHCHECK_GROUP,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=10000,
    )
    await consumer.start()
    try:
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        while True:
            batches = await consumer.getmany(tp, timeout_ms=1000)
            if any(rec.value == token for rec in batches.get(tp, [])):
                break
        # Exercises the group coordinator (and creates __consumer_offsets).
        await consumer.commit({tp: OffsetAndMetadata(meta.offset + 1, "")})
    finally:
        await consumer.stop()
    return f"produced and consumed {HEALTHCHECK_TOPIC}[0]@{meta.offset}"


def check_kafka(args: argparse.Namespace) -> int:
    try:
        import aiokafka  # noqa: F401
    except ImportError:
        _missing_packages("aiokafka")

    if not args.verbose:
        # aiokafka logs every refused connection while the broker boots.
        logging.basicConfig(level=logging.CRITICAL)

    started = time.monotonic()
    deadline = started + args.timeout
    last_error: BaseException | None = None
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            if args.probe:
                coro = _kafka_probe(_kafka_options(args), min(remaining, 10.0))
            else:
                coro = _kafka_round_trip(_kafka_options(args))
            detail = asyncio.run(asyncio.wait_for(coro, timeout=remaining))
            _ok(f"kafka {args.bootstrap} OK: {detail}")
            return 0
        except Exception as exc:
            last_error = exc
            _log(args.verbose, f"kafka attempt {attempt} failed: {exc!r}")
        if args.probe:
            break
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    print(
        f"check_services: kafka {args.bootstrap} failed ({attempt} attempt(s) in "
        f"{time.monotonic() - started:.1f}s): {last_error!r}",
        file=sys.stderr,
    )
    return 1


# --------------------------------------------------------------------------- mysql


def _mysql_greeting(host: str, port: int, timeout: float) -> str:
    """Read the server's initial handshake packet (no login)."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        header = b""
        while len(header) < 4:
            chunk = sock.recv(4 - len(header))
            if not chunk:
                raise ConnectionError("connection closed before the server greeting")
            header += chunk
        length = int.from_bytes(header[:3], "little")
        payload = b""
        while len(payload) < length:
            chunk = sock.recv(length - len(payload))
            if not chunk:
                break
            payload += chunk
    if payload[:1] == b"\x0a":  # protocol version 10
        version = payload[1:].split(b"\0", 1)[0].decode(errors="replace")
        return f"server {version}"
    if payload[:1] == b"\xff":  # error packet, e.g. host not allowed: still MySQL
        return "server answered with an error packet: " + payload[9:].decode(errors="replace")
    raise ConnectionError(f"not a MySQL greeting: {payload[:16]!r}")


def _mysql_select_one(args: argparse.Namespace, timeout: float) -> str:
    import pymysql

    conn = pymysql.connect(
        host=args.host,
        port=args.port,
        user=args.user,
        password=args.password,
        database=args.database,
        connect_timeout=max(1, int(timeout)),
        read_timeout=max(1, int(timeout)),
        ssl={"ca": args.ssl_ca} if args.ssl_ca else None,
    )
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1, VERSION()")
            one, version = cur.fetchone()
            if one != 1:
                raise RuntimeError(f"SELECT 1 returned {one!r}")
    finally:
        conn.close()
    return f"SELECT 1 as {args.user} on {args.database}: server {version}"


def check_mysql(args: argparse.Namespace) -> int:
    if not args.probe:
        try:
            import pymysql  # noqa: F401
        except ImportError:
            _missing_packages("PyMySQL")

    started = time.monotonic()
    deadline = started + args.timeout
    last_error: BaseException | None = None
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            if args.probe:
                detail = _mysql_greeting(args.host, args.port, min(remaining, 5.0))
            else:
                detail = _mysql_select_one(args, min(remaining, 10.0))
            _ok(f"mysql {args.host}:{args.port} OK: {detail}")
            return 0
        except Exception as exc:
            last_error = exc
            _log(args.verbose, f"mysql attempt {attempt} failed: {exc!r}")
        if args.probe:
            break
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
    print(
        f"check_services: mysql {args.host}:{args.port} failed ({attempt} attempt(s) in "
        f"{time.monotonic() - started:.1f}s): {last_error!r}",
        file=sys.stderr,
    )
    return 1


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log each failed attempt")
    sub = parser.add_subparsers(dest="service", required=True)

    kafka = sub.add_parser("kafka", help="Kafka produce/consume round trip")
    kafka.add_argument(
        "--bootstrap",
        default=os.environ.get(
            "SPCWATCH_KAFKA_BOOTSTRAP",
            f"127.0.0.1:{os.environ.get('SPCWATCH_KAFKA_PORT', '9092')}",
        ),
    )
    kafka.add_argument("--timeout", type=float, default=60.0)
    kafka.add_argument("--probe", action="store_true", help="one metadata request only")
    kafka.add_argument("--sasl-user", help="SASL_SSL, SCRAM-SHA-512 (password: $SPCWATCH_CHECK_SASL_PASSWORD)")
    kafka.add_argument("--cafile", help="the broker certificate's CA (PEM)")
    kafka.set_defaults(func=check_kafka)

    mysql = sub.add_parser("mysql", help="SELECT 1 over TCP")
    mysql.add_argument("--host", default="127.0.0.1")
    mysql.add_argument("--port", type=int, default=int(os.environ.get("SPCWATCH_MYSQL_PORT", "3306")))
    mysql.add_argument("--user", default="spcwatch")
    mysql.add_argument("--password", default="spcwatch")
    mysql.add_argument("--database", default="spcwatch")
    mysql.add_argument("--timeout", type=float, default=60.0)
    mysql.add_argument("--probe", action="store_true", help="server greeting only")
    mysql.add_argument("--ssl-ca", help="TLS, verifying the server against this CA (PEM)")
    mysql.set_defaults(func=check_mysql)

    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
