"""Benchmark of ``lossc check``: how long a full property report of each catalog loss takes.

Two timings per loss, both without the result cache (LOSSC_NO_CACHE=1):

``cli``
    ``python -m lossc.cli check NAME --json`` in a fresh subprocess, wall time: what a user waits for,
    interpreter start, imports (torch, sympy) and code generation included. Median of ``--repeats``.
``api``
    ``lossc.check(NAME, use_cache=False)`` inside one process, after one warm-up call of another loss
    (imports done); each call starts from an empty result cache, but parse and code generation are
    memoised by lossc after the first call of a loss. Median of ``--repeats``.

Usage: ``python benchmarks/check_bench.py [--repeats 3] [--names a,b] [--markdown]``.
The machine's load is printed with the results: timings taken on busy cores are longer.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli_time(name: str) -> float:
    env = {**os.environ, "LOSSC_NO_CACHE": "1"}
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "lossc.cli", "check", name, "--json"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"lossc check {name} failed: {out.stderr}")
    return elapsed


def api_time(name: str) -> float:
    import lossc
    start = time.perf_counter()
    lossc.check(name, use_cache=False)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--names", help="comma-separated catalog names (default: all)")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = parser.parse_args()
    os.environ["LOSSC_NO_CACHE"] = "1"
    import lossc
    names = args.names.split(",") if args.names else [e.name for e in lossc.catalog()]
    lossc.check("mse", use_cache=False)  # imports and first-call costs out of the api timings
    rows = []
    for name in names:
        api = statistics.median(api_time(name) for _ in range(args.repeats))
        cli = statistics.median(cli_time(name) for _ in range(args.repeats))
        kind = lossc.parse(name).kind
        rows.append((name, kind, api, cli))
        if not args.markdown:
            print(f"{name:18s} {kind:11s} api {api:6.2f} s   cli {cli:6.2f} s", flush=True)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, " \
              f"torch {__import__('torch').__version__}, sympy {__import__('sympy').__version__}"
    if args.markdown:
        print(f"Machine: {machine}; load average {load:.1f} at the end; {date.today().isoformat()}; "
              f"median of {args.repeats}.\n")
        print("| loss | kind | `lossc.check` (s) | `lossc check` CLI (s) |")
        print("| --- | --- | ---: | ---: |")
        for name, kind, api, cli in rows:
            print(f"| {name} | {kind} | {api:.2f} | {cli:.2f} |")
        worst = max(rows, key=lambda r: r[3])
        print(f"\nSlowest CLI run: {worst[0]}, {worst[3]:.2f} s (median); "
              f"all medians {'within' if worst[3] <= 5 else 'NOT within'} the 5 s budget.")
    else:
        print(f"machine: {machine}; load average {load:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
