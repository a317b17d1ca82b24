"""A Faust worker whose agent only counts events: the framework's ceiling.

Run as a subprocess by ``bench.framework``; prints ``{"events", "seconds"}``
measured from the first event to the last, so start-up and rebalancing are out.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import faust
import orjson


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    app = faust.App(args.group, broker=f"kafka://{args.bootstrap}", store="memory://",
                    processing_guarantee="at_least_once", topic_disable_leader=True,
                    consumer_auto_offset_reset="earliest", web_port=args.port, web_bind="127.0.0.1",
                    datadir=f"/tmp/{args.group}-data")
    topic = app.topic(args.topic, key_serializer="raw", value_serializer="raw")
    state = {"n": 0, "first": 0.0}

    @app.agent(topic)
    async def count(stream):  # type: ignore[no-untyped-def]
        async for _event in stream.events():
            if state["n"] == 0:
                state["first"] = time.perf_counter()
            state["n"] += 1
            if state["n"] == args.count:
                elapsed = time.perf_counter() - state["first"]
                sys.stdout.write("RESULT " + orjson.dumps({"events": state["n"], "seconds": elapsed}).decode() + "\n")
                sys.stdout.flush()  # the parent reads this line, then stops us

    logging.disable(logging.WARNING)
    worker = faust.Worker(app, loglevel="WARNING", quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
