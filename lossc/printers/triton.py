"""The Triton printer, and the kernel programs of the row and elementwise normal forms.

Expressions print to ``triton.language`` code on fp32 values: row scalars are ``[BLOCK_R, 1]``
tensors, per-class values ``[BLOCK_R, BLOCK_C]`` tiles (row form), elements ``[BLOCK]`` vectors
(elementwise form). Only core ``tl`` is used (``libdevice`` raises under ``TRITON_INTERPRET=1``):
the atoms core ``tl`` lacks are the ``_tl_*`` helpers of ``lossc/triton_runtime.py``.

Sub-expressions of parameters and ``C`` alone are not computed in kernels: they are hoisted into
*constants* ``k0, k1, …``, computed on the host in float64 (``_triton_constants(P, C)``) and passed
to the kernel as fp32 scalars.

Per-class inputs besides ``z`` (soft targets ``q``, entries ``v[j]`` of class vectors) are loaded
tile by tile in the sweeps that read them (``ClassLoads``); entries ``v[y]`` once per row.

A kernel program says what the templates (``templates/triton_*.j2``) compute where; the templates
hold the loops, loads, masks and stores and no math of any loss.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import sympy
from sympy.printing.pycode import PythonCodePrinter
from sympy.printing.precedence import precedence

from ..ir import (IS_Y, LSE, NUM_CLASSES, P_J, P_T, Q_J, T, U, Z_J, Z_Y, LossSpec, Reduction, at_target, class_entry,
                  code_name)
from .. import functions
from .torch import _ScalarPrinter, is_truth
from . import argmax_of, print_piecewise, print_quotient

# Integer powers up to this are products (exact); others go through _tl_pow (exp2 / log2).
MAX_INTEGER_POWER = 8
RELATIONS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "==", "!=": "!="}
CLASS_SYMBOLS = frozenset({Z_J, P_J, Q_J, IS_Y})


class _Constants:
    """Scalar sub-expressions (parameters, C) hoisted out of kernels: ``k0 = <host code>``, …"""

    def __init__(self, spec: LossSpec):
        names = {NUM_CLASSES: "C"}
        scalars = {NUM_CLASSES}
        for p in spec.params:
            if p.type == "float":
                names[p.symbol] = f"P.{p.name}"
                scalars.add(p.symbol)
            elif p.type == "vector":
                for i in range(1, dict(spec.bound)[p.size] + 1):
                    names[p.element(i)] = f"P.{p.name}[{i - 1}]"
                    scalars.add(p.element(i))
        self.scalars = scalars
        self.host = _ScalarPrinter(names)
        self.by_expr: dict = {}
        self.lines: list[tuple[str, str]] = []
        self.truths: set = set()  # the constants that hold a truth value (1.0 or 0.0, as every constant a float)

    def name_of(self, expr: sympy.Expr) -> str:
        if expr not in self.by_expr:
            name = f"k{len(self.lines)}"
            self.lines.append((name, f"float({self.host.doprint(expr)})"))
            self.by_expr[expr] = name
            if is_truth(expr):  # (a where nested in a condition: a test of parameters alone, or a where of them)
                self.truths.add(name)
        return self.by_expr[expr]

    def bind(self, symbol: sympy.Symbol, expr: sympy.Expr) -> str:
        """A CSE temporary of scalars only becomes a constant, usable by later constants."""
        name = self.name_of(expr)
        self.host.names[symbol] = name
        self.scalars.add(symbol)
        self.by_expr.setdefault(symbol, name)
        return name


class TritonCodePrinter(PythonCodePrinter):
    """sympy -> ``tl`` expression text; unknown nodes raise instead of printing silently."""

    def __init__(self, names: dict, constants: _Constants):
        super().__init__({"strict": True})
        self.names = names
        self.constants = constants

    def _print(self, expr, **kwargs):
        if isinstance(expr, sympy.Expr) and not expr.is_Number and expr.free_symbols <= self.constants.scalars:
            name = self.constants.name_of(expr)
            return f"({name} != 0.0)" if name in self.constants.truths else name  # (a truth value: a test)
        entry = functions.of(expr)
        if entry is not None and entry.triton is not None:
            arg = self._print(expr.args[0])
            return f"{entry.triton}({arg})" if entry.triton else f"({arg})"  # ("": detach, the value itself)
        return super()._print(expr, **kwargs)

    def _print_Symbol(self, expr):
        if expr not in self.names:
            raise ValueError(f"the triton printer has no value for {expr}")
        return self.names[expr]

    def _print_Function(self, expr):
        raise ValueError(f"the triton printer does not know {type(expr).__name__}")

    def _print_Integer(self, expr):
        return repr(float(expr.p))

    def _print_Rational(self, expr):
        return repr(float(expr))

    def _print_Float(self, expr):
        return repr(float(expr))

    def _print_Infinity(self, expr):
        return 'float("inf")'

    def _print_NegativeInfinity(self, expr):
        return 'float("-inf")'

    def _print_NaN(self, expr):
        return 'float("nan")'

    def _print_Mul(self, expr):
        # the factors of parameters and C alone are one constant, always multiplied: z/T in one place and
        # z * (1/T) in another round differently, and log_softmax(z / T)[y] at its maximum is then an ulp
        # of z/T (0.002 at z/T = 2e4) instead of 0
        scalar = [a for a in expr.args if a.free_symbols <= self.constants.scalars]
        if len(scalar) < len(expr.args) and any(not a.is_Number for a in scalar):
            rest = sympy.Mul(*(a for a in expr.args if a not in scalar))
            constant = self.constants.name_of(sympy.Mul(*scalar))
            return f"{constant}*{self.parenthesize(rest, precedence(expr))}"
        return super()._print_Mul(expr)

    _print_quotient = print_quotient

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        b = self._print(base)
        if exp == sympy.S.Half:
            return f"tl.sqrt_rn({b})"
        if exp == -sympy.S.Half:
            return f"(1.0 / tl.sqrt_rn({b}))"
        if exp.is_Integer and 0 < abs(int(exp)) <= MAX_INTEGER_POWER:
            power = f"({b})" if abs(int(exp)) == 1 else f"_tl_powi({b}, {abs(int(exp))})"  # (1 / (1 + e))
            return power if exp > 0 else f"(1.0 / {power})"
        if not exp.is_Number and exp.free_symbols <= self.constants.scalars:  # one value per launch
            return f"_tl_powk({b}, {self._print(exp)})"
        return f"_tl_pow({b}, {self._print(exp)})"

    def _print_Piecewise(self, expr):
        return print_piecewise(self, expr, "tl.where")

    def _print_Relational(self, expr):
        return f"({self._print(expr.lhs)} {RELATIONS[expr.rel_op]} {self._print(expr.rhs)})"

    def _print_And(self, expr):
        return "(" + " & ".join(f"{self._print(a)}" for a in expr.args) + ")"

    def _print_Or(self, expr):
        return "(" + " | ".join(f"{self._print(a)}" for a in expr.args) + ")"

    def _print_Not(self, expr):
        return f"(~{self._print(expr.args[0])})"

    def _print_BooleanTrue(self, expr):
        return "True"

    def _print_BooleanFalse(self, expr):
        return "False"

    def _pairwise(self, expr, fn: str):
        args = [self._print(a) for a in expr.args]
        text = args[0]
        for other in args[1:]:
            text = f"{fn}({text}, {other}, propagate_nan=tl.PropagateNan.ALL)"
        return text

    def _print_Max(self, expr):
        return self._pairwise(expr, "tl.maximum")

    def _print_Min(self, expr):
        return self._pairwise(expr, "tl.minimum")


# ---------------------------------------------------------------------------------------------
# Kernel programs.


@dataclass(frozen=True)
class KernelReduction:
    """``name = op over the classes (all, or all but y) of body``; ``grad_only``: an aux reduction."""

    name: str
    op: str                  # "sum" | "max" | "lse"
    body: str
    exclude_target: bool
    grad_only: bool


@dataclass(frozen=True)
class ClassLoads:
    """The per-class inputs besides z that a piece of a row kernel reads, loaded tile by tile: the soft
    targets ``q`` (distribution kind: a row of the [N, C, S] target, as z) and the entries ``v[j]`` of
    class vectors (tensors [C], the same for every row) as (pointer, tile name) pairs."""

    q: bool = False
    vectors: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return self.q or bool(self.vectors)


@dataclass(frozen=True)
class KernelPass:
    """One sweep over the classes of a row: per-class ``lines``, then the ``reductions`` (all of them
    for the gradient alone: ``grad_only``). The first pass also finds the row's max and lse."""

    lines: tuple[tuple[str, str], ...]
    reductions: tuple[KernelReduction, ...]
    needs_p: bool
    grad_only: bool
    loads: ClassLoads = ClassLoads()          # what the chunked kernel loads in this sweep besides z


@dataclass(frozen=True)
class RowKernelProgram:
    """What the row kernels compute: constants (host), passes, the loss per row, the gradient."""

    constants: tuple[tuple[str, str], ...]
    needs_lse: bool
    setup: tuple[tuple[str, str], ...]        # row scalars after the lse (p_t)
    passes: tuple[KernelPass, ...]
    loss_lines: tuple[tuple[str, str], ...]
    loss: str
    grad_row_lines: tuple[tuple[str, str], ...]
    grad_lines: tuple[tuple[str, str], ...]   # per class, in the gradient sweep
    grad_other: str                           # dL/dz_c for c != y (every c without a target)
    grad_own: str | None                      # dL/dz_y (a row scalar); None: rows have no target (soft targets)
    grad_needs_p: bool
    exact_ties: bool                          # a max reduction: its argmax is found again by ==
    has_target: bool = True                   # rows have a target class (t), else soft targets (q)
    pointers: tuple[str, ...] = ()            # the class vectors' pointer arguments, in the launcher's order
    targets: tuple[tuple[str, str], ...] = () # (name, pointer): class vector entries at the target, v[y]
    tile_loads: ClassLoads = ClassLoads()     # the tile kernel's loads for the loss (and gradient) ...
    tile_grad_loads: ClassLoads = ClassLoads()  # ... and those for the gradient alone
    grad_loads: ClassLoads = ClassLoads()     # the chunked kernel's loads in the gradient sweep


@dataclass(frozen=True)
class ElementwiseKernelProgram:
    constants: tuple[tuple[str, str], ...]
    loss_lines: tuple[tuple[str, str], ...]
    loss: str
    grad_lines: tuple[tuple[str, str], ...]
    grad: str
    exact_ties: bool = False


ROW_NAMES = {Z_Y: "z_y", LSE: "lse", P_T: "p_t", Z_J: "z", P_J: "p", Q_J: "q"}
# Row scalars computed once the row's lse is known (z_y is loaded before).
ROW_SETUP = ((P_T, "tl.exp(z_y - lse)"),)


def vector_names(name: str) -> dict:
    """Kernel names of a class vector ``name`` (a spec identifier: never with a leading ``_``): its
    pointer argument, its tile of entries v[j] and its entry at the target v[y]."""
    return {"pointer": f"_{name}_ptr", class_entry(name): f"{name}_j", class_entry(name, "y"): f"{name}_y"}


class _KernelEmitter:
    def __init__(self, spec: LossSpec, names: dict):
        self.constants = _Constants(spec)
        self.names = dict(names)
        self.counter = 0

    def printer(self) -> TritonCodePrinter:
        return TritonCodePrinter(self.names, self.constants)

    def stage(self, exprs: list[sympy.Expr]):
        """CSE of exprs: the temporaries [(symbol, value, code)], the code of each expr, and each expr
        in terms of the temporaries. Temporaries of scalars alone become constants instead."""
        temps = sympy.numbered_symbols("_t", start=self.counter)
        replacements, reduced = sympy.cse(exprs, symbols=temps, order="none")
        out = []
        for symbol, value in replacements:
            self.counter += 1
            if value.free_symbols <= self.constants.scalars:
                self.names[symbol] = self.constants.bind(symbol, value)
                continue
            self.names[symbol] = symbol.name
            out.append((symbol, value, self.printer().doprint(value)))
        return out, [self.printer().doprint(e) for e in reduced], reduced


def _lines(temps) -> tuple[tuple[str, str], ...]:
    return tuple((symbol.name, code) for symbol, _, code in temps)


def _split(temps, roots: list[sympy.Expr], class_symbols=CLASS_SYMBOLS):
    """Temporaries needed by roots (in order) and the others; and which of the others are per class."""
    defs = {symbol: value for symbol, value, _ in temps}
    needed: set = set()
    stack = [s for e in roots for s in e.free_symbols]
    while stack:
        s = stack.pop()
        if s in defs and s not in needed:
            needed.add(s)
            stack.extend(defs[s].free_symbols)
    per_class: set = set()
    for symbol, value, _ in temps:
        if value.free_symbols & (set(class_symbols) | per_class):
            per_class.add(symbol)
    first = [t for t in temps if t[0] in needed]
    rest = [t for t in temps if t[0] not in needed]
    return first, [t for t in rest if t[0] not in per_class], [t for t in rest if t[0] in per_class]


def _symbols(exprs) -> set:
    out: set = set()
    for e in exprs:
        out |= e.free_symbols
    return out


def _has_max(reductions: tuple[Reduction, ...]) -> bool:
    return any(r.op == "max" for r in reductions)


def _used_aux(g: sympy.Expr, aux: tuple[Reduction, ...]) -> tuple[Reduction, ...]:
    """The aux reductions the gradient reads (directly or through another): derive may leave some that
    it multiplies by 0 (LDAM's margins, a max over a parameter alone)."""
    by_symbol = {r.symbol: r for r in aux}
    used: set = set()
    stack = [s for s in g.free_symbols if s in by_symbol]
    while stack:
        s = stack.pop()
        if s not in used:
            used.add(s)
            stack.extend(x for x in by_symbol[s].body.free_symbols if x in by_symbol)
    return tuple(r for r in aux if r.symbol in used)


class _MaxBodies:
    """The bodies of a row kernel's max reductions, each one named per-class value ``_hk`` (``_hk_y`` at
    the target), whose line is the body printed on its own: the same text wherever it is computed."""

    def __init__(self, spec: LossSpec, em: "_KernelEmitter", reductions):
        self.em, self.has_target = em, spec.has_target
        self.body = {r.symbol: r.body for r in reductions if r.op == "max"}
        self.symbol = {s: sympy.Symbol(f"_h{i + 1}") for i, s in enumerate(self.body)}
        self.target = {s: sympy.Symbol(f"_h{i + 1}_y") for i, s in enumerate(self.body)}
        for s in self.body:
            em.names[self.symbol[s]], em.names[self.target[s]] = self.symbol[s].name, self.target[s].name
        # the target's values under the names of the class's: the body's text with z_y for z, p_t for p, ...
        self.target_names = dict(em.names)
        self.target_names.update({Z_J: em.names[Z_Y], P_J: em.names[P_T]})
        for v in spec.class_vectors:
            self.target_names[class_entry(v)] = em.names[class_entry(v, "y")]

    def substitute(self, expr: sympy.Expr) -> sympy.Expr:
        """Each argmax test ``Eq(body, R)`` (see passes/gradient.py) as ``Eq(_hk, R)``."""
        tests = {}
        for s, body in self.body.items():
            tests[sympy.Eq(body, s, evaluate=False)] = tests[sympy.Eq(s, body, evaluate=False)] = \
                sympy.Eq(self.symbol[s], s, evaluate=False)
        expr = expr.xreplace(tests)
        return expr.replace(lambda e: argmax_of(e, self.body) is not None,  # (also one sympy unfolded)
                            lambda e: sympy.Piecewise((1, sympy.Eq(self.symbol[argmax_of(e, self.body)],
                                                                   argmax_of(e, self.body), evaluate=False)),
                                                      (0, True)))

    def at_target(self, expr: sympy.Expr) -> sympy.Expr:
        """The tests at the target (``at_target`` of ``Eq(_hk, R)`` leaves ``_hk``) on ``_hk_y``."""
        return expr.xreplace({self.symbol[s]: self.target[s] for s in self.body})

    def values(self) -> list:
        """What the bodies read, at a class and (rows with a target) at the target."""
        return list(self.body.values()) + ([at_target(b) for b in self.body.values()] if self.has_target else [])

    def lines(self, temps, reduced, target: bool = False) -> list:
        """The lines (symbol, value, code) of the bodies that temps and the expressions reduced read."""
        read = _symbols([value for _, value, _ in temps] + list(reduced))
        out = []
        for s, body in self.body.items():
            symbol = (self.target if target else self.symbol)[s]
            if symbol in read:
                printer = self.em.printer()
                if target:
                    printer.names = self.target_names
                out.append((symbol, at_target(body) if target else body, printer.doprint(body)))
        return out


def row_kernel_program(spec: LossSpec) -> RowKernelProgram:
    """The passes of the row kernels: (1) max / lse online, with the reductions of z alone;
    then one pass per level of reductions that need p or earlier reductions (aux reductions of
    the gradient last); then the gradient sweep (the target column by the ``[j=y] = 1,
    z_j -> z_y, p_j -> p_t, v[j] -> v[y]`` substitution of the gradient, exactly as the torch
    program). Soft targets q and class vectors v[j] are loaded tile by tile where the code reads them."""
    names = dict(ROW_NAMES)
    vectors = {v: vector_names(v) for v in spec.class_vectors}
    for v in vectors.values():
        names.update({s: n for s, n in v.items() if s != "pointer"})
    g = spec.gradient.expr
    loss_reductions, aux = spec.reductions, _used_aux(g, spec.gradient.aux)
    for r in loss_reductions + aux:
        names[r.symbol] = code_name(r.symbol)
    em = _KernelEmitter(spec, names)
    class_symbols = CLASS_SYMBOLS | {class_entry(v) for v in vectors}

    def loads(symbols: set, minus: ClassLoads = ClassLoads()) -> ClassLoads:
        return ClassLoads(q=Q_J in symbols and not minus.q,
                          vectors=tuple((n["pointer"], n[class_entry(v)]) for v, n in vectors.items()
                                        if class_entry(v) in symbols and (n["pointer"], n[class_entry(v)])
                                        not in minus.vectors))

    # the pass computing each reduction: after everything its body needs
    done = {Z_Y: 0, Z_J: 0, LSE: 1, P_T: 1, P_J: 1}
    level = {}
    for r in loss_reductions + aux:
        deps = [done.get(s, 0) for s in r.body.free_symbols]
        level[r.symbol] = done[r.symbol] = max([0] + deps) + 1

    # the gradient finds a max reduction's argmax again by == on its body: that body is one named value,
    # printed as one text in every pass that reads it (each pass's CSE would write it its own way: z/(p + 0.5)
    # in the max, z * (1/(p + 0.5)) in the gradient, an ulp apart), and at the target the same text of z_y, p_t
    heads = _MaxBodies(spec, em, loss_reductions + aux)
    g = heads.substitute(g)
    aux = tuple(replace(r, body=heads.substitute(r.body)) for r in aux)
    loss_reductions = tuple(replace(r, body=heads.symbol[r.symbol]) if r.symbol in heads.symbol else r
                            for r in loss_reductions)
    class_symbols |= set(heads.symbol.values())
    other = g.subs(IS_Y, 0)
    own = heads.at_target(at_target(g)) if spec.has_target else None
    everything = [spec.expr, other] + ([own] if own is not None else []) + [r.body for r in loss_reductions + aux] \
        + heads.values()
    used = _symbols(everything)
    needs_lse = bool(used & {LSE, P_T, P_J})
    passes = []
    loss_side, grad_side = set(), set()   # what the tile kernel reads unconditionally, and under NEED_GRAD
    count = max(list(level.values()) + [1 if needs_lse else 0])
    for k in range(1, count + 1):
        members = [r for r in loss_reductions + aux if level[r.symbol] == k]
        temps, bodies, reduced = em.stage([r.body for r in members])
        temps = heads.lines(temps, reduced) + temps
        grad_only = {r.symbol for r in aux}
        reductions = tuple(KernelReduction(names[r.symbol], r.op, body, r.exclude_target, r.symbol in grad_only)
                           for r, body in zip(members, bodies))
        pass_grad_only = (bool(members) and all(r.grad_only for r in reductions)
                          and not (k == 1 and needs_lse))  # the first pass also finds the lse, which the loss needs
        symbols = _symbols([value for _, value, _ in temps] + reduced)
        (grad_side if pass_grad_only else loss_side).update(_symbols([value for _, value, _ in temps]))
        for r, body in zip(reductions, reduced):
            (grad_side if pass_grad_only or r.grad_only else loss_side).update(body.free_symbols)
        passes.append(KernelPass(lines=_lines(temps), reductions=reductions,
                                 needs_p=P_J in _symbols([heads.body.get(r.symbol, r.body) for r in members]),
                                 grad_only=pass_grad_only, loads=loads(symbols)))
    setup = tuple((names[s], code) for s, code in ROW_SETUP if s in used)
    temps, (loss, other_code, *own_code), reduced = em.stage([spec.expr, other] + ([own] if own is not None else []))
    loss_temps, row_temps, class_temps = _split(temps, reduced[:1], class_symbols)
    row_temps = heads.lines(row_temps, reduced[2:], target=True) + row_temps
    class_temps = heads.lines(class_temps, reduced[1:2]) + class_temps
    grad_symbols = _symbols([other] + [v for _, v, _ in class_temps])
    grad_side |= grad_symbols
    tile_loads = loads(loss_side)
    return RowKernelProgram(
        constants=tuple(em.constants.lines), needs_lse=needs_lse, setup=setup, passes=tuple(passes),
        loss_lines=_lines(loss_temps), loss=loss, grad_row_lines=_lines(row_temps),
        grad_lines=_lines(class_temps), grad_other=other_code, grad_own=own_code[0] if own_code else None,
        grad_needs_p=P_J in grad_symbols, exact_ties=_has_max(loss_reductions + aux),
        has_target=spec.has_target, pointers=tuple(n["pointer"] for n in vectors.values()),
        targets=tuple((n[class_entry(v, "y")], n["pointer"]) for v, n in vectors.items()
                      if class_entry(v, "y") in used),
        tile_loads=tile_loads, tile_grad_loads=loads(grad_side, minus=tile_loads), grad_loads=loads(grad_symbols))


def elementwise_kernel_program(spec: LossSpec) -> ElementwiseKernelProgram:
    """Loss and gradient of one element from ``u`` and ``t`` (and the kind's features)."""
    names = {U: "u", T: "t"}
    em = _KernelEmitter(spec, names)
    feature_lines = []
    for feature, definition in spec.features:
        temps, (code,), _ = em.stage([definition])
        feature_lines += _lines(temps)
        feature_lines.append((code_name(feature), code))
        em.names[feature] = code_name(feature)
    temps, (loss, grad), reduced = em.stage([spec.expr, spec.gradient.expr])
    loss_temps, rest, _ = _split(temps, reduced[:1], class_symbols=())
    return ElementwiseKernelProgram(
        constants=tuple(em.constants.lines), loss_lines=tuple(feature_lines) + _lines(loss_temps), loss=loss,
        grad_lines=_lines(rest), grad=grad)


@dataclass(frozen=True)
class BatchKernelProgram:
    """The batch form's two kernels: the per-element terms g_k of the sums (``terms``: their names,
    computed by ``term_lines``), and the gradient ``grad`` of each element from the sums b1 … bk, N."""

    constants: tuple[tuple[str, str], ...]
    term_lines: tuple[tuple[str, str], ...]
    terms: tuple[str, ...]
    grad_lines: tuple[tuple[str, str], ...]
    grad: str
    sums: tuple[str, ...]                      # the names the gradient kernel loads the sums into
    value_lines: tuple[tuple[str, str], ...]   # the loss M(b1 … bk, N), which program 0 of the gradient kernel
    value: str                                 # writes (no host-side arithmetic on the sums)
    exact_ties: bool = False


def batch_kernel_program(spec: LossSpec) -> BatchKernelProgram:
    """The terms of the batch sums (first kernel) and the gradient (second kernel) of a batch loss."""
    from ..ir import BATCH_SIZE
    names = {U: "u", T: "t", BATCH_SIZE: "N"}
    for b in spec.reductions:
        names[b.symbol] = code_name(b.symbol)
    em = _KernelEmitter(spec, names)
    temps, codes, _ = em.stage([b.body for b in spec.reductions])
    terms = tuple(f"g{i + 1}" for i in range(len(codes)))
    term_lines = _lines(temps) + tuple(zip(terms, codes))
    temps, (grad,), _ = em.stage([spec.gradient.expr])
    value_temps, (value,), _ = em.stage([spec.expr])
    return BatchKernelProgram(constants=tuple(em.constants.lines), term_lines=term_lines, terms=terms,
                              grad_lines=_lines(temps), grad=grad,
                              sums=tuple(names[b.symbol] for b in spec.reductions) + ("N",),
                              value_lines=_lines(value_temps), value=value)
