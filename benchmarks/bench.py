"""Every benchmark, side by side in one process run: ``make bench``.

Usage::

    .venv/bin/python benchmarks/bench.py                  # all cases (about 15 minutes here)
    .venv/bin/python benchmarks/bench.py --only aggregation,scale
    .venv/bin/python benchmarks/bench.py --smoke          # tiny settings, to check the scripts

Each case writes ``results/bench/<case>.csv`` and prints its table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import date

import aggregation
import arithmetic
import clock
import cohorts
import communication
import concurrency
import links
import overhead
import pandas as pd
import scale
import startup
from common import OUT, write

CASES = {
    "clock": clock.run,
    "overhead": overhead.run,
    "concurrency": concurrency.run,
    "aggregation": aggregation.run,
    "scale": scale.run,
    "links": links.run,
    "communication": communication.run,
    "arithmetic": arithmetic.run,
    "startup": startup.run,
    "cohorts": cohorts.run,
}


def main(argv: list[str] | None = None) -> int:
    """Run the chosen cases and print their tables."""
    parser = argparse.ArgumentParser(description="pwfl benchmarks")
    parser.add_argument("--only", default=",".join(CASES), help="comma-separated cases")
    parser.add_argument("--smoke", action="store_true", help="tiny settings (seconds)")
    args = parser.parse_args(argv)
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CASES]
    if unknown:
        print(
            f"bench: unknown case {unknown[0]!r}; choose from {', '.join(CASES)}", file=sys.stderr
        )
        return 2
    print(f"# {date.today()} {platform.node()}: {os.cpu_count()} CPUs, {platform.python_version()}")
    pd.set_option("display.width", 160)
    pd.set_option("display.float_format", lambda v: f"{v:.3f}")
    for name in chosen:
        start = time.perf_counter()
        frame = CASES[name](smoke=args.smoke)
        path = write(name if not args.smoke else f"smoke-{name}", frame)
        seconds = time.perf_counter() - start
        print(f"\n## {name} ({seconds:.0f} s) -> {path.relative_to(OUT.parents[1])}")
        print(frame.to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
