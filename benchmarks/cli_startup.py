"""How long `lmforge --help` takes, against a bare `python -c pass` run side by side (budget: 0.5 s)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 7


def median_seconds(args: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(args, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    bare = median_seconds([sys.executable, "-c", "pass"])
    cli = median_seconds([sys.executable, "-m", "lmforge.cli", "--help"])
    train_help = median_seconds([sys.executable, "-m", "lmforge.cli", "train", "--help"])
    print(f"python -c pass        : {bare:.3f} s")
    print(f"lmforge --help        : {cli:.3f} s  ({cli / bare:.1f}x bare python)  budget 0.5 s: {'OK' if cli < 0.5 else 'OVER'}")
    print(f"lmforge train --help  : {train_help:.3f} s")


if __name__ == "__main__":
    main()
