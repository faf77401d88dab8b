#!/usr/bin/env python
"""Long differential runs of generated losses against their mpmath truth, on every backend.

    python scripts/fuzz_backends.py --minutes 60 --seed 1 [--kinds multiclass,batch] [--backends torch,triton]
        [--summary fuzz-summary.json] [--fixtures tests/fixtures/generated] [--avoid-known]
    python scripts/fuzz_backends.py --merge run1.json run2.json --summary all.json

Each iteration generates one loss per kind (tests/genloss.py), draws --cases calls (tests/gencheck.py)
and checks every backend in each of its dtypes on the same calls (the truth of a call and dtype is
computed once). A mismatch is shrunk to a minimal loss and call and saved
as a JSON fixture (one per distinct signature: kind, backend, dtype, what failed, the known defect it is
attributed to). The summary counts generated losses per kind and backend, mismatches and fixtures.
Without a GPU the triton backend runs under TRITON_INTERPRET=1 (slow: small shapes).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import gencheck as K  # noqa: E402  (sets TRITON_INTERPRET before triton is imported)
import genloss as G  # noqa: E402


def _signature(kind: str, backend: str, mismatch: K.Mismatch, known: str | None) -> str:
    detail = mismatch.detail.split(":")[0] if mismatch.what == "error" else ""
    return "|".join((kind, backend, mismatch.dtype, mismatch.what, detail, known or "new"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kinds", default=",".join(G.KINDS))
    ap.add_argument("--backends", default=",".join(K.BACKENDS))
    ap.add_argument("--summary", default="fuzz-summary.json")
    ap.add_argument("--fixtures", default=str(ROOT / "tests" / "fixtures" / "generated"))
    ap.add_argument("--avoid-known", action="store_true", help="leave out the constructs of known defects")
    ap.add_argument("--triton-every", type=int, default=4, help="run triton on every k-th generated loss")
    ap.add_argument("--shrink-budget", type=int, default=120)
    ap.add_argument("--hang", type=float, default=30.0,
                    help="CPU seconds one backend may take to compile and run a call before it is a hang")
    ap.add_argument("--cases", type=int, default=3, help="calls (inputs, options) per generated loss and backend")
    ap.add_argument("--merge", nargs="+", metavar="SUMMARY",
                    help="instead of running: add up the summaries of several runs into --summary")
    args = ap.parse_args(argv)
    if args.merge:
        merged = merge([json.loads(Path(f).read_text()) for f in args.merge])
        Path(args.summary).write_text(json.dumps(merged, indent=1) + "\n")
        print(json.dumps({k: merged[k] for k in ("seeds", "commits", "minutes", "total_losses_x_backends",
                                                  "total_calls_x_dtypes", "harness_errors")}))
        print(markdown(merged))
        return 0
    kinds = args.kinds.split(",")
    backends = args.backends.split(",")
    fixtures = Path(args.fixtures)
    fixtures.mkdir(parents=True, exist_ok=True)
    counts = collections.Counter()        # (kind, backend) -> generated losses checked
    checks = collections.Counter()        # (kind, backend, dtype) -> calls compared
    failures = collections.Counter()      # signature -> count
    examples: dict[str, dict] = {}
    state = {"harness_errors": 0}
    start = time.time()
    deadline = start + 60 * args.minutes
    it = 0
    last = 0.0
    while time.time() < deadline:
        for kind in kinds:
            with_triton = "triton" in backends and it % args.triton_every == 0
            crng = random.Random(f"{args.seed}-{kind}-{it}-cases")
            loss = None
            for backend in backends:
                if backend == "triton" and not with_triton:
                    continue
                avoid = K.avoid_for(backend) if args.avoid_known else ()
                if loss is None or avoid:
                    loss = G.generate(kind, random.Random(f"{args.seed}-{kind}-{it}"), avoid=avoid)
                    # every backend runs the same calls, so the truth of a call and dtype is computed once
                    cases = [K.make_case(loss, crng, small=with_triton) for _ in range(args.cases)]
                    truths: dict = {}
                counts[(kind, backend)] += 1
                for case_index, case in enumerate(cases):
                    if not _check_case(args, kind, backend, loss, case, checks, failures, examples, fixtures,
                                       it, state, truths, case_index):
                        break
        it += 1
        now = time.time()
        if now - last > 10:
            last = now
            total = sum(counts.values())
            print(f"[{(now - start) / 60:5.1f} min] it {it} losses x backends {total} "
                  f"({total / (now - start):.1f}/s) failures {sum(failures.values())} "
                  f"signatures {len(failures)} harness errors {state['harness_errors']}", flush=True)
            _write(args, counts, checks, failures, examples, state['harness_errors'], start, it)
    _write(args, counts, checks, failures, examples, state['harness_errors'], start, it)
    return 0


def _check_case(args, kind, backend, loss, case, checks, failures, examples, fixtures, it, state, truths,
                case_index) -> bool:
    """Every dtype of one call; a mismatch is counted, and shrunk and saved the first time its signature is
    seen. False when the call failed (the loss's other calls on this backend are then skipped). ``truths``
    memoises the truth of (call, dtype) across backends."""
    for dtype in K.dtypes_for(backend):
        try:
            if (case_index, dtype) not in truths:
                truths[(case_index, dtype)] = K.truth(loss, case, dtype)
            mism = K.check(loss, case, backend, dtype, expected=truths[(case_index, dtype)], budget=args.hang)
        except Exception:  # noqa: BLE001 - a harness/truth error: logged, not a lossc defect
            state["harness_errors"] += 1
            if state["harness_errors"] <= 5:
                print("harness error on\n" + loss.source, file=sys.stderr)
                traceback.print_exc()
            return False
        checks[(kind, backend, str(dtype).removeprefix("torch."))] += 1
        if not mism:
            continue
        known = K.known_defect(loss, backend, mism)
        sig = _signature(kind, backend, mism[0], known)
        failures[sig] += 1
        if failures[sig] <= 1:
            if mism[0].what == "hang":  # (each shrinking step could hang as long: saved as it is)
                small_loss, small_case, final = loss, case, mism
            else:
                small_loss, small_case = K.shrink(loss, case, backend, dtype, mism[0], budget=args.shrink_budget)
                final = K.check(small_loss, small_case, backend, dtype, budget=args.hang) or mism
            fx = K.fixture(small_loss, small_case, backend, dtype, final,
                           xfail=G.AVOIDABLE.get(known) if known else "new defect (see docs/robustness.md)")
            fx["signature"] = sig
            fx["original_source"] = loss.source
            name = f"{kind}_{backend}_{fx['dtype']}_{mism[0].what}_{known or 'new'}_{args.seed}_{it}.json"
            (fixtures / name).write_text(json.dumps(fx, indent=1) + "\n")
            examples[sig] = {"fixture": name, "source": small_loss.source, "mismatch": final[0].__dict__}
        return False  # one failing dtype per call is enough
    return True


def _write(args, counts, checks, failures, examples, harness_errors, start, it) -> None:
    summary = {"seed": args.seed, "commit": _commit(), "minutes": round((time.time() - start) / 60, 2), "iterations": it,
               "avoid_known": args.avoid_known,
               "losses_per_kind_backend": {f"{k}/{b}": n for (k, b), n in sorted(counts.items())},
               "total_losses_x_backends": sum(counts.values()),
               "total_calls_x_dtypes": sum(checks.values()),
               "calls_per_kind_backend_dtype": {f"{k}/{b}/{d}": n for (k, b, d), n in sorted(checks.items())},
               "failures": dict(failures), "examples": examples, "harness_errors": harness_errors}
    Path(args.summary).write_text(json.dumps(summary, indent=1) + "\n")


def _commit() -> str | None:
    """The commit the run's code came from (a run must not share its checkout with edits in progress:
    templates and the runtime are read from disk as the run goes)."""
    import subprocess
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True).stdout.strip() or None
    except (OSError, subprocess.CalledProcessError):
        return None


def markdown(summary: dict) -> str:
    """The summary's counts as a table: per kind, each backend's generated losses / calls x dtypes."""
    kinds = sorted({k.split("/")[0] for k in summary["losses_per_kind_backend"]})
    backends = [b for b in K.BACKENDS if any(k.endswith("/" + b) for k in summary["losses_per_kind_backend"])]
    calls = collections.Counter()
    for key, n in summary["calls_per_kind_backend_dtype"].items():
        kind, backend, _ = key.split("/")
        calls[(kind, backend)] += n
    lines = ["| kind | " + " | ".join(f"{b} (losses / calls x dtypes)" for b in backends) + " |",
             "| --- |" + " --- |" * len(backends)]
    for kind in kinds:
        cells = [f"{summary['losses_per_kind_backend'].get(f'{kind}/{b}', 0)} / {calls[(kind, b)]}" for b in backends]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def merge(summaries: list[dict]) -> dict:
    """The sum of several runs' summaries (runs in parallel or on other days, each with its own seed)."""
    out: dict = {"seeds": [], "minutes": 0.0, "iterations": 0, "losses_per_kind_backend": collections.Counter(),
                 "calls_per_kind_backend_dtype": collections.Counter(), "failures": collections.Counter(),
                 "examples": {}, "harness_errors": 0}
    for s in summaries:
        out["seeds"] += s.get("seeds", [s.get("seed")])
        out.setdefault("commits", [])
        out["commits"] += s.get("commits", [s.get("commit")])
        out["minutes"] = round(out["minutes"] + s["minutes"], 2)
        for key in ("iterations", "harness_errors"):
            out[key] += s[key]
        for key in ("losses_per_kind_backend", "calls_per_kind_backend_dtype", "failures"):
            out[key].update(s[key])
        out["examples"].update(s["examples"])
    for key in ("losses_per_kind_backend", "calls_per_kind_backend_dtype", "failures"):
        out[key] = dict(sorted(out[key].items()))
    out["total_losses_x_backends"] = sum(out["losses_per_kind_backend"].values())
    out["total_calls_x_dtypes"] = sum(out["calls_per_kind_backend_dtype"].values())
    return out


if __name__ == "__main__":
    sys.exit(main())
