"""``spcwatch worker`` with CPython's default garbage-collector thresholds.

Run by ``bench.bench_infra`` beside the real worker: the difference is what
:func:`stream_app.runtime.app.tune_gc` buys on a worker with a large long-lived heap.
"""

from __future__ import annotations

import sys

from stream_app import cli
from stream_app.runtime import app

if __name__ == "__main__":
    app.tune_gc = lambda: None  # the worker command looks it up when it starts
    sys.exit(cli.main(["worker"]))
