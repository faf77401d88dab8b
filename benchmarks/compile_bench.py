"""Time of ``lossc.loss(name)``: the first and second call in one process, and the first call of a new
process with a cold and with a warm compile cache (``$LOSSC_CACHE_DIR``, a fresh temporary folder).

    python benchmarks/compile_bench.py [NAME ...] [--repeat 3]

Each process-level number is the median of ``--repeat`` fresh processes; it is the time of the call
alone (``import lossc`` is timed separately). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ["focal", "cross_entropy", "sigmoid_focal", "nce_rce", "brier", "poly_n"]

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
import lossc
t1 = time.perf_counter()
lossc.loss(sys.argv[1], backend=sys.argv[2])
t2 = time.perf_counter()
lossc.loss(sys.argv[1], backend=sys.argv[2])
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "first": t2 - t1, "second": t3 - t2}))
"""


def _run(name: str, backend: str, cache: str) -> dict:
    env = {**os.environ, "LOSSC_CACHE_DIR": cache, "PYTHONPATH": str(ROOT)}
    env.pop("LOSSC_NO_CACHE", None)
    out = subprocess.run([sys.executable, "-c", _CHILD, name, backend], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backend", default="torch", help="the backend lossc.loss is asked for (default torch)")
    args = parser.parse_args(argv)
    print(f"backend={args.backend}; median of {args.repeat} processes; seconds\n")
    print("| loss | import lossc | first call, cold cache | second call, same process | "
          "first call, new process, warm cache | cold / warm |")
    print("|---|---:|---:|---:|---:|---:|")
    for name in args.names:
        cold, warm = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as cache:
                cold.append(_run(name, args.backend, cache))
                warm.append(_run(name, args.backend, cache))
        imp = statistics.median(r["import"] for r in cold + warm)
        first = statistics.median(r["first"] for r in cold)
        second = statistics.median(r["second"] for r in cold)
        hit = statistics.median(r["first"] for r in warm)
        print(f"| {name} | {imp:.3f} | {first:.3f} | {second:.4f} | {hit:.3f} | {first / hit:.1f}x |")


if __name__ == "__main__":
    main()
