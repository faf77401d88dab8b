"""Code generation: a LossSpec -> the text of a self-contained Python module.

The module's skeleton is a jinja2 template; the math comes from the printers;
the runtime (flattening, weights, reductions, autograd) is ``lossc/runtime.py``,
copied verbatim. Nothing from the spec reaches the text unescaped: names are
validated identifiers, every other piece of spec text is a ``repr`` literal or a
comment line.
"""

from __future__ import annotations

import keyword
import textwrap
from dataclasses import replace
from functools import lru_cache

import jinja2
import sympy

from . import __version__
from .errors import LossNameError
from .ir import WEIGHT, LossSpec, class_entry
from .printers.torch import _ScalarPrinter, batch_programs, composite_program, program
from .printers import triton as triton_printer
from .resources import resource

TARGETS = ("torch", "triton", "all")


def class_name(name: str) -> str:
    """``cross_entropy`` -> ``CrossEntropyLoss``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part) + "Loss"


def function_name(name: str) -> str:
    return f"{name}_loss"


def _check_identifier(name: str) -> str:
    if not (name.isidentifier() and name.isascii()) or keyword.iskeyword(name):
        raise LossNameError(f"{name!r} is not a valid identifier")
    return name


def comment_lines(text: str) -> list[str]:
    """Text as lines that are safe behind '# ' (no line break survives inside one)."""
    return [line.replace("\x00", "") for line in str(text).splitlines()] or [""]


@lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(resource("templates"))),
                             autoescape=False, keep_trailing_newline=True, trim_blocks=False,
                             undefined=jinja2.StrictUndefined)
    env.filters["py"] = repr
    return env


@lru_cache(maxsize=1)
def _triton_environment() -> jinja2.Environment:
    """Kernel templates: block tags on lines of their own leave no trace in the output."""
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(resource("templates"))),
                              autoescape=False, keep_trailing_newline=True, trim_blocks=True,
                              lstrip_blocks=True, undefined=jinja2.StrictUndefined)


#: the runtime modules a generated module uses (lossc.<name>): the torch one, and the triton one for the
#: targets "triton" and "all"
RUNTIME = ("runtime",)
TRITON_RUNTIME = ("runtime", "triton_runtime")


@lru_cache(maxsize=None)
def _runtime_text(name: str) -> str:
    from pathlib import Path
    return Path(__file__).with_name(f"{name}.py").read_text()


@lru_cache(maxsize=None)
def _runtime_names(name: str) -> frozenset:
    import importlib
    return frozenset(n for n in vars(importlib.import_module(f"lossc.{name}")) if not n.startswith("__"))


def _with_runtime(text: str, modules: tuple[str, ...], standalone: bool) -> str:
    """A rendered module with its runtime: the runtime modules' text itself (``standalone``: the module
    needs nothing of lossc), else an import of the names it uses from lossc's installed runtime, after a
    check of the runtime's version (a fix to the runtime then reaches modules already written)."""
    marker = "#: lossc runtime\n"
    used = _free_names(text)
    if standalone:
        block = _vendored("\n\n\n".join(_runtime_text(m).rstrip("\n") for m in modules), used)
        return text.replace(marker, block + "\n")  # (one text: the triton runtime reads the torch one's names)
    from .runtime import RUNTIME_VERSION
    lines = [f"import {m}" for m in ("math", "torch") if m in used or m == "torch"]
    lines += ["", "from lossc.runtime import require_runtime", "",
              f"_RUNTIME_VERSION = require_runtime({RUNTIME_VERSION}, __name__)  # (--standalone: no lossc needed)"]
    taken = {"math", "torch", "require_runtime", "_RUNTIME_VERSION"}
    for m in modules:
        names = sorted((used & _runtime_names(m)) - taken)
        taken |= set(names)
        if names:
            lines.append(f"from lossc.{m} import (  # noqa: E402")
            lines += textwrap.wrap(", ".join(names) + ",", 100, initial_indent="    ", subsequent_indent="    ",
                                   break_long_words=False, break_on_hyphens=False)
            lines.append(")")
    return text.replace(marker, "\n".join(lines) + "\n")


def _vendored(text: str, used: set[str]) -> str:
    """The part of a runtime module's text that a module reading ``used`` needs: its header comment, every
    top-level statement that defines no name (imports under ``try``), and the definitions of the used names
    and of the names those read, transitively (a row loss carries no batch or tasks engine)."""
    import ast
    tree = ast.parse(text)
    lines = text.splitlines()
    defined: dict[str, list[int]] = {}
    reads: list[set[str]] = []
    keep: set[int] = set()
    for i, node in enumerate(tree.body):
        names = _defined_names(node)
        for name in names:
            defined.setdefault(name, []).append(i)
        reads.append({n.id for n in ast.walk(node) if isinstance(n, ast.Name)})
        if not names:
            keep.add(i)
    pending = set(used).union(*(reads[i] for i in keep))
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        seen.add(name)
        for i in defined.get(name, ()):
            if i not in keep:
                keep.add(i)
                pending |= reads[i] - seen
    first = tree.body[0].lineno if tree.body else len(lines) + 1
    parts = ["\n".join(lines[:first - 1]).rstrip("\n")]
    for i, node in enumerate(tree.body):
        if i in keep:
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", ())])
            while start > 1 and lines[start - 2].startswith("#"):  # (its comment above it)
                start -= 1
            block = isinstance(node, (ast.FunctionDef, ast.ClassDef))
            parts.append(("\n\n" if block else "") + "\n".join(lines[start - 1:node.end_lineno]))
    return "\n".join(p for p in parts if p).strip("\n")


def _defined_names(node) -> set[str]:
    """The names a top-level statement binds (none for a try or if block: it is always kept)."""
    import ast
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    return set()


def _free_names(text: str) -> set[str]:
    """The names a module's text reads (loads of plain names anywhere in it)."""
    import ast
    return {node.id for node in ast.walk(ast.parse(text)) if isinstance(node, ast.Name)}


def _param_checks(spec: LossSpec) -> tuple[list[str], str, str, str, str]:
    """Lines of _params, its signature, keyword signature, call and packed arguments."""
    printer = _ScalarPrinter({p.symbol: p.name for p in spec.params if p.type == "float"})
    bound = dict(spec.bound)
    sig, checks, packed = [], [], []
    for p in spec.params:
        name = _check_identifier(p.name)
        if p.type == "int":
            sig.append(f"{name}={bound[name]!r}")
            checks.append(f"if {name} != {bound[name]!r}:")
            checks.append(f"    raise LossParamError({spec.name + ': this module was compiled for ' + name + ' = ' + str(bound[name]) + '; compile again for another value'!r})")
        elif p.type == "vector":
            n = bound[p.size]
            default = None if p.default is None else tuple(float(v) for v in
                                                          (p.default if len(p.default) == n else p.default * n))
            sig.append(f"{name}={default!r}")
            checks.append(f"{name} = _vector({spec.name + '.' + name!r}, {name}, {n})")
            packed.append(f"{name}={name}")
        elif p.type == "class":
            sig.append(f"{name}={None if p.default is None else float(p.default)!r}")
            checks.append(f"{name} = _class_vector({spec.name + '.' + name!r}, {name})")
            packed.append(f"{name}={name}")
        else:
            sig.append(f"{name}={float(p.default)!r}" if p.default is not None else name)
            checks.append(f"{name} = _number({spec.name + '.' + name!r}, {name})")
            packed.append(f"{name}={name}")
    for c in spec.constraints:
        names = {s: (s.name.split("[")[0] + "[" + str(int(s.name.split("[")[1][:-1]) - 1) + "]")
                 if "[" in s.name else s.name for s in c.condition.free_symbols}
        printer.names = names
        checks.append(f"if not ({printer.doprint(c.condition)}):")
        message = f"{spec.name}: constraint violated: {c.text}"
        values = ", ".join(f"{n} = {{{n}!r}}" for n in sorted({v.split('[')[0] for v in names.values()}))
        checks.append(f"    raise LossParamError({message!r} + f' ({values})')" if values
                      else f"    raise LossParamError({message!r})")
    call = ", ".join(f"{_check_identifier(p.name)}={p.name}" for p in spec.params)
    keyword_sig = "".join(s + ", " for s in sig)
    if keyword_sig:
        keyword_sig = "*, " + keyword_sig
    else:
        keyword_sig = "*, "
    return checks, ", ".join(sig), keyword_sig, call, ", ".join(packed)


def _function(name: str, inputs: str, prog) -> dict:
    return {"name": name, "inputs": inputs, "lines": prog.lines, "returns": ", ".join(prog.outputs)}


def _layout(spec: LossSpec) -> tuple:
    bound = dict(spec.bound)
    numbers = tuple((p.name, bound[p.size] if p.type == "vector" else None) for p in spec.runtime_params
                    if p.type != "class")
    return numbers + tuple((name, "class") for name in spec.class_vectors)


def _tidy(text: str) -> str:
    """Kernel text without the blank lines the templates' conditionals leave: two before each kernel."""
    lines = [line for line in text.splitlines() if line.strip()]
    out = []
    for line in lines:
        if line.startswith("@triton.jit") and out:
            out += ["", ""]
        out.append(line)
    return "\n".join(out)


def _constants_tuple(constants) -> str:
    """The tuple ``_triton_constants`` returns, ``(k0, k1)`` (``(k0,)`` for one, ``()`` for none)."""
    names = [name for name, _ in constants]
    return "(" + ", ".join(names) + ("," if len(names) == 1 else "") + ")"


def triton_kernels(spec: LossSpec) -> dict:
    """The triton part of a module: the kernels' text, their constants and how to build the launcher."""
    prefix = "_" + _check_identifier(spec.name)
    form = spec.normal_form
    prog = getattr(triton_printer, form.name + "_kernel_program")(spec)
    text = _triton_environment().get_template(f"triton_{form.name}.py.j2").render(program=prog, prefix=prefix,
                                                                                 linear=False)
    if form.batch_sums:
        launcher = (f"_TritonLoss('batch', _triton_constants, batch=({prefix}_batch_sums, {prefix}_batch_grad, "
                    f"{len(prog.sums)})")
    elif form.rows:
        launcher = f"_TritonLoss('row', _triton_constants, tile={prefix}_row_tile, chunked={prefix}_row_chunked"
        if spec.class_vectors:  # their tensors, in the order of the kernels' pointer arguments
            launcher += f", vectors={spec.class_vectors!r}"
    else:
        launcher = f"_TritonLoss('elementwise', _triton_constants, elementwise={prefix}_elementwise"
    return {"kernels": _tidy(text), "constants": prog.constants, "returns": _constants_tuple(prog.constants),
            "launcher": launcher + f", exact_ties={prog.exact_ties!r})"}


def triton_linear_module(spec: LossSpec) -> str:
    """The module of a row loss's linear kernel (lossc.linear's triton engine): the chunked row kernel with its
    logits made from hidden @ weight.T tile by tile and its gradient added into d hidden, d weight, d bias
    (``KERNEL``), its ``_triton_constants`` and the class vectors it reads (``VECTORS``)."""
    prefix = "_" + _check_identifier(spec.name) + "_linear"
    prog = triton_printer.row_kernel_program(spec)
    kernel = _tidy(_triton_environment().get_template("triton_row.py.j2").render(program=prog, prefix=prefix,
                                                                                  linear=True))
    lines = ["#: lossc runtime", "", "", "def _triton_constants(P, C):"]
    lines += [f"    {name} = {code}" for name, code in prog.constants]
    lines += ["    return " + _constants_tuple(prog.constants), "", "",
              "if triton is not None:", textwrap.indent(kernel, "    "), f"    KERNEL = {prefix}_row_chunked",
              "else:", "    KERNEL = None", f"VECTORS = {spec.class_vectors!r}", ""]
    return _with_runtime("\n".join(lines), ("runtime", "triton_runtime"), False)


def triton_supported(spec: LossSpec) -> bool:
    """Whether the triton printer covers this loss: every row (class vectors and soft targets included),
    elementwise and batch loss; not the composite form (tasks), which runs under autograd alone."""
    return spec.normal_form.triton


def unweighted(spec: LossSpec) -> LossSpec:
    """The spec at weight = 1 (what the property checks analyse of a loss reading weight[j])."""
    if WEIGHT not in spec.class_vectors:
        return spec
    ones = {class_entry(WEIGHT): sympy.S.One, class_entry(WEIGHT, "y"): sympy.S.One}
    from .passes import derive
    lowered = spec.with_(expr=spec.expr.xreplace(ones), gradient=None,
                         reductions=tuple(replace(r, body=r.body.xreplace(ones)) for r in spec.reductions))
    return derive(lowered)


def generate_module(spec: LossSpec, target: str = "torch", standalone: bool = False) -> str:
    """The module of a derived LossSpec (``FocalLoss``, ``focal_loss``): ``target`` "torch" (the torch
    engine), "triton" (the triton kernels; the torch reference as the fallback) or "all" (both). It imports
    lossc's runtime, or with ``standalone`` carries it (and needs no lossc)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    _check_identifier(spec.name)
    inputs = spec.normal_form.inputs
    if not inputs:  # (batch and composite: their own modules)
        return _generate_other(spec, target, standalone)
    functions = [_function("_loss", inputs, program(spec, False))]
    if target != "triton":
        functions.append(_function("_loss_and_grad", inputs + ", out, c, _pool=None", program(spec, True)))
    plain = ""
    if WEIGHT in spec.class_vectors:  # the same at weight = 1, for calls without class weights
        bare = unweighted(spec)
        functions.append(_function("_loss_plain", inputs, program(bare, False)))
        if target != "triton":
            functions.append(_function("_loss_and_grad_plain", inputs + ", out, c, _pool=None", program(bare, True)))
        plain = ", plain=(_loss_plain, " + ("_loss_and_grad_plain)" if target != "triton" else "None)")
    checks, signature, signature_kw, call, packed = _param_checks(spec)
    header = _header(spec) + ["  where " + " ".join(comment_lines(r.describe())) for r in spec.gradient.aux]
    triton = triton_kernels(spec) if target != "torch" else None
    return _with_runtime(_environment().get_template("module.py.j2").render(
        header=header, name=spec.name, spec_hash=spec.hash,
        functions=functions, form=spec.form, triton=triton, layout=_layout(spec),
        ignore_default=spec.normal_form.ignore_default,  # (elementwise: no value is ignored unless asked)
        fused="_loss_and_grad" if target != "triton" else "None", plain=plain,
        target=_target(spec), checks=checks, signature=signature, signature_kw=signature_kw, call=call,
        packed=packed, class_name=class_name(spec.name), function_name=function_name(spec.name),
        doc=spec.doc or f"The {spec.name} loss ({spec.kind})."), TRITON_RUNTIME if triton else RUNTIME, standalone)


def _header(spec: LossSpec) -> list[str]:
    header = [f"Generated by lossc {__version__} from loss {spec.name} ({spec.kind}); do not edit.",
              f"spec hash: {spec.hash}",
              "loss: " + " ".join(comment_lines(sympy.sstr(spec.expr)))]
    header += ["  where " + " ".join(comment_lines(r.describe())) for r in spec.reductions]
    header += ["gradient: " + " ".join(comment_lines(sympy.sstr(spec.gradient.expr)))]
    return header


def _generate_other(spec: LossSpec, target: str, standalone: bool) -> str:
    """The module of a batch loss (torch functions, and triton kernels for targets "triton" and "all") or
    of a tasks loss (torch under autograd alone, whatever the target: it computes k scalars)."""
    checks, signature, signature_kw, call, packed = _param_checks(spec)
    common = dict(header=_header(spec), name=spec.name, spec_hash=spec.hash, checks=checks, signature=signature,
                  signature_kw=signature_kw, call=call, packed=packed, class_name=class_name(spec.name),
                  function_name=function_name(spec.name), target=_target(spec), layout=_layout(spec),
                  doc=spec.doc or f"The {spec.name} loss ({spec.kind}).")
    if spec.normal_form.task_losses:
        bound = dict(spec.bound)
        tasks = max(int(s.name[1:]) for s in spec.expr.free_symbols if s.name[:1] == "L" and s.name[1:].isdigit())
        learnables = tuple((_check_identifier(v.name), () if v.size is None else (bound[v.size],), v.init)
                           for v in spec.learnables)
        if not spec.params:  # (``*, **unused`` is no Python)
            common["signature_kw"] = ""
        return _with_runtime(_environment().get_template("module_tasks.py.j2").render(
            program=composite_program(spec), tasks=tasks, learnables=learnables, **common), RUNTIME, standalone)
    programs = batch_programs(spec)
    inputs = {"_terms": "u, t, P", "_value": "B, N, P", "_grad": "u, t, P, B, N, out, c"}
    functions = [_function(name, inputs[name], prog) for name, prog in programs.items()]
    triton = triton_kernels(spec) if target != "torch" else None
    return _with_runtime(_environment().get_template("module_batch.py.j2").render(
        functions=functions, triton=triton, count=len(spec.reductions), **common),
        TRITON_RUNTIME if triton else RUNTIME, standalone)


def _target(spec: LossSpec) -> str:
    from .kinds import KINDS
    return KINDS[spec.kind].target

