"""The ``spcwatch`` command line.

Errors a user can fix (a bad flag, a bad ``SPCWATCH_*`` value, an unreachable
service) print one line, ``spcwatch: error: ...``, and exit non-zero.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from agents.core.settings import ConfigError, Settings

log = logging.getLogger("spcwatch")

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: a service we need did not answer
EXIT_CONFIG = 78  # EX_CONFIG: a service refused our credentials (login, TLS, ACLs); retrying cannot help


class UserError(Exception):
    """A problem the user can fix; printed as one line."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def _settings() -> Settings:
    return Settings.from_env()


# --------------------------------------------------------------------------- commands


def cmd_worker(args: argparse.Namespace) -> int:
    """Run the stream processor until interrupted."""
    from stream_app import logs
    from stream_app.runtime.app import run_worker, tune_gc
    from stream_app.runtime.topics import KafkaSecurityError, check_group_access, ensure_topics
    from stream_app.worker import create_runtime

    settings = _settings()
    level = args.log_level or settings.log_level
    logs.setup(level, settings.log_format)
    log.info("starting worker", extra={"settings": settings.describe()})
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    _run_or_unavailable(loop, ensure_topics(settings), f"Kafka at {settings.kafka_bootstrap}", kafka=settings)
    if settings.kafka_security_protocol != "PLAINTEXT":  # brokers with ACLs: may we use our group?
        _run_or_unavailable(loop, check_group_access(settings), f"Kafka at {settings.kafka_bootstrap}", kafka=settings)
    if not args.skip_migrations:
        from stream_app.runtime import db

        async def migrate() -> None:
            engine = db.create_engine(settings.db_url)
            try:
                for migration in await db.upgrade(engine):
                    log.info("applied migration %04d_%s", migration.version, migration.name)
            finally:
                await engine.dispose()

        _run_or_unavailable(loop, migrate(), f"the database at {settings.db_url_masked}")
    runtime = create_runtime(settings)
    tune_gc()
    try:
        run_worker(runtime, loop, level, logs.logging_config(level, settings.log_format))  # exits the process
    except KafkaSecurityError as exc:
        raise UserError(str(exc), EXIT_CONFIG) from None
    return 0


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Apply pending migrations from sql/."""
    from stream_app.runtime import db

    settings = _settings()

    async def run() -> list[db.Migration]:
        engine = db.create_engine(settings.db_url)
        try:
            return await db.upgrade(engine)
        finally:
            await engine.dispose()

    applied = _run_or_unavailable(None, run(), f"the database at {settings.db_url_masked}")
    for migration in applied:
        print(f"applied {migration.version:04d}_{migration.name}")
    print(f"database {settings.db_url_masked} is up to date ({len(applied)} applied)")
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    """List migrations not yet applied; exit 1 if any are pending."""
    from stream_app.runtime import db

    settings = _settings()

    async def run() -> list[db.Migration]:
        engine = db.create_engine(settings.db_url)
        try:
            return await db.pending(engine)
        finally:
            await engine.dispose()

    waiting = _run_or_unavailable(None, run(), f"the database at {settings.db_url_masked}")
    for migration in waiting:
        print(f"pending {migration.version:04d}_{migration.name}")
    print(f"{len(waiting)} pending")
    return 1 if waiting else 0


def cmd_topics_create(args: argparse.Namespace) -> int:
    """Create the contract's topics with the configured partitions."""
    from stream_app.runtime.topics import ensure_topics

    settings = _settings()
    report = _run_or_unavailable(None, ensure_topics(settings), f"Kafka at {settings.kafka_bootstrap}", kafka=settings)
    for name in report.created:
        print(f"created  {name}")
    for name in report.existing:
        print(f"exists   {name}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    """Run a use case over a JSONL file of contract events, without Kafka."""
    from pathlib import Path

    from agents.registry import PROCESSORS
    from stream_app.replay import print_report, run_replay

    settings = _settings()
    if args.use_case not in PROCESSORS:
        known = ", ".join(sorted(PROCESSORS)) or "none yet"
        raise UserError(f"unknown use case {args.use_case!r} (available: {known})", EXIT_USAGE)
    path = Path(args.input)
    if not path.is_file():
        raise UserError(f"input file not found: {path}", EXIT_USAGE)
    processor = PROCESSORS[args.use_case](settings)
    output = sys.stdout if args.output in (None, "-") else open(args.output, "w", encoding="utf-8")
    try:
        report = _run_or_unavailable(None, run_replay(settings, processor, path, output),
                                     f"the database at {settings.db_url_masked}")
    finally:
        if output is not sys.stdout:
            output.close()
    print_report(report)
    return 0


def cmd_menu_report(args: argparse.Namespace) -> int:
    """UC-PR-01: the menu-engineering matrix, item pairs and recommendations of one day, from the database."""
    from datetime import date

    import orjson

    from models.menu import MenuConfig
    from stream_app import menu_report
    from stream_app.runtime import db

    settings = _settings()
    try:
        as_of = date.fromisoformat(args.as_of)
    except ValueError:
        raise UserError(f"--as-of must be a date YYYY-MM-DD, got {args.as_of!r}", EXIT_USAGE) from None
    window = args.window_days
    if window is None:
        from agents.core.settings import load_env

        window = load_env(MenuConfig, "SPCWATCH_MENU_").primary_window
    if window < 1:
        raise UserError(f"--window-days must be >= 1, got {window}", EXIT_USAGE)
    scope = args.store if args.store else "chain"

    async def run() -> dict:
        engine = db.create_engine(settings.db_url)
        try:
            return await menu_report.build(engine, as_of, window, scope)
        finally:
            await engine.dispose()

    try:
        report = _run_or_unavailable(None, run(), f"the database at {settings.db_url_masked}")
    except menu_report.ReportError as exc:
        raise UserError(str(exc)) from None
    if args.format == "json":
        report.pop("trends", None)
        text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n"
    else:
        text = menu_report.render_html(report)
    if args.output in (None, "-"):
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
        print(f"menu report: {args.output} ({len(text):,} bytes, {args.format})", file=sys.stderr)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Publish simulated infra, order and forecast streams with scenarios (or write them to a file)."""
    from stream_app import simulate

    if args.list:
        print(simulate.describe_scenarios(), end="")
        return 0
    plan = simulate.plan_from_args(args)
    if plan.out:
        return simulate.write_file(plan)
    settings = _settings()
    return _run_or_unavailable(None, simulate.publish(plan, settings), f"Kafka at {settings.kafka_bootstrap}",
                               kafka=settings)


def cmd_alerts_tail(args: argparse.Namespace) -> int:
    """Live view of alerts as they fire and resolve, with the worker's throughput and lag."""
    from stream_app import alerts_view

    settings = _settings()
    return _run_or_unavailable(None, alerts_view.tail(settings, args), f"Kafka at {settings.kafka_bootstrap}",
                               kafka=settings)


def cmd_wecom_bridge(args: argparse.Namespace) -> int:
    """Alertmanager webhook -> WeCom group-robot markdown (Chinese + English summary, runbook link)."""
    from stream_app import notify

    robots: dict[str, str] = {}
    for spec in args.robot or ():
        name, sep, url = spec.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise UserError(f"--robot expects NAME=http(s)://..., got {spec!r}", EXIT_USAGE)
        robots[name] = url
    if args.default_robot and not args.default_robot.startswith(("http://", "https://")):
        raise UserError(f"--default-robot must be an http(s) URL, got {args.default_robot!r}", EXIT_USAGE)
    try:
        asyncio.run(notify.run_bridge(args.host, args.port, robots, args.default_robot))
    except OSError as exc:
        raise UserError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", EXIT_UNAVAILABLE) from None
    return 0


def cmd_collect_prometheus(args: argparse.Namespace) -> int:
    """Poll a Prometheus server's HTTP API and publish the samples to metrics.samples."""
    from stream_app.collect import CollectError, PrometheusCollector, run

    settings = _settings()
    if args.interval <= 0:
        raise UserError("--interval must be > 0 seconds", EXIT_USAGE)
    if not args.url.startswith(("http://", "https://")):
        raise UserError(f"--url must be an http(s) URL, got {args.url!r}", EXIT_USAGE)
    collector = PrometheusCollector(args.url, args.query, resource_label=args.resource_label,
                                    resource_type=args.resource_type)
    try:
        published = _run_or_unavailable(None, run(settings, collector, args.interval, once=args.once),
                                        f"Kafka at {settings.kafka_bootstrap}", kafka=settings)
    except CollectError as exc:
        raise UserError(str(exc), EXIT_UNAVAILABLE) from None
    print(f"published {published} samples", file=sys.stderr)
    return 0


def _cloudwatch_collector(args: argparse.Namespace, discover: bool, registry: object = None):  # type: ignore[no-untyped-def]
    """The CloudWatch collector the flags describe (shared by collect and backfill)."""
    from stream_app import cloudwatch

    if args.period not in (60, 300):
        raise UserError(f"--period must be 60 or 300 seconds, got {args.period}", EXIT_USAGE)
    try:
        specs = [cloudwatch.parse_metric_spec(spec) for spec in args.metric or []]
    except ValueError as exc:
        raise UserError(str(exc), EXIT_USAGE) from None
    unknown = [s for s in args.services.split(",") if s not in cloudwatch.SERVICES]
    if unknown:
        raise UserError(f"--services: unknown {', '.join(unknown)} (known: {', '.join(cloudwatch.SERVICES)})",
                        EXIT_USAGE)
    if not discover and not specs:
        raise UserError("nothing to collect: give --discover, or --metric NAMESPACE:METRIC[:STAT]", EXIT_USAGE)
    if args.endpoint_url and not args.endpoint_url.startswith(("http://", "https://")):
        raise UserError(f"--endpoint-url must be an http(s) URL, got {args.endpoint_url!r}", EXIT_USAGE)
    try:
        session = cloudwatch.session(args.profile)
    except Exception as exc:  # botocore.exceptions.ProfileNotFound and kin
        raise UserError(str(exc), EXIT_USAGE) from None
    region = args.region or session.region_name
    if not region:
        raise UserError("no AWS region: give --region or set AWS_DEFAULT_REGION", EXIT_USAGE)
    return cloudwatch.CloudWatchCollector(
        session, region, endpoint_url=args.endpoint_url, period=args.period,
        lookback=getattr(args, "lookback", 600.0), discover=discover,
        refresh_seconds=getattr(args, "refresh_minutes", 10.0) * 60, metric_specs=specs,
        services=args.services.split(","), registry=registry)


def cmd_collect_cloudwatch(args: argparse.Namespace) -> int:
    """Poll CloudWatch (GetMetricData) for the discovered AWS estate and publish to metrics.samples."""
    from prometheus_client import CollectorRegistry, start_http_server

    from stream_app.cloudwatch import CredentialsError
    from stream_app.collect import CollectError, run

    settings = _settings()
    if args.lookback < args.period:
        raise UserError(f"--lookback must be >= --period ({args.period} s), got {args.lookback}", EXIT_USAGE)
    interval = args.interval or float(args.period)
    if interval <= 0:
        raise UserError("--interval must be > 0 seconds", EXIT_USAGE)
    registry = CollectorRegistry()
    collector = _cloudwatch_collector(args, args.discover, registry)
    if args.metrics_port:
        start_http_server(args.metrics_port, addr="127.0.0.1", registry=registry)
    try:
        published = _run_or_unavailable(None, run(settings, collector, interval, once=args.once),
                                        f"Kafka at {settings.kafka_bootstrap}", kafka=settings)
    except CredentialsError as exc:
        raise UserError(str(exc), EXIT_USAGE) from None
    except CollectError as exc:
        raise UserError(str(exc), EXIT_UNAVAILABLE) from None
    print(f"published {published} samples", file=sys.stderr)
    return 0


def _history_range(args: argparse.Namespace) -> tuple[float, float, float]:
    import time

    from stream_app.backfill import parse_duration

    try:
        since, chunk = parse_duration(args.since), parse_duration(args.chunk)
    except ValueError as exc:
        raise UserError(f"--since/--chunk: {exc}", EXIT_USAGE) from None
    until = time.time()
    if args.until:
        from datetime import UTC, datetime

        try:
            parsed = datetime.fromisoformat(args.until)
        except ValueError:
            raise UserError(f"--until must be an RFC 3339 time, got {args.until!r}", EXIT_USAGE) from None
        until = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    return until - since, until, chunk


def _print_backfill(report) -> None:  # type: ignore[no-untyped-def]
    rate = report.samples / report.seconds if report.seconds else 0.0
    print(f"published {report.samples} samples of history in {report.messages} messages "
          f"({report.chunks} chunks, {report.seconds:.1f} s, {rate:,.0f} samples/s)", file=sys.stderr)


def cmd_backfill_prometheus(args: argparse.Namespace) -> int:
    """Publish Prometheus history (query_range, chunked) to metrics.samples to warm the baselines."""
    from stream_app.backfill import PrometheusHistory, backfill_prometheus, parse_duration
    from stream_app.collect import CollectError

    settings = _settings()
    if not args.url.startswith(("http://", "https://")):
        raise UserError(f"--url must be an http(s) URL, got {args.url!r}", EXIT_USAGE)
    try:
        step = parse_duration(args.step)
    except ValueError as exc:
        raise UserError(f"--step: {exc}", EXIT_USAGE) from None
    since, until, chunk = _history_range(args)
    history = PrometheusHistory(args.url, args.query, step=step, resource_label=args.resource_label,
                                resource_type=args.resource_type)
    try:
        report = _run_or_unavailable(None, backfill_prometheus(settings, history, since, until, chunk),
                                     f"Kafka at {settings.kafka_bootstrap}", kafka=settings)
    except CollectError as exc:
        raise UserError(str(exc), EXIT_UNAVAILABLE) from None
    _print_backfill(report)
    return 0


def cmd_backfill_cloudwatch(args: argparse.Namespace) -> int:
    """Publish CloudWatch history (GetMetricData, chunked) to metrics.samples to warm the baselines."""
    from stream_app.backfill import backfill_cloudwatch
    from stream_app.cloudwatch import CredentialsError
    from stream_app.collect import CollectError

    settings = _settings()
    since, until, chunk = _history_range(args)
    collector = _cloudwatch_collector(args, args.discover)
    try:
        report = _run_or_unavailable(None, backfill_cloudwatch(settings, collector, since, until, chunk),
                                     f"Kafka at {settings.kafka_bootstrap}", kafka=settings)
    except CredentialsError as exc:
        raise UserError(str(exc), EXIT_USAGE) from None
    except CollectError as exc:
        raise UserError(str(exc), EXIT_UNAVAILABLE) from None
    _print_backfill(report)
    return 0


def _history_arguments(p: argparse.ArgumentParser, since: str, chunk: str) -> None:
    p.add_argument("--since", default=since, metavar="DURATION", help=f"how far back, e.g. 30d, 12h ({since})")
    p.add_argument("--until", metavar="TIME", help="end of the history, RFC 3339 (default: now)")
    p.add_argument("--chunk", default=chunk, metavar="DURATION", help=f"history fetched per request ({chunk})")


def _aws_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", help="AWS region (default: the AWS configuration's)")
    p.add_argument("--endpoint-url", help="AWS endpoint (VPC endpoints, local emulators)")
    p.add_argument("--profile", help="AWS profile (default: the standard credential chain)")
    p.add_argument("--period", type=int, default=60, help="CloudWatch period, 60 or 300 seconds (60)")
    p.add_argument("--discover", action="store_true",
                   help="list EC2, RDS, ElastiCache, EKS and MSK and query their standard metrics")
    p.add_argument("--services", default="ec2,rds,elasticache,eks,msk", help="services to discover (all)")
    p.add_argument("--metric", action="append", metavar="NAMESPACE:METRIC[:STAT]",
                   help="extra metric (repeatable); without --discover, every dimension set ListMetrics knows")


def _run_or_unavailable(loop: asyncio.AbstractEventLoop | None, coro, what: str,  # type: ignore[no-untyped-def]
                        kafka: Settings | None = None):
    """Run ``coro``; a service that is down exits 69 (EX_UNAVAILABLE), one that refuses our
    credentials -- a login, a TLS certificate, an ACL -- exits 78 (EX_CONFIG), each in one line.
    ``kafka``: the settings of the Kafka clients ``coro`` uses, to tell the two apart."""
    from sqlalchemy.exc import DBAPIError

    from stream_app.runtime.kafka import KafkaConnectionError, KafkaError
    from stream_app.runtime.topics import KafkaSecurityError, access_denied, login_failure

    try:
        return loop.run_until_complete(coro) if loop else asyncio.run(coro)
    except KafkaSecurityError as exc:
        raise UserError(str(exc), EXIT_CONFIG) from None
    except (KafkaError, DBAPIError, OSError) as exc:
        if kafka is not None and isinstance(exc, KafkaError):
            refused: Exception | None = access_denied(kafka, exc)
            if refused is None and isinstance(exc, KafkaConnectionError):
                refused = asyncio.run(login_failure(kafka))
            if refused is not None:
                raise UserError(str(refused), EXIT_CONFIG) from None
        tls = _tls_error(exc)
        if tls is not None:
            raise UserError(f"TLS handshake with {what} failed: {tls}", EXIT_CONFIG) from None
        detail = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise UserError(f"cannot reach {what}: {detail}", EXIT_UNAVAILABLE) from None


def _tls_error(exc: BaseException) -> str | None:
    """What the TLS handshake said, when one failed somewhere in ``exc``'s chain, with a hint.

    The MySQL driver reports "Can't connect to MySQL server" and keeps the certificate
    error only as the cause: an unknown CA would read like a server that is down.
    """
    import ssl

    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            why = current.verify_message or current.reason or str(current)
            hint = ("the server's certificate is not for this host name: connect by the name it holds, "
                    "or set ssl_check_hostname=false" if "hostname" in why.lower()
                    else "is the CA file given the one that signed the server's certificate?")
            return f"certificate verify failed: {why} ({hint})"
        if isinstance(current, ssl.SSLError):
            return f"{current.reason or current}"
        todo.extend([getattr(current, "orig", None), current.__cause__, current.__context__])
    return None


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="spcwatch",
        description="Streaming statistical process control on Kafka. "
        "Configuration comes from SPCWATCH_* environment variables (see README).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def add(name: str, func: Callable[[argparse.Namespace], int], parent=sub) -> argparse.ArgumentParser:  # type: ignore[no-untyped-def]
        doc = (func.__doc__ or "").strip()
        p = parent.add_parser(name, help=doc, description=doc)
        p.set_defaults(func=func)
        return p

    worker = add("worker", cmd_worker)
    worker.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="overrides SPCWATCH_LOG_LEVEL")
    worker.add_argument("--skip-migrations", action="store_true",
                        help="do not apply pending database migrations at start-up")

    db_parser = sub.add_parser("db", help="database schema", description="Database schema commands.")
    db_sub = db_parser.add_subparsers(dest="db_command", metavar="COMMAND", parser_class=_Parser)
    db_sub.required = True
    add("upgrade", cmd_db_upgrade, db_sub)
    add("status", cmd_db_status, db_sub)

    replay = add("replay", cmd_replay)
    replay.add_argument("use_case", metavar="USE_CASE", help="infra, store, recon, forecast, menu")
    replay.add_argument("--input", required=True, metavar="FILE", help="JSONL of contract events")
    replay.add_argument("--output", metavar="FILE", help="alerts as JSONL (default: stdout)")

    topics_parser = sub.add_parser("topics", help="Kafka topics", description="Kafka topic commands.")
    topics_sub = topics_parser.add_subparsers(dest="topics_command", metavar="COMMAND", parser_class=_Parser)
    topics_sub.required = True
    add("create", cmd_topics_create, topics_sub)

    collect_parser = sub.add_parser("collect", help="poll a metrics source into metrics.samples",
                                    description="Collectors publishing to metrics.samples.")
    collect_sub = collect_parser.add_subparsers(dest="collect_command", metavar="SOURCE", parser_class=_Parser)
    collect_sub.required = True
    prom = add("prometheus", cmd_collect_prometheus, collect_sub)
    prom.add_argument("--url", required=True, help="Prometheus base URL, e.g. http://127.0.0.1:9090")
    prom.add_argument("--query", required=True, action="append", metavar="Q",
                      help="PromQL instant query (repeatable)")
    prom.add_argument("--interval", type=float, default=60.0, metavar="S", help="seconds between polls (60)")
    prom.add_argument("--resource-label", default="instance", help="label naming the resource (instance)")
    prom.add_argument("--resource-type", default="prometheus", help="resource_type of the samples")
    prom.add_argument("--once", action="store_true", help="poll once and exit")

    cw = add("cloudwatch", cmd_collect_cloudwatch, collect_sub)
    _aws_arguments(cw)
    cw.add_argument("--interval", type=float, metavar="S", help="seconds between polls (default: the period)")
    cw.add_argument("--lookback", type=float, default=600.0, metavar="S",
                    help="seconds asked again each poll, for late datapoints (600)")
    cw.add_argument("--refresh-minutes", type=float, default=10.0, metavar="N",
                    help="re-discover the estate every N minutes (10)")
    cw.add_argument("--metrics-port", type=int, default=0, metavar="PORT",
                    help="serve the collector's metrics (API calls per poll) on 127.0.0.1:PORT")
    cw.add_argument("--once", action="store_true", help="poll once and exit")

    backfill_parser = sub.add_parser("backfill", help="publish history to metrics.samples (warm start)",
                                     description="Publish history as batches marked history: baselines warm, "
                                     "episodes inside the history are recorded but not notified.")
    backfill_sub = backfill_parser.add_subparsers(dest="backfill_command", metavar="SOURCE", parser_class=_Parser)
    backfill_sub.required = True
    bprom = add("prometheus", cmd_backfill_prometheus, backfill_sub)
    bprom.add_argument("--url", required=True, help="Prometheus base URL")
    bprom.add_argument("--query", required=True, action="append", metavar="Q", help="PromQL query (repeatable)")
    bprom.add_argument("--step", default="60s", metavar="DURATION", help="resolution (60s)")
    bprom.add_argument("--resource-label", default="instance", help="label naming the resource (instance)")
    bprom.add_argument("--resource-type", default="prometheus", help="resource_type of the samples")
    _history_arguments(bprom, "30d", "1d")
    bcw = add("cloudwatch", cmd_backfill_cloudwatch, backfill_sub)
    _aws_arguments(bcw)
    _history_arguments(bcw, "14d", "1d")

    menu_parser = sub.add_parser("menu", help="menu engineering (UC-PR-01)", description="Menu engineering.")
    menu_sub = menu_parser.add_subparsers(dest="menu_command", metavar="COMMAND", parser_class=_Parser)
    menu_sub.required = True
    report = add("report", cmd_menu_report, menu_sub)
    report.add_argument("--as-of", required=True, metavar="YYYY-MM-DD", help="the business day (closed)")
    report.add_argument("--window-days", type=int, metavar="N",
                        help="the rolling window (default: the first of SPCWATCH_MENU_WINDOWS, 28)")
    where = report.add_mutually_exclusive_group()
    where.add_argument("--store", metavar="ID", help="one store")
    where.add_argument("--chain", action="store_true", help="the whole chain (the default)")
    report.add_argument("--format", choices=["json", "html"], default="json", help="json (default) or html")
    report.add_argument("--output", metavar="FILE", help="where to write it (default: stdout)")

    from stream_app import alerts_view, simulate  # light modules: their heavy imports are lazy

    simulate.add_arguments(add("simulate", cmd_simulate))
    alerts_parser = sub.add_parser("alerts", help="alerts", description="Alert commands.")
    alerts_sub = alerts_parser.add_subparsers(dest="alerts_command", metavar="COMMAND", parser_class=_Parser)
    alerts_sub.required = True
    alerts_view.add_arguments(add("tail", cmd_alerts_tail, alerts_sub))

    bridge = add("wecom-bridge", cmd_wecom_bridge)
    bridge.add_argument("--host", default="127.0.0.1", help="listen address (127.0.0.1)")
    bridge.add_argument("--port", type=int, default=9097, help="listen port (9097)")
    bridge.add_argument("--robot", action="append", metavar="NAME=URL",
                        help="robot webhook of receiver path /robot/NAME (repeatable), e.g. "
                        "store-ops=https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY")
    bridge.add_argument("--default-robot", metavar="URL", help="robot for names without their own --robot "
                        "(default: none; such notifications are only printed)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is not cmd_worker:
        # One-shot commands report failures themselves, in one line.
        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"spcwatch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except UserError as exc:
        print(f"spcwatch: error: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
