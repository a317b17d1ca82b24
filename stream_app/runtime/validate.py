"""Validate-and-count agents for input topics no use case consumes yet."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stream_app.runtime.app import Runtime


def register(runtime: Runtime) -> None:
    for name, topic in runtime.input_topics.items():
        if name in runtime.topic_owners:
            continue
        _register_one(runtime, name, topic)


def _register_one(runtime: Runtime, name: str, topic: object) -> None:
    async def validate(stream):  # type: ignore[no-untyped-def]
        async for _message, _events in runtime.decoded(name, stream):
            pass  # counted and dead-lettered by runtime.decoded

    validate.__name__ = validate.__qualname__ = f"validate_{name.replace('.', '_')}"
    runtime.agent(topic, name=f"spcwatch.validate.{name}")(validate)
