"""Mutants of the catalog through the whole compiler: parse, lower, derive and generate (torch and triton
targets), each in a worker process with a budget of 10 s of CPU time (the same on a loaded machine; a
worker stuck in C code past 6x that wall-clock time is killed and counted too).

    python scripts/fuzz_frontend.py --count 20000 --seed 1 [--workers 2] [--limit 10] [--out report.json]

A mutant passes when it compiles or raises a ``LossError`` within the budget. The script reports every
other exception and every run past the budget (the input, saved under ``--save`` to reproduce it) and ends
with exit status 1 if there was any. The mutator is tests/test_fuzz.py's (seeded: one seed, one set of
mutants, whatever the number of workers).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _mutants(count: int, seed: int):
    sys.path.insert(0, str(REPO / "tests"))
    from test_fuzz import _catalog_texts, _mutate
    texts = _catalog_texts()
    names = sorted(texts)
    rng = random.Random(seed)
    for i in range(count):
        name = names[i % len(names)]
        yield i, name, _mutate(texts[name], rng)


class _Budget(BaseException):  # (no "except Exception" of lossc swallows it)
    """The input used up its CPU-time budget."""


def _worker(inbox, outbox, limit: float) -> None:
    os.environ.setdefault("LOSSC_CACHE_DIR", os.path.join(os.environ.get("TMPDIR", "/tmp"), "lossc-fuzz-cache"))

    def over_budget(signum, frame):
        raise _Budget()
    signal.signal(signal.SIGPROF, over_budget)
    import lossc
    from lossc.codegen import generate_module
    from lossc.frontend import SourceFile, lower
    from lossc.passes import derive
    outbox.put(("ready", None, None, None))
    while True:
        item = inbox.get()
        if item is None:
            return
        i, text = item
        start = time.process_time()
        signal.setitimer(signal.ITIMER_PROF, limit)  # CPU time of this process: the same on a loaded machine
        try:
            spec = derive(lower(SourceFile.from_text(text, "<fuzz>")))
            for target in ("torch", "all") if spec.form != "composite" else ("torch",):
                compile(generate_module(spec, target), "<generated>", "exec")
            status = "compiled"
        except lossc.LossError:
            status = "LossError"
        except _Budget:
            status = "timeout"
        except BaseException as err:  # noqa: BLE001 - what the script looks for
            status = f"{type(err).__name__}: {str(err)[:300]}\n{traceback.format_exc()[-2000:]}"
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
        outbox.put(("done", i, status, time.process_time() - start))


class _Pool:
    """Workers that each take one input at a time; a worker past the limit is killed and replaced."""

    def __init__(self, workers: int, limit: float):
        self.ctx = mp.get_context("spawn")
        self.limit = limit
        self.workers = [self._start() for _ in range(workers)]

    def _start(self):
        inbox, outbox = self.ctx.Queue(), self.ctx.Queue()
        process = self.ctx.Process(target=_worker, args=(inbox, outbox, self.limit), daemon=True)
        process.start()
        assert outbox.get(timeout=300)[0] == "ready"
        return {"process": process, "inbox": inbox, "outbox": outbox, "job": None, "since": 0.0}

    def run(self, jobs, limit: float, report) -> None:
        jobs = iter(jobs)
        pending = True
        while pending or any(w["job"] is not None for w in self.workers):
            for k, w in enumerate(self.workers):
                if w["job"] is None and pending:
                    job = next(jobs, None)
                    if job is None:
                        pending = False
                        continue
                    w["job"], w["since"] = job, time.perf_counter()
                    w["inbox"].put((job[0], job[2]))
                if w["job"] is None:
                    continue
                try:
                    _, i, status, seconds = w["outbox"].get(timeout=0.05)
                    report(w["job"], status, seconds)
                    w["job"] = None
                except Exception:  # queue.Empty
                    # C code that never returns to Python (where SIGPROF cannot interrupt it): killed after a
                    # generous wall-clock time
                    if time.perf_counter() - w["since"] > max(60.0, 6 * limit):
                        report(w["job"], "timeout (killed)", time.perf_counter() - w["since"])
                        w["process"].kill()
                        w["process"].join()
                        self.workers[k] = self._start()

    def close(self) -> None:
        for w in self.workers:
            w["inbox"].put(None)
            w["process"].join(timeout=10)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--limit", type=float, default=10.0, help="CPU seconds per mutant")
    parser.add_argument("--out", help="write the figures as JSON here")
    parser.add_argument("--save", default="fuzz_failures", help="folder for the failing inputs")
    args = parser.parse_args(argv)
    counts = {"compiled": 0, "LossError": 0, "other": 0, "timeout": 0}
    slowest = [0.0, None]
    failures = []
    started = time.time()

    def report(job, status, seconds):
        i, name, text = job
        if status in ("compiled", "LossError"):
            counts[status] += 1
        else:
            kind = "timeout" if status.startswith("timeout") else "other"
            counts[kind] += 1
            failures.append({"index": i, "from": name, "status": status.splitlines()[0], "seconds": seconds})
            folder = Path(args.save)
            folder.mkdir(exist_ok=True)
            (folder / f"{args.seed}-{i}.loss").write_text(text, encoding="utf-8", errors="surrogatepass")
            print(f"[{i}] {name}: {status}", flush=True)
        if not status.startswith("timeout") and seconds > slowest[0]:
            slowest[:] = [seconds, i]
        done = sum(counts.values())
        if done % 500 == 0:
            print(f"{done}/{args.count} {counts} slowest {slowest[0]:.1f} s ({time.time() - started:.0f} s)",
                  flush=True)

    pool = _Pool(args.workers, args.limit)
    try:
        pool.run(_mutants(args.count, args.seed), args.limit, report)
    finally:
        pool.close()
    figures = {"count": args.count, "seed": args.seed, "limit_cpu_s": args.limit, **counts,
               "slowest_s": round(slowest[0], 2), "slowest_index": slowest[1], "failures": failures,
               "wall_s": round(time.time() - started)}
    print(json.dumps({k: v for k, v in figures.items() if k != "failures"}))
    if args.out:
        Path(args.out).write_text(json.dumps(figures, indent=2))
    return 1 if counts["other"] or counts["timeout"] else 0


if __name__ == "__main__":
    sys.exit(main())
