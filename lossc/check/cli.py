"""The ``lossc check`` and ``lossc poly`` commands (registered by lossc/cli.py)."""

from __future__ import annotations

import json
import sys

from ..errors import LossError
from .budget import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT
from .verdict import PROPERTIES

STYLE = {"proved": "bold green", "refuted": "bold red", "plausible": "yellow", "unknown": "dim", "n/a": "dim"}


def _params(args) -> dict:
    from ..cli import _params as parse_params
    return parse_params(args.param)


def cmd_check(args) -> int:
    from . import check
    required = [r.strip() for r in (args.require or "").split(",") if r.strip()]
    unknown = [r for r in required if r not in PROPERTIES]
    if unknown:
        raise LossError(f"--require names unknown propert{'y' if len(unknown) == 1 else 'ies'} "
                        f"{', '.join(unknown)}", hint="properties: " + ", ".join(PROPERTIES))
    report = check(args.spec, timeout=args.timeout, memory_mb=args.memory, **_params(args))
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
        setting = ", ".join(f"{k}={v}" for k, v in report.params.items()) or "no parameters"
        table = Table(title=f"lossc check {report.loss} ({report.kind}; {setting})")
        for column in ("property", "verdict", "reason"):
            table.add_column(column, overflow="fold")
        for name, v in report.items():
            reason = v.reason
            if len(reason) > 160:
                reason = reason[:157] + "..."
            table.add_row(name, f"[{STYLE[v.verdict]}]{v.verdict}[/]", escape(reason))
        Console().print(table)
        if args.verbose:
            for name, v in report.items():
                print(f"\n{name}: {v.verdict}\n{v.evidence}")
    missing = [r for r in required if report[r].verdict != "proved"]
    if missing:
        print(f"required but not proved: {', '.join(f'{r} ({report[r].verdict})' for r in missing)}",
              file=sys.stderr)
        return 1
    return 0


def cmd_poly(args) -> int:
    import sympy

    from . import poly_expansion
    out = poly_expansion(args.spec, order=args.order, **_params(args))
    coeffs = out["coefficients"]
    if args.json:
        print(json.dumps({"loss": args.spec, "params": _params(args), "basis": "(1 - p_t)^j",
                          "loss_in_p_t": out["g"], "integer_powers": out["integer"],
                          "coefficients": {str(j): str(a) for j, a in coeffs.items()},
                          "coefficients_float": {str(j): float(a) for j, a in coeffs.items()},
                          "leading_gradient": out["leading_gradient"]}, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table
    from rich.markup import escape
    table = Table(title=escape(f"PolyLoss coefficients of {args.spec}: L = sum_j alpha_j (1 - p_t)^j"))
    table.add_column("j" if out["integer"] else "power")
    table.add_column("alpha (exact)")
    table.add_column("alpha")
    for j, a in coeffs.items():
        table.add_row(sympy.sstr(j), sympy.sstr(a), f"{float(a):.6g}")
    console = Console()
    console.print(escape(f"L = {out['g']}"))
    if not out["integer"]:
        console.print("non-integer powers of (1 - p_t): the expansion is in (1 - p_t)^(j + gamma); "
                      "the first column gives each power")
    console.print(table)
    console.print(escape(f"leading gradient term: -dL/dp_t = {out['leading_gradient']} + ... as p_t -> 1"))
    return 0


def register(sub) -> None:
    """Add the check and poly subcommands to lossc's argument parser."""
    p = sub.add_parser("check", help="property verdicts: convex, calibrated, proper, symmetric, ...")
    p.add_argument("spec", help="a .loss file or a catalog name")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="parameter value (repeatable)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--require", metavar="PROP,...", help="exit 1 unless each named property is proved")
    p.add_argument("-v", "--verbose", action="store_true", help="print every property's full evidence")
    p.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help=f"time budget per property (default $LOSSC_CHECK_TIMEOUT or {DEFAULT_TIMEOUT:g}); past it: "
                        "unknown (timed out)")
    p.add_argument("--memory", type=float, default=DEFAULT_MEMORY_MB, metavar="MIB",
                   help=f"memory budget per property in MiB (default {DEFAULT_MEMORY_MB:g})")
    p.set_defaults(run=cmd_check)

    p = sub.add_parser("poly", help="PolyLoss coefficients in (1 - p_t)^j of a loss of p_t alone")
    p.add_argument("spec")
    p.add_argument("--order", type=int, default=5)
    p.add_argument("--param", action="append", metavar="NAME=VALUE")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_poly)
