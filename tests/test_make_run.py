"""`make run` (scripts/run.sh) on the real services: it shows alerts from a scenario, and Ctrl-C stops
everything it started (worker, simulator, its topics) while leaving the services it found running.

The run is the session's one ``make run`` (tests/make_run.py), shared with tests/test_make_run_menu.py."""

from __future__ import annotations

import re
import urllib.request

import pytest

from tests.make_run import DEADLINE_SECONDS, MakeRun, alive, topics

pytestmark = pytest.mark.integration


def test_make_run_shows_a_scenario_alert_and_stops_what_it_started(make_run: MakeRun, kafka_bootstrap: str) -> None:
    run = make_run
    assert run.scenario_alert is not None, (
        f"no alert from a scenario within {DEADLINE_SECONDS:.0f}s:\n{run.output[-4000:]}\n--- worker log:\n"
        + run.worker_log_tail())
    assert run.rc == 0, run.output[-3000:]
    assert "run: worker stopped" in run.output and "run: simulator stopped" in run.output
    assert run.worker_pid is not None and run.simulator_pid is not None, run.output[-3000:]
    assert not alive(run.worker_pid) and not alive(run.simulator_pid)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{run.port}/health", timeout=2)
    prefix = re.search(r"run: topic prefix '([^']+)'", run.output)
    assert prefix is not None
    assert topics(kafka_bootstrap, prefix.group(1)) == []  # the run's topics went with it
    assert "services: " not in run.output.split("run: stopping", 1)[1]  # services it found running stay up
