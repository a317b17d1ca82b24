"""The worker, assembled: the Faust runtime, the notifier's endpoints and every use case.

This is the composition root, the one place that knows all three: the runtime
(``stream_app/runtime/``) knows neither the notifier nor which use cases exist, and
the use cases (``agents/``) know no Faust.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from agents.core.settings import Settings
from agents.registry import PROCESSORS
from stream_app import notify
from stream_app.runtime.app import Runtime, build_runtime
from stream_app.runtime.runner import register_all


def create_runtime(settings: Settings, registry: CollectorRegistry | None = None) -> Runtime:
    """Build the Faust app with every topic, agent and HTTP view registered."""
    runtime = build_runtime(settings, registry)
    notify.register_web(runtime)  # /runbooks, /alerts (issue #16)
    notify.register(runtime)  # Alertmanager forwarding, when configured
    register_all(runtime, PROCESSORS.values())
    return runtime
