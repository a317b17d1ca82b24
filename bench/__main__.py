"""``make bench``: run every benchmark and write bench/README.md.

Each module's ``run()`` returns a Markdown section; this collects them under a
header naming the machine and the date, so figures are never orphaned.
"""

from __future__ import annotations

import importlib
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

MODULES = [
    "bench.framework",
    "bench.bench_models",
    "bench.detection_quality",
    "bench.bench_infra",
    "bench.bench_dashboards",
    "bench.bench_forecast",
    "bench.forecast_budget",
    "bench.bench_recon",
    "bench.bench_store",
    "bench.bench_menu",
    "bench.store_detection",
    "bench.bench_backfill",
    "bench.bench_notify",
]
README = Path(__file__).resolve().parent / "README.md"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}")


def main(argv: list[str]) -> int:
    selected = argv or MODULES
    sections = []
    failed = False
    for name in selected:
        started = time.monotonic()
        print(f"bench: running {name} ...", file=sys.stderr, flush=True)
        try:
            module = importlib.import_module(name)
            section = module.run()
        except Exception:
            failed = True
            section = f"## {name}\n\nFAILED:\n\n```\n{traceback.format_exc()}```\n"
        print(section)
        print(f"bench: {name} took {time.monotonic() - started:.0f}s", file=sys.stderr, flush=True)
        sections.append(section.strip())
    header = (f"# spcwatch benchmarks\n\nWritten by `make bench` on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.\n\n"
              f"Machine: {machine()}. Local Kafka broker from `scripts/services.sh`.\n"
              "Figures are medians; ratios compare against a baseline measured in the same run.\n")
    if argv:
        print("bench: partial run; bench/README.md left unchanged", file=sys.stderr)
    else:
        README.write_text(header + "\n" + "\n\n".join(sections) + "\n")
        print(f"bench: wrote {README}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
