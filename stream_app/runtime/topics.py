"""Topic names and their explicit creation.

The broker does not auto-create topics (and MSK clusters usually forbid it), so
spcwatch creates the contract's topics itself with the configured partitions
and replication before the worker starts. Existing topics are left as they are.
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    TopicAlreadyExistsError,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)

from agents.core.events import INPUT_TOPICS
from agents.core.settings import Settings

log = logging.getLogger(__name__)

ALERTS = "alerts"
DEADLETTER = "deadletter"
OUTPUT_TOPICS = (ALERTS, DEADLETTER)
ALL_TOPICS = (*INPUT_TOPICS, *OUTPUT_TOPICS)


TOPIC_OPERATIONS = "ALL (DESCRIBE, CREATE, READ, WRITE)"
GROUP_OPERATIONS = "READ"


class KafkaSecurityError(Exception):
    """The broker turned us away for our credentials, not for being down: a configuration error
    (the CLI exits with EX_CONFIG, 78), which retrying cannot fix. The message is one line."""


class KafkaAccessDenied(KafkaSecurityError):
    """The authenticated user lacks an ACL on a topic, the consumer group or the cluster."""

    def __init__(self, settings: Settings, kind: str, name: str, operations: str) -> None:
        user = settings.kafka_sasl_username or "ANONYMOUS"
        if kind == "cluster":
            on = "the cluster"
        elif settings.topic_prefix:
            on = f"the {kind}s named {settings.topic_prefix}*"
        else:
            on = f"{kind} {name}"
        super().__init__(f"Kafka denied access to {kind} {name} for user {user}: grant it {operations} on {on} "
                         "(README: Secure Kafka (MSK))")
        self.kind, self.name = kind, name


class KafkaLoginFailed(KafkaSecurityError):
    """The SASL login was refused, or the TLS handshake with the broker failed."""


@dataclass(frozen=True, slots=True)
class TopicReport:
    created: list[str]
    existing: list[str]


def kafka_client_options(settings: Settings) -> dict[str, object]:
    """aiokafka connection options (security) shared by every client we build."""
    options: dict[str, object] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL"):
        options.update(
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_plain_username=settings.kafka_sasl_username,
            sasl_plain_password=settings.kafka_sasl_password,
        )
    return options


class PartitionReader:
    """Reads a range of offsets of one partition straight from the broker, outside any group.

    For the few records Faust fetched but never delivered (stream_app/runtime/runner.py, DeliveryGaps):
    one consumer, started on first use, shared under a lock.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def read(self, topic: str, partition: int, start: int, end: int, timeout: float = 30.0) -> list[Any]:
        """The records with ``start <= offset < end`` (none for offsets that hold no record, such as
        transaction markers); raises TimeoutError when the broker does not hand them over in time."""
        async with self._lock:
            if self._consumer is None:
                self._consumer = AIOKafkaConsumer(**kafka_client_options(self.settings), enable_auto_commit=False)
                await self._consumer.start()
            tp = TopicPartition(topic, partition)
            self._consumer.assign([tp])
            self._consumer.seek(tp, start)
            records: list[Any] = []
            deadline = time.monotonic() + timeout
            while await self._consumer.position(tp) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"offsets {start}-{end - 1} of {topic}[{partition}] not read in {timeout:.0f} s")
                batch = await self._consumer.getmany(tp, timeout_ms=500)
                records.extend(r for r in batch.get(tp, ()) if r.offset < end)
            return records

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the broker against SPCWATCH_KAFKA_SSL_CAFILE, else the system CAs (MSK's public CA is there)."""
    return ssl.create_default_context(cafile=settings.kafka_ssl_cafile or None)


async def login_failure(settings: Settings, timeout: float = 15.0) -> KafkaLoginFailed | None:
    """Why the first bootstrap server refuses our TLS handshake or SASL login, if it does.

    aiokafka's bootstrap only logs the reason and raises "Unable to bootstrap": one direct
    connection with the same options brings the broker's own answer back.
    """
    if settings.kafka_security_protocol == "PLAINTEXT":
        return None
    server = settings.kafka_bootstrap.split(",")[0].strip()
    host, _, port = server.rpartition(":")
    options = kafka_client_options(settings)
    options.pop("bootstrap_servers")
    try:
        conn = await asyncio.wait_for(
            create_conn(host, int(port), request_timeout_ms=int(timeout * 1000), **options), timeout)
    except ssl.SSLError as exc:
        if not isinstance(exc, ssl.SSLCertVerificationError):
            hint = " (a listener without TLS? check SPCWATCH_KAFKA_SECURITY_PROTOCOL and the port)"
        elif "hostname" in str(exc).lower():
            hint = " (connect by a name the broker's certificate holds)"
        elif settings.kafka_ssl_cafile:
            hint = f" (is {settings.kafka_ssl_cafile} the CA that signed the broker's certificate?)"
        else:
            hint = " (set SPCWATCH_KAFKA_SSL_CAFILE to the broker's CA)"
        return KafkaLoginFailed(f"TLS handshake with Kafka at {server} failed: "
                                f"{getattr(exc, 'verify_message', None) or exc.reason or exc}{hint}")
    except KafkaConnectionError:
        return None  # unreachable, not refused
    except KafkaError as exc:  # SaslAuthenticationFailed, UnsupportedSaslMechanismError, ...
        if isinstance(exc, IllegalSaslStateError):
            return KafkaLoginFailed(f"Kafka at {server} does not expect a SASL login there (a listener without "
                                    "SASL? check SPCWATCH_KAFKA_SECURITY_PROTOCOL and the port)")
        detail = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        if isinstance(exc, UnsupportedSaslMechanismError):
            return KafkaLoginFailed(f"Kafka at {server}: {detail} (check SPCWATCH_KAFKA_SASL_MECHANISM)")
        return KafkaLoginFailed(
            f"Kafka at {server} refused the {settings.kafka_sasl_mechanism} login of user "
            f"{settings.kafka_sasl_username}: {detail} (check SPCWATCH_KAFKA_SASL_USERNAME/PASSWORD)")
    except ConnectionResetError:
        if "SSL" not in settings.kafka_security_protocol:
            return None
        return KafkaLoginFailed(f"Kafka at {server} closed the connection during the TLS handshake (a listener "
                                "without TLS? check SPCWATCH_KAFKA_SECURITY_PROTOCOL and the port)")
    except (TimeoutError, OSError):
        return None
    conn.close()
    return None


def access_denied(settings: Settings, exc: BaseException, topic: str | None = None) -> KafkaAccessDenied | None:
    """The :class:`KafkaAccessDenied` an authorization error of aiokafka means, else None."""
    if isinstance(exc, TopicAuthorizationFailedError):
        return KafkaAccessDenied(settings, "topic", topic or _named(exc, "topic"), TOPIC_OPERATIONS)
    if isinstance(exc, GroupAuthorizationFailedError):
        return KafkaAccessDenied(settings, "group", settings.group_id, GROUP_OPERATIONS)
    if isinstance(exc, ClusterAuthorizationFailedError):
        return KafkaAccessDenied(settings, "cluster", "kafka-cluster", "the operation it refused")
    return None


def _named(exc: BaseException, kind: str) -> str:
    """The resource an aiokafka error names: its first argument (the topic of a send), or the name
    after "topic" in its message (Faust's "Cannot create topic: x (29): ...")."""
    first = exc.args[0] if exc.args else None
    if isinstance(first, str) and first and " " not in first:
        return first
    found = re.search(rf"{kind}:?\s+([A-Za-z0-9._-]+)", str(first or ""), re.IGNORECASE)
    return found.group(1) if found else f"(the {kind} asked for)"


async def check_group_access(settings: Settings) -> None:
    """Raise :class:`KafkaAccessDenied` unless the user may use the worker's consumer group.

    Without this check the missing group ACL surfaces deep inside Faust's consumer, as a
    rebalance that fails over and over. DESCRIBE is implied by READ, so a user allowed to
    consume the group may describe it.
    """
    admin = AIOKafkaAdminClient(**kafka_client_options(settings), request_timeout_ms=30000)
    await admin.start()
    try:
        try:
            responses = await admin.describe_consumer_groups([settings.group_id])
        except GroupAuthorizationFailedError:
            raise KafkaAccessDenied(settings, "group", settings.group_id, GROUP_OPERATIONS) from None
        except KafkaError as exc:  # no coordinator yet on a new cluster, ...: Faust will find out
            log.debug("could not check access to group %s: %r", settings.group_id, exc)
            return
        for response in responses:
            for group in response.groups:
                if group[0] == GroupAuthorizationFailedError.errno:
                    raise KafkaAccessDenied(settings, "group", settings.group_id, GROUP_OPERATIONS)
    finally:
        await admin.close()


async def _start(client: Any, settings: Settings) -> None:
    """``client.start()``; a refused TLS handshake or login raises :class:`KafkaLoginFailed`."""
    try:
        await client.start()
    except KafkaConnectionError:
        failure = await login_failure(settings)
        if failure is not None:
            raise failure from None
        raise


async def ensure_topics(settings: Settings, names: tuple[str, ...] = ALL_TOPICS) -> TopicReport:
    """Create missing topics; report which were created and which already existed."""
    admin = AIOKafkaAdminClient(**kafka_client_options(settings), request_timeout_ms=30000)
    await _start(admin, settings)
    try:
        full_names = [settings.topic(name) for name in names]
        existing = set(await admin.list_topics())
        missing = [n for n in full_names if n not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(name, settings.partitions, settings.replication_factor) for name in missing]
            )
            for name, code, *rest in response.topic_errors:
                if code == TopicAuthorizationFailedError.errno:
                    raise KafkaAccessDenied(settings, "topic", name, TOPIC_OPERATIONS)
                if code == ClusterAuthorizationFailedError.errno:
                    raise KafkaAccessDenied(settings, "topic", name, "CREATE")
                if code not in (0, TopicAlreadyExistsError.errno):  # lost a race: fine
                    detail = rest[0] if rest and rest[0] else f"error code {code}"
                    raise RuntimeError(f"cannot create topic {name}: {detail}")
        for name in missing:
            log.info("created topic %s (partitions=%d, replication=%d)",
                     name, settings.partitions, settings.replication_factor)
        return TopicReport(created=missing, existing=[n for n in full_names if n in existing])
    finally:
        await admin.close()
