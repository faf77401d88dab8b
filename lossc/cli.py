"""The ``lossc`` command line: compile, grad, catalog, check, poly, plot, bench.

Exit codes: 0 success; 1 a --require'd property is not proved; 2 bad input.
Errors print ``file:line:col``, the line, a caret and a hint; nothing is written on error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from .errors import LossError


def _value(text: str):
    """A --param value: int, float, or a comma-separated list of numbers."""
    items = [t.strip() for t in text.strip("[]()").split(",")]
    values = []
    for item in items:
        try:
            values.append(int(item))
        except ValueError:
            try:
                values.append(float(item))
            except ValueError:
                raise LossError(f"--param value {text!r} is not a number or a list of numbers") from None
    return values if len(values) > 1 or "," in text else values[0]


def _params(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise LossError(f"--param takes NAME=VALUE, got {pair!r}")
        name, value = pair.split("=", 1)
        out[name.strip()] = _value(value)
    return out


def check_writable(path: str) -> None:
    """A LossError (exit 2, before any work) when path's folder does not exist or path is a folder."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise LossError(f"cannot write {path}: no folder {folder}", hint="create the folder first")
    if target.is_dir():
        raise LossError(f"cannot write {path}: it is a folder")


def write_atomic(path: str, text: str) -> None:
    """Write text to path via a temporary file in the same folder and a rename (a LossError if it cannot)."""
    check_writable(path)
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as err:
        raise LossError(f"cannot write {path}: {err.strerror or err}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, target)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise LossError(f"cannot write {path}: {err.strerror or err}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_compile(args) -> int:
    from . import api
    params = _params(args.param)
    if args.output:
        check_writable(args.output)
    text = api.generate(args.spec, target=args.target, standalone=args.standalone, **params)
    # Runtime parameters given on the command line become the module's defaults.
    spec = api.parse(args.spec, **params)
    for p in spec.runtime_params:
        if p.name in params:
            api.loss(spec, **{p.name: params[p.name]})  # validates the value against the constraints
    text = _with_defaults(text, spec, params, args.target, args.standalone)
    if args.output:
        write_atomic(args.output, text)
        print(f"wrote {args.output} ({api.class_name(spec.name)}, {api.function_name(spec.name)})")
    else:
        sys.stdout.write(text)
    return 0


def _with_defaults(text: str, spec, params: dict, target: str = "torch", standalone: bool = False) -> str:
    """Regenerate with --param values as the defaults of the runtime parameters."""
    if not any(p.name in params for p in spec.runtime_params):
        return text
    from .codegen import generate_module
    from .ir import Param
    new_params = []
    for p in spec.params:
        if p.name in params and p.type == "float":
            p = Param(p.name, p.type, float(params[p.name]), p.size)
        elif p.name in params and p.type == "vector":
            value = params[p.name]
            p = Param(p.name, p.type, tuple(float(v) for v in (value if isinstance(value, list) else [value])),
                      p.size)
        new_params.append(p)
    return generate_module(spec.with_(params=tuple(new_params)), target, standalone)


def cmd_grad(args) -> int:
    import sympy

    from . import api
    from .ir import LSE, P_T, Z_Y, BatchSum
    from .kinds import KINDS
    from .passes.gradient import written_gradient
    spec = api.parse(args.spec, **_params(args.param))
    if not args.stable and spec.written is not None:  # the loss as written, and the gradient of that
        spec = spec.written.with_(gradient=written_gradient(spec.written))
    names = _display_names(spec, KINDS[spec.kind])
    # (the stable forms hold z_y - lse where the user wrote log(p_t): shown as written)
    readable = (lambda e: e.subs(Z_Y, LSE + sympy.log(P_T)).xreplace(names)) if spec.normal_form.rows and args.stable \
        else (lambda e: e.xreplace(names))
    def latex(e) -> str:
        e = readable(e)
        return sympy.latex(e, symbol_names={s: _latex_name(s.name) for s in e.free_symbols})
    show = latex if args.latex else (lambda e: sympy.pretty(readable(e), use_unicode=True))

    def describe(r) -> str:
        if args.latex:
            index = "i" if isinstance(r, BatchSum) else r"j \ne y" if r.exclude_target else "j"
            body = latex(r.body)
            op = {"sum": rf"\sum_{{{index}}} {body}", "max": rf"\max_{{{index}}} {body}",
                  "lse": rf"\log \sum_{{{index}}} e^{{{body}}}"}[r.op]
            return f"{latex(r.symbol)} = {op}"
        return f"{readable(r.symbol)} = " + r.describe().split(" = ", 1)[1].replace(
            sympy.sstr(r.body), sympy.sstr(readable(r.body)))
    print(f"{spec.name} ({spec.kind}, {spec.form} form{', stable rewrites' if args.stable else ''})")
    print("\nloss =")
    print(show(spec.expr))
    for r in spec.reductions:
        print(("\n" if args.latex else "\n  ") + describe(r))
    inputs = {v: k for k, v in KINDS[spec.kind].names.items() if isinstance(v, sympy.Symbol)}
    variable = spec.normal_form.gradient_of
    if variable is None:
        from .ir import U
        variable = f"dL/d{inputs.get(U, 'u')}"
    print(f"\n{variable} =")
    print(show(spec.gradient.expr))
    for r in spec.gradient.aux:
        print(("\n" if args.latex else "\n  ") + describe(r))
    return 0


def _latex_name(name: str) -> str:
    """A displayed symbol's LaTeX: z[j] -> z_{j}, lse(z) -> \\operatorname{lse}(z), [j=y] -> [j = y]."""
    import re
    if name == "[j=y]":
        return name
    call = re.fullmatch(r"([A-Za-z]+)\((\w+)\)", name)
    if call:
        return rf"\operatorname{{{call[1]}}}({call[2]})"
    entry = re.fullmatch(r"(\w+)\[(\w+)\]", name)
    if entry:
        base = entry[1] if len(entry[1]) == 1 else rf"\mathrm{{{entry[1]}}}"
        return f"{base}_{{{entry[2]}}}"
    words = re.fullmatch(r"([A-Za-z]+)(\d+)", name)
    if words:  # R1, A1, B1
        return f"{words[1]}_{{{words[2]}}}"
    import sympy
    return sympy.latex(sympy.Symbol(name))


def _display_names(spec, kind) -> dict:
    """Internal symbols shown as the kind's names (f, y, m, s, N) or their labels (R1, A1, B1)."""
    import sympy

    from .ir import INTERNAL, is_internal
    exprs = [spec.expr, spec.gradient.expr] + [r.body for r in spec.reductions + spec.gradient.aux]
    symbols = set().union(*(e.free_symbols for e in exprs)) | {r.symbol for r in spec.reductions + spec.gradient.aux}
    by_symbol = {v: k for k, v in kind.names.items() if isinstance(v, sympy.Symbol)}
    return {s: sympy.Symbol(by_symbol.get(s, s.name[len(INTERNAL):]), **s.assumptions0)
            for s in symbols if is_internal(s)}


def cmd_catalog(args) -> int:
    from . import api
    entries = api.catalog()
    if args.name:
        entries = [e for e in entries if e.name == args.name]
        if not entries:
            from .errors import LossNameError, suggest
            from .frontend import catalog_names
            raise LossNameError(f"no catalog loss named {args.name}", hint=suggest(args.name, catalog_names()))
    if args.json:
        data = [e.as_dict() for e in entries]
        print(json.dumps(data[0] if args.name else data, indent=2))
        return 0
    if args.name:
        print(api.source(args.name))
        return 0
    from rich.console import Console
    from rich.table import Table
    table = Table(title=f"lossc catalog ({len(entries)} losses)")
    for column in ("name", "kind", "parameters", "citation"):
        table.add_column(column, overflow="fold")
    for e in entries:
        params = ", ".join([f"{k}={v}" for k, v in e.params.items()]
                           + [f"{k}[{v['size']}]={v['default']}" for k, v in e.vector_params.items()])
        table.add_row(e.name, e.kind, params, e.citation)
    Console().print(table)
    return 0


def cmd_plot(args) -> int:
    from .plot import plot
    check_writable(args.output)
    plot(args.spec, args.output, _params(args.param))
    print(f"wrote {args.output}")
    return 0


def cmd_bench(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from . import api, bench
    params = _params(args.param)
    api.parse(args.spec, **params)  # a bad spec is reported before any progress bar shows
    err = Console(stderr=True)
    columns = (TextColumn("measuring {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task(args.spec, total=None)

        def advance(n=1):
            progress.advance(task, n)
        per = bench.steps_per_variant(args.repeats)
        lossc_rows = ((args.backend in ("torch", "all")) + (args.backend in ("triton", "all"))) * (1 + args.inplace)
        progress.update(task, total=per * (2 + lossc_rows))
        result = bench.run(args.spec, shape=args.shape, dtype=args.dtype, backend=args.backend,
                           repeats=args.repeats, params=params, progress=advance, inplace=args.inplace)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return 0
    out = Console()
    out.print(bench.table(result))
    for line in bench.notes(result):
        out.print(line, highlight=False, markup=False)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lossc", description="A compiler for loss functions.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("compile", help="write the self-contained PyTorch module of a loss")
    p.add_argument("spec", help="a .loss file or a catalog name")
    p.add_argument("-o", "--output", help="output .py file (default: stdout)")
    p.add_argument("--target", default="torch", choices=("torch", "triton", "all"))
    p.add_argument("--standalone", action="store_true",
                   help="carry lossc's runtime in the module, so that it needs only torch (default: it imports "
                        "the installed lossc's runtime, and checks its version)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="parameter value (repeatable)")
    p.set_defaults(run=cmd_compile)

    p = sub.add_parser("grad", help="print the loss and its symbolic gradient, as written")
    p.add_argument("spec")
    p.add_argument("--latex", action="store_true", help="LaTeX instead of pretty text")
    p.add_argument("--stable", action="store_true",
                   help="the forms lossc computes: after its stable rewrites (logratio, online max, …)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE")
    p.set_defaults(run=cmd_grad)

    p = sub.add_parser("catalog", help="list the built-in losses, or show one")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=cmd_catalog)

    p = sub.add_parser("plot", help="draw losses and their gradients vs p_t / margin / logit / residual / "
                                    "one batch score / a learnable")
    p.add_argument("spec", nargs="+", help=".loss files or catalog names (one kind)")
    p.add_argument("-o", "--output", required=True, help="output .png (or .svg, .pdf)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE",
                   help="parameter value, applied to every loss that has the parameter (repeatable)")
    p.set_defaults(run=cmd_plot)

    p = sub.add_parser("bench", help="time forward+backward and peak memory of a loss against eager PyTorch "
                                     "and torch.compile")
    p.add_argument("spec", help="a .loss file or a catalog name")
    p.add_argument("--shape", help="N,C for multiclass/distribution losses, or N,C,d1,... (a segmentation "
                                   "map: 8,19,512,512) (default 1024,8192 on the CPU, 4096,32000 on a GPU), "
                                   "N elements otherwise (default 2^20 on the CPU, 2^24 on a GPU)")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16", "float64"))
    p.add_argument("--backend", default="all", choices=("torch", "triton", "reference", "all"),
                   help="lossc backends to time besides eager and compile (all: torch, and triton on a GPU; "
                        "reference: eager and compile only)")
    p.add_argument("--repeats", type=int, default=10, metavar="K", help="timed steps on the CPU (median)")
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="parameter value (repeatable)")
    p.add_argument("--inplace", action="store_true",
                   help="also time each lossc backend with inplace_grad=True (gradient over the input)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(run=cmd_bench)

    from .check.cli import register
    register(sub)  # check, poly
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except LossError as err:
        print(err.render(), file=sys.stderr)
        return 2
    except RecursionError:
        print("error: the input is nested too deeply", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `lossc grad focal | head`: the reader has gone; what it read was whole
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error at exit's flush)
        return 0


if __name__ == "__main__":
    sys.exit(main())
