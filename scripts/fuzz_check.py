"""Audit `lossc check` on generated one-variable losses for a while: every `proved` verdict is re-examined
on the generator's mpmath truth (tests/checkaudit.py); a contradiction is printed with its source and saved.

    python scripts/fuzz_check.py --minutes 10 --seed 1 [--out fuzz_check_failures]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("LOSSC_NO_CACHE", "1")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--count", type=int, default=None, help="stop after this many losses")
    ap.add_argument("--timeout", type=float, default=10.0, help="lossc check's per-property budget")
    ap.add_argument("--out", type=Path, default=None, help="folder for the sources of contradicted losses")
    args = ap.parse_args(argv)

    import lossc
    from checkaudit import audit
    from checkgen import generate

    end = time.monotonic() + 60 * args.minutes
    kinds, verdicts, found, unknown_reasons = Counter(), Counter(), [], Counter()
    n = 0
    seed = args.seed * 1_000_000
    while time.monotonic() < end and (args.count is None or n < args.count):
        loss = generate(seed + n)
        n += 1
        try:
            report = lossc.check(loss.source, use_cache=False, timeout=args.timeout)
        except lossc.LossError as err:
            print(f"seed {seed + n - 1}: LossError {err}", file=sys.stderr)
            kinds["lossError"] += 1
            continue
        kinds[loss.kind] += 1
        for name, v in report.items():
            verdicts[(name, v.verdict)] += 1
            if v.verdict == "unknown" and v.evidence.startswith("unknown ("):
                unknown_reasons[(name, v.evidence.split(")")[0] + ")")] += 1
        bad = audit(loss, report)
        for prop, why in bad.items():
            found.append({"seed": seed + n - 1, "property": prop, "why": why, "source": loss.source,
                          "evidence": report[prop].evidence})
            print(f"CONTRADICTION seed {seed + n - 1} {prop}: {why}\n{loss.source}{report[prop].evidence}\n",
                  flush=True)
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"seed{seed + n - 1}_{prop}.loss").write_text(loss.source)
    print(json.dumps({"losses": n, "per_kind": dict(kinds),
                      "proved_audited": dict(audit.counts),
                      "verdicts": {f"{k[0]}:{k[1]}": c for k, c in sorted(verdicts.items())},
                      "budget_unknowns": {f"{k[0]}:{k[1]}": c for k, c in unknown_reasons.items()},
                      "contradictions": len(found)}, indent=1))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
