"""The PyTorch printer, and the programs (lists of assignments) of each normal form.

Tensors are row columns ``[m, 1]`` (row scalars) or ``[m, C]`` (per class) in the row
form and ``[n]`` in the elementwise form; parameters and ``C`` are Python numbers,
so sub-expressions of parameters alone are printed with ``math``.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import sympy
from sympy.logic.boolalg import Boolean
from sympy.printing.precedence import precedence
from sympy.printing.pycode import PythonCodePrinter
from sympy.printing.pytorch import TorchPrinter

from .. import functions
from ..ir import (BATCH_SIZE, LSE, NUM_CLASSES, P_J, P_T, Q_J, T, U, Z_J, Z_Y, IS_Y, LossSpec, Reduction, at_target,
                  class_entry, class_symbols, code_name, per_class)
from . import argmax_of, print_computed, print_piecewise, print_quotient


def is_truth(expr, booleans=frozenset()) -> bool:
    """Whether expr is a truth value: a test, a logic operation, True/False, or one of ``booleans`` (the
    CSE temporaries known to hold one; a sympy Symbol is a Boolean too, so no other symbol counts), or a
    where choosing between truth values (sympy folds ITE(c, Ne(a, 0), Ne(b, 0)) into such a Piecewise)."""
    if isinstance(expr, sympy.Piecewise):
        return all(is_truth(value, booleans) for value, _ in expr.args)
    return isinstance(expr, Boolean) and not isinstance(expr, sympy.Symbol) or expr in booleans


def _symbol_code(names: dict, symbol: sympy.Symbol) -> str:
    """A symbol's code: its name in ``names``, else its own name when that is a code identifier (CSE
    temporaries); an internal symbol without a code name is a printer bug, never printed as is."""
    if symbol in names:
        return names[symbol]
    if not symbol.name.isidentifier():
        raise ValueError(f"the torch printer has no code name for {symbol}")
    return symbol.name


class _ScalarPrinter(PythonCodePrinter):
    """Python-number expressions (parameters, C)."""

    def __init__(self, names: dict):
        super().__init__({"fully_qualified_modules": True, "strict": True})
        self.names = names

    def _print_Symbol(self, expr):
        return _symbol_code(self.names, expr)

    def _print_Function(self, expr):
        entry = functions.of(expr)
        if entry is not None and entry.scalar is not None:
            return "(" + entry.scalar.format(*[self._print(a) for a in expr.args[:entry.arity]]) + ")"
        return super()._print_Function(expr)

    _print_quotient = print_quotient
    _print_computed = print_computed


class TorchCodePrinter(TorchPrinter):
    """sympy -> torch expression text; unknown nodes raise instead of printing silently."""

    def __init__(self, names: dict, scalars: set, like: str | None = None, booleans=frozenset(), argmax=None,
                 classwise=frozenset(), autograd: bool = False):
        super().__init__({"strict": True})
        self.autograd = autograd  # code run under autograd (the reference backend): see _masked_branch
        self.names = names
        self.scalars = scalars
        self.argmax = argmax or {}  # a max reduction's symbol -> the tensor of its body (the max was taken over)
        self.classwise = classwise  # CSE temporaries with a value per class
        self.like = like  # a tensor of the compute dtype: numbers alone take it (see _print_Piecewise)
        self.booleans = booleans  # CSE temporaries whose value is a truth value (their symbols are Exprs)
        self.scalar_printer = _ScalarPrinter(names)

    def _is_scalar(self, expr) -> bool:
        return isinstance(expr, sympy.Expr) and expr.free_symbols <= self.scalars

    def _is_classwise(self, expr) -> bool:
        """Whether expr has a value per class: it reads a class symbol or a classwise CSE temporary."""
        return per_class(expr) or bool(expr.free_symbols & self.classwise)

    def _is_boolean(self, expr) -> bool:
        return is_truth(expr, self.booleans)

    def _print(self, expr, **kwargs):
        if self._is_scalar(expr) and not isinstance(expr, sympy.Symbol) and not expr.is_Number:
            return "(" + self.scalar_printer.doprint(expr) + ")"
        if self._is_scalar_condition(expr) and not isinstance(expr, sympy.Symbol):
            return "(" + self.scalar_printer.doprint(expr) + ")"  # parameters alone: a Python bool
        entry = functions.of(expr)
        if entry is not None and entry.torch is not None:
            return f"{entry.torch}({', '.join(self._print(a) for a in expr.args[:entry.arity])})"
        return super()._print(expr, **kwargs)

    def _print_Symbol(self, expr):
        return _symbol_code(self.names, expr)

    _print_quotient = print_quotient
    _print_computed = print_computed

    def _pairwise(self, expr, tensor_fn: str, clamp: str):
        args = list(expr.args)
        scalars = [a for a in args if self._is_scalar(a)]
        tensors = [a for a in args if not self._is_scalar(a)]
        text = self._print(tensors[0])
        for other in tensors[1:]:
            text = f"{tensor_fn}({text}, {self._print(other)})"
        if scalars:
            bound = scalars[0] if len(scalars) == 1 else type(expr)(*scalars)
            text = f"{clamp}({text}, {self.scalar_printer.doprint(bound)})"
        return text

    def _print_Max(self, expr):
        return self._pairwise(expr, "torch.maximum", "torch.clamp_min")

    def _print_Min(self, expr):
        return self._pairwise(expr, "torch.minimum", "torch.clamp_max")

    def _argmax_indicator(self, expr) -> str | None:
        """The indicator [j is an argmax of R] (the gradient's weight of a max reduction), read off the very
        tensor the max was taken over: compared with a body sympy has rewritten (lse - 2 z_y where the max
        took (lse - z_j) - z_y, 5 sqrt(10)/4 where it took pow(2.5, 1.5)) it is an ulp apart, and no class is
        found. At the target (no per-class symbol left) its entry is gathered, not recomputed."""
        r = argmax_of(expr, self.argmax)
        if r is None:
            return None
        test = f"torch.eq({self.argmax[r]}, {self._print(r)})"
        if not self._is_classwise(expr):
            test = f"_at_target({test}, t)"
        return f"torch.where({test}, 1, {self._tensor_value(sympy.S.Zero) if self.like else '0.0'})"

    def _print_Piecewise(self, expr):
        indicator = self._argmax_indicator(expr)
        if indicator is not None:
            return indicator
        if any(self._is_scalar_condition(cond) for _, cond in expr.args[:-1]):
            # a condition on parameters alone (where(k > 0, r^2, abs(r))) is a Python test, not a tensor
            # a value of numbers and parameters alone is a tensor of the compute dtype, so that the
            # function around it (tanh(where(k > 0, 1, f))) takes a tensor whichever branch runs
            # in a class reduction's body, each branch has the row's shape [N, C]: lse (one per row) where
            # the other branch is q[j] would otherwise be summed once, not C times
            per_row = self._is_classwise(expr)
            shaped = ((lambda v: f"_per_class({self._tensor_value(v)}, {self._print(Z_J)})"
                       if per_row and not self._is_classwise(v) else self._tensor_value(v)))
            *pieces, (default, _) = expr.args
            text = shaped(default)
            for value, cond in reversed(pieces):
                if self._is_scalar_condition(cond):
                    text = f"({shaped(value)} if {self.scalar_printer.doprint(cond)} else {text})"
                else:
                    text = f"torch.where({self._print(cond)}, {self._print(value)}, {text})"
            return text
        last = None
        if all(self._is_scalar(value) or self._is_scalar_condition(value) for value, _ in expr.args):
            # torch.where of numbers alone gives the default dtype: the last one takes the input's instead
            last = self._tensor_value(expr.args[-1][0])
        if self.autograd and any(_steep(value, self.scalars) for value, _ in expr.args):
            return self._masked_piecewise(expr)
        return print_piecewise(self, expr, "torch.where", last)

    def _masked_piecewise(self, expr) -> str:
        """torch.where(c, f(where(c, x, x.detach())), ..): under autograd, the inputs x of a branch whose
        derivative may be infinite pass a gradient only where that branch is taken. torch.where hands the
        branch not taken a gradient of 0, but autograd still multiplies it by the branch's derivative:
        where(r < 2, r^12, r^2) at r = 7416 in float32 met 0 * 12 r^11 = 0 * inf = NaN."""
        conds = [self._print(c) for _, c in expr.args[:-1]]
        text = None
        for i in reversed(range(len(expr.args))):
            value = expr.args[i][0]
            taken = " & ".join([f"~({c})" for c in conds[:i]] + ([f"({conds[i]})"] if i < len(conds) else []))
            code = self._masked_branch(value, taken) if _steep(value, self.scalars) else self._print(value)
            text = code if text is None else f"torch.where({conds[i]}, {code}, {text})"
        return text

    def _masked_branch(self, value, taken: str) -> str:
        """value printed with each of its inputs x as torch.where(taken, x, x.detach())."""
        saved = dict(self.names)
        try:
            for s in value.free_symbols - self.scalars - _TARGETS:
                code = _symbol_code(saved, s)
                self.names[s] = f"torch.where({taken}, {code}, {code}.detach())"
            return self._print(value)
        finally:
            self.names.clear()
            self.names.update(saved)

    def _tensor_value(self, value) -> str:
        """A where's value as a tensor when it is of parameters alone: a number in the compute dtype, a
        truth value (a where nested in a condition) a bool tensor, so that whichever branch a Python test
        picks, the where is a tensor of one dtype (never a Python bool that torch.where refuses as its
        condition, nor a number where a bool is wanted)."""
        text = self._print(value)
        if not self.like or not (self._is_scalar(value) or self._is_scalar_condition(value)):
            return text
        return f"_flag({text}, {self.like})" if self._is_boolean(value) else f"_constant({text}, {self.like})"

    def _is_scalar_condition(self, cond) -> bool:
        """A truth value of parameters alone (True and False too): a Python bool."""
        return self._is_boolean(cond) and cond.free_symbols <= self.scalars

    def _print_Mul(self, expr):
        # a power x^-n (n >= 2) of a tensor stays a negative power, torch.pow(x, -n), not 1 / torch.pow(x, n):
        # in float32 x^n overflows where x^-n only underflows, and autograd of 1 / x^n then meets n x^(n-1) =
        # inf times 0 (r * ((0.5 + (r^2)^2.5)^(-2))^2 at r = 666: a NaN gradient, truth 2e-56)
        keep = [a for a in expr.args if a.is_Pow and a.exp.is_Integer and a.exp <= -2 and not self._is_scalar(a.base)]
        if not keep:
            return super()._print_Mul(expr)
        rest = sympy.Mul(*(a for a in expr.args if a not in keep))
        powers = "*".join(self._print(a) for a in keep)
        if rest == 1:
            return powers
        if rest == -1:
            return f"-{powers}"
        return f"{self.parenthesize(rest, precedence(expr))}*{powers}"

    def _print_Pow(self, expr, rational=False):
        base, exp = expr.args
        if exp == -1:
            return f"torch.reciprocal({self._print(base)})"
        if exp == 2:
            return f"torch.square({self._print(base)})"
        if self._is_scalar(base):
            return f"torch.pow({self.scalar_printer.doprint(base)}, {self._print(exp)})"
        if not self._is_scalar(exp):
            return f"torch.pow({self._print(base)}, {self._print(exp)})"
        fn = "torch.pow" if exp.is_integer else "_pow"  # _pow: a finite derivative at 0
        return f"{fn}({self._print(base)}, {self.scalar_printer.doprint(exp)})"

    def _print_Rational(self, expr):
        return repr(float(expr)) if expr.q != 1 else str(expr.p)

    def _print_Relational(self, expr):
        op = {"<": "torch.lt", "<=": "torch.le", ">": "torch.gt", ">=": "torch.ge",
              "==": "torch.eq", "!=": "torch.ne"}[expr.rel_op]
        lhs, rhs = expr.args
        if self._is_scalar_condition(expr):  # parameters alone: a Python bool
            return "(" + self.scalar_printer.doprint(expr) + ")"
        if self._is_scalar(lhs):  # torch.lt needs a tensor first
            flipped = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}[expr.rel_op]
            return self._print(sympy.Rel(rhs, lhs, flipped))
        return f"{op}({self._print(lhs)}, {self._print(rhs)})"

    def _print_And(self, expr):  # (of parameters alone, _print printed it as a Python test)
        return " & ".join(f"({self._tensor_value(a)})" for a in expr.args)

    def _print_Or(self, expr):
        return " | ".join(f"({self._tensor_value(a)})" for a in expr.args)

    def _print_Not(self, expr):
        return f"~({self._print(expr.args[0])})"


_TARGETS = frozenset({T, Q_J, IS_Y})  # (no gradient reaches them)


def _steep(value: sympy.Expr, scalars: set) -> bool:
    """Whether autograd of value may meet an infinite derivative at finite inputs: an integer power x^n of
    an input with n >= 3 or n < 0 (12 r^11 overflows in float32 at r = 2e3, 1/x at 0) or with an input as
    exponent, exp, expm1, sinh, cosh (overflow), log, log1p (at 0, -1). (x^2's 2x overflows only past x's
    own range; a fractional power is _pow, whose derivative is 0 where no gradient arrives.)"""
    inert = scalars | _TARGETS

    def steep(n) -> bool:
        if not isinstance(n, sympy.Expr) or n.free_symbols <= inert:
            return False
        if isinstance(n, sympy.Pow):
            if not n.exp.free_symbols <= inert:
                return True
            return n.exp.is_Integer and (n.exp >= 3 or n.exp < 0)
        return isinstance(n, (sympy.exp, sympy.log, sympy.sinh, sympy.cosh)) or type(n).__name__ in ("expm1", "log1p")

    return any(steep(n) for n in sympy.preorder_traversal(value))


# ---------------------------------------------------------------------------------------------
# Programs: the statements of the generated functions.


@dataclass(frozen=True)
class Program:
    """Assignments ``(name, code)`` in order; ``outputs`` name the results."""

    lines: tuple[tuple[str, str], ...]
    outputs: tuple[str, ...]


ROW_NAMES = {Z_Y: "z_y", LSE: "lse", P_T: "p_t", Z_J: "z", P_J: "p", Q_J: "q", NUM_CLASSES: "C"}
# What computes each row-form symbol from z [m, C] and t [m] (and which symbols it needs). Every class
# reduction and target gather is a runtime helper (``_row_sum``, ``_at_target``, ...): plain torch, or a
# local reduction plus an all-reduce when the classes are split over a process group (class_group).
ROW_SETUP = (
    (NUM_CLASSES, "_num_classes(z)", ()),
    (Z_Y, "_at_target(z, t)", ()),
    (LSE, "_row_lse(z)", ()),
    (P_T, "torch.exp(z_y - lse)", (Z_Y, LSE)),
    (P_J, "torch.exp(z - lse)", (LSE,)),
)
REDUCE = {"sum": ("_row_sum({})", "0.0"),
          "max": ("_row_max({})", "-math.inf"),
          "lse": ("_row_lse({})", "-math.inf")}


def _names(spec: LossSpec) -> tuple[dict, set]:
    names = dict(ROW_NAMES) if spec.normal_form.rows else {U: "u", T: "t", BATCH_SIZE: "N"}
    scalars = {NUM_CLASSES}
    for feature, _ in spec.features:
        names[feature] = code_name(feature)
    for p in spec.params:
        if p.type == "float":
            names[p.symbol] = f"P.{p.name}"  # attributes: never clash with locals
            scalars.add(p.symbol)
        elif p.type == "vector":
            n = dict(spec.bound)[p.size]
            for i in range(1, n + 1):
                names[p.element(i)] = f"P.{p.name}[{i - 1}]"
                scalars.add(p.element(i))
    for name in spec.class_vectors:  # a tensor [C]; its target entry gathered per row
        names[class_entry(name)] = f"P.{name}"
        names[class_entry(name, "y")] = f"_{name}_y"
    for r in spec.reductions + (spec.gradient.aux if spec.gradient else ()):
        names[r.symbol] = code_name(r.symbol)
    return names, scalars


class _Emitter:
    """Collects assignments, with common subexpressions shared within each stage."""

    def __init__(self, spec: LossSpec, like: str | None = None, autograd: bool = True):
        self.autograd = autograd  # the code runs under autograd (not a fused loss-and-gradient program)
        self.names, self.scalars = _names(spec)
        self.like = like or spec.normal_form.like
        self.lines: list[tuple[str, str]] = []
        self.booleans: set = set()  # the temporaries holding truth values
        self.argmax: dict = {}  # a max reduction's symbol -> the name of the tensor it was taken over
        self.classwise: set = set()  # the temporaries with a value per class
        self.counter = 0
        self.planned: dict | None = None

    def printer(self) -> TorchCodePrinter:
        return TorchCodePrinter(self.names, self.scalars, self.like, self.booleans, self.argmax, self.classwise,
                                self.autograd)

    def plan(self, exprs: list[sympy.Expr]) -> None:
        """One CSE over every expression the later stages will ask for: a subexpression shared by a
        reduction's body and the gradient is then computed once, when the first of them needs it."""
        temps = sympy.numbered_symbols("_t", start=self.counter)
        replacements, reduced = sympy.cse(exprs, symbols=temps, order="none")
        self.counter += len(replacements)
        self.planned = dict(replacements)
        self.order = [symbol for symbol, _ in replacements]
        self.reduced = dict(zip(exprs, reduced))

    def _emit(self, symbol: sympy.Symbol, value: sympy.Expr) -> None:
        if value.free_symbols <= self.scalars:
            self.scalars.add(symbol)
        if is_truth(value, self.booleans):
            self.booleans.add(symbol)
        if per_class(value) or value.free_symbols & self.classwise:
            self.classwise.add(symbol)
        self.names[symbol] = symbol.name
        self.lines.append((symbol.name, self.printer().doprint(value)))

    def stage(self, exprs: list[sympy.Expr]) -> list[str]:
        """Emit the CSE temporaries exprs need (the planned ones not emitted yet, else their own);
        return the code of each."""
        if self.planned is not None and all(e in self.reduced for e in exprs):
            reduced = [self.reduced[e] for e in exprs]
            needed, stack = set(), [s for e in reduced for s in e.free_symbols]
            while stack:
                symbol = stack.pop()
                if symbol in self.planned and symbol not in needed:
                    needed.add(symbol)
                    stack.extend(self.planned[symbol].free_symbols)
            for symbol in [s for s in self.order if s in needed and s not in self.names]:
                self._emit(symbol, self.planned[symbol])
            return [self.printer().doprint(e) for e in reduced]
        temps = sympy.numbered_symbols("_t", start=self.counter)
        replacements, reduced = sympy.cse(exprs, symbols=temps, order="none")
        for symbol, value in replacements:
            self.counter += 1
            self._emit(symbol, value)
        return [self.printer().doprint(e) for e in reduced]

    def assign(self, name: str, code: str) -> None:
        self.lines.append((name, code))


def _needed(exprs) -> set:
    out: set = set()
    for e in exprs:
        out |= e.free_symbols
    return out


def _row_setup(em: _Emitter, spec: LossSpec, needed: set) -> None:
    closure = set(needed)
    for symbol, _, deps in reversed(ROW_SETUP):
        if symbol in closure:
            closure |= set(deps)
    for symbol, code, _ in ROW_SETUP:
        if symbol in closure:
            em.assign(em.names[symbol], code)
    _class_setup(em, spec, needed)


def _class_setup(em: _Emitter, spec: LossSpec, needed: set) -> None:
    """The soft targets q (distribution kind) and the target entries of class vectors."""
    if Q_J in needed:
        em.assign("q", "t")
    for name in spec.class_vectors:
        if class_entry(name, "y") in needed:
            em.assign(f"_{name}_y", f"_at_target(P.{name}, t)")


def _reductions(em: _Emitter, reductions: tuple[Reduction, ...], in_place: bool, softmax_into=None) -> None:
    """The class reductions; with ``in_place`` (not under autograd), an exclude-target body has its
    target entry overwritten in place (on a fresh tensor), else replaced out of place. Reductions whose
    bodies need no other pending one share their subexpressions (nfl's (1 - p_j)^gamma, once).
    ``softmax_into``: an lse reduction whose body goes into ``out``, left there as its softmax."""
    pending = list(reductions)
    while pending:
        waiting = {r.symbol for r in pending}
        ready = [r for r in pending if not r.body.free_symbols & waiting] or pending[:1]
        pending = [r for r in pending if r not in ready]
        for r, body in zip(ready, em.stage([r.body for r in ready])):
            if r is softmax_into:
                em.assign(em.names[r.symbol], f"_row_lse_(_into(out, {body}, None), True)")
            else:
                _reduction(em, r, body, in_place)


#: runtime calls that return a view of their argument (broadcast), not a tensor of their own
_VIEWS = frozenset({"_per_class", "_constant"})


def _may_alias(code: str) -> bool:
    """Whether the tensor code evaluates to may be another one's storage, or a broadcast view: a name, or a
    choice between tensors (a where of parameters alone, ``p if P.g2 >= 1 else ...``), which an in-place
    reduction must not overwrite."""
    node = ast.parse(code, mode="eval").body
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_detach":
        node = node.args[0]  # (detach shares its argument's storage)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in _VIEWS
    return isinstance(node, (ast.Name, ast.IfExp, ast.Attribute, ast.Subscript))


def _reduction(em: _Emitter, r: Reduction, body: str, in_place: bool) -> None:
    template, fill = REDUCE[r.op]
    fresh = f"{body}.clone()" if _may_alias(body) else body  # (a tensor the program may overwrite)
    if r.exclude_target:  # the target's entry set to the reduction's identity
        body = f"_exclude_target_({fresh}, t, {fill})" if in_place else f"_exclude_target({body}, t, {fill})"
        fresh = body
    if in_place and r.op == "lse":  # without the subnormal slow path (not under autograd), in place
        template, body = "_row_lse_({})", fresh
    if r.op == "max":  # kept: the gradient finds the argmax again on this very tensor
        name = "_arg" + em.names[r.symbol]
        em.assign(name, body)
        em.argmax[r.symbol] = body = name
    em.assign(em.names[r.symbol], template.format(body))


MAX_AFFINE_EXPAND = 200


def _affine_in(e: sympy.Expr, variables: set) -> bool:
    """Whether e is affine in the variables as written (sums, and products with one factor holding them),
    without expanding it."""
    if not e.free_symbols & variables:
        return True
    if e in variables:
        return True
    if isinstance(e, sympy.Add):
        return all(_affine_in(a, variables) for a in e.args)
    if isinstance(e, sympy.Mul):
        holding = [a for a in e.args if a.free_symbols & variables]
        return len(holding) == 1 and _affine_in(holding[0], variables)
    return False


def _affine_parts(other: sympy.Expr):
    """(K, M, L) when the gradient of the classes c != y is ``K * p_c + M * z_c + L`` with K, M, L
    constant over the classes (cross-entropy, focal, Poly-N, label smoothing, squentropy, ...): then
    the program updates p in place. None otherwise."""
    if not _affine_in(other, {P_J, Z_J}):
        # a polynomial of degree <= 1 in p_c, z_c only once expanded: asked of small expressions alone
        # (expanding a large one, nested tanh, a long series, can take minutes)
        if sympy.count_ops(other) > MAX_AFFINE_EXPAND:
            return None
        try:
            poly = sympy.Poly(other, P_J, Z_J)
        except sympy.PolynomialError:
            return None
        if poly.total_degree() > 1:
            return None
    # (the coefficients as derived, not as Poly expands them: exp(-lse) exp(z_y) would overflow)
    k, m, l = sympy.diff(other, P_J), sympy.diff(other, Z_J), other.subs({P_J: 0, Z_J: 0})
    return None if per_class(k) or per_class(m) else (k, m, l)


def _exp_affine_parts(other: sympy.Expr):
    """(K, M, L_class, L_row) when the gradient of the classes c != y is ``K exp(M z_c + L)`` with K, M
    constant over the classes and L = L_class (a class vector) + L_row (logit_adjusted, ldam): then the
    program builds it in the buffer in place. None otherwise."""
    if per_class(other) is False or P_J in other.free_symbols:
        return None
    k, rest = other.as_independent(*class_symbols(other), as_Add=False)
    if not isinstance(rest, sympy.exp) or per_class(k):
        return None
    arg = rest.args[0]
    m, l = sympy.diff(arg, Z_J), arg.subs(Z_J, 0)
    if per_class(m) or sympy.expand(arg - m * Z_J - l) != 0:
        return None
    l_class = sympy.Add(*[a for a in sympy.Add.make_args(l) if per_class(a)])
    return k, m, l_class, l - l_class


def _softmax_reduction(exp_affine, reductions, softmax: bool):
    """The lse reduction (over every class) of the exponent's class part m z + l_class, when out is free
    for it (no softmax of z there already); else None."""
    if softmax:
        return None
    k, m, l_class, l_row = exp_affine
    return next((r for r in reductions if r.op == "lse" and not r.exclude_target
                 and sympy.expand(r.body - m * Z_J - l_class) == 0), None)


def row_program(spec: LossSpec, with_grad: bool) -> Program:
    """Loss per row ``[m]`` from ``z`` ``[m, C]``, ``t`` ``[m]``; with the gradient, also
    ``grad`` ``[m, C]`` times the row coefficients ``c`` (``[m, 1]`` or None), written into
    ``out`` (a buffer of z's shape and dtype that the program may use as scratch)."""
    em = _Emitter(spec, autograd=not with_grad)
    if not with_grad:
        _row_setup(em, spec, _needed([spec.expr] + [r.body for r in spec.reductions]))
        em.plan([r.body for r in spec.reductions] + [spec.expr])
        _reductions(em, spec.reductions, in_place=False)
        (loss,) = em.stage([spec.expr])
        em.assign("loss", loss)
        return Program(tuple(em.lines), ("loss",))
    aux = spec.gradient.aux
    g = spec.gradient.expr
    other = g.subs(IS_Y, 0)                                  # classes c != y
    own = at_target(g) if spec.has_target else None          # the target class
    affine = _affine_parts(other)
    bodies = [r.body for r in spec.reductions + aux]
    # softmax from one exp(z - max) written into out: lse = max + log(sum), p = e / sum; p itself
    # is only formed when something other than an affine gradient needs it (else 1/sum joins K)
    needed = _needed([spec.expr] + ([own] if own is not None else []) + bodies + list(affine or [other]))
    linear = affine if affine is not None and affine[0] == 0 else None  # no p: (M z + L) c into out
    if linear is not None:
        affine = None
    exp_affine = _exp_affine_parts(other) if affine is None and linear is None else None
    if exp_affine is not None:
        needed = _needed([spec.expr] + ([own] if own is not None else []) + bodies + list(exp_affine))
    softmax = affine is not None or bool(needed & {LSE, P_J, P_T})  # (logit_adjusted: only its own lse)
    normalize = softmax and (P_J in _needed(bodies) or affine is None)
    em.assign("C", "_num_classes(z)")
    if spec.has_target:
        em.assign("z_y", "_at_target(z, t)")
    if softmax:
        em.assign("_m", "_row_max(z)")
        em.assign("_e", "_exp_shifted(z, _m, out)")
        em.assign("_s", "_row_sum(_e)")
        em.assign("lse", "_m + torch.log(_s)")
    if normalize:
        em.assign("p", "_e.div_(_s)")
    if P_T in needed:
        em.assign("p_t", "_at_target(p, t)" if normalize else "_at_target(_e, t) / _s")
    _class_setup(em, spec, needed)
    softmax_of = None if exp_affine is None else _softmax_reduction(exp_affine, spec.reductions + aux, softmax)
    if affine is not None:
        k, m, l = affine
        final = [k if normalize else k / sympy.Symbol("_s"), m, l]
        base = "p" if normalize else "_e"
        grad_line = lambda k, m, l: f"_affine({base}, {k}, {m}, z, {l}, c)"  # noqa: E731
    elif softmax_of is not None:
        # the gradient k exp(m z + l_class + l_row) is softmax(m z + l_class) k exp(l_row + r), and the lse
        # r of that same argument leaves its softmax in out: one pass more instead of building the exp
        k, m, l_class, l_row = exp_affine
        final = [sympy.simplify(k * sympy.exp(l_row + softmax_of.symbol))]
        grad_line = lambda k: f"_affine(out, {k}, 0, z, 0, c)"  # noqa: E731
    elif exp_affine is not None:
        final = list(exp_affine)
        grad_line = lambda k, m, lc, lr: f"_exp_affine(out, z, {m}, {lc}, {lr}, {k}, c)"  # noqa: E731
    elif linear is not None:
        final = [linear[1], linear[2]]
        grad_line = lambda m, l: f"_affine(torch.mul(z, {m}, out=out), 1, 0, z, {l}, c)"  # noqa: E731
    else:
        final = [other]
        grad_line = lambda o: f"_into(out, {o}, c)"  # noqa: E731
    tail = [spec.expr] + final + ([own] if own is not None else [])
    em.plan([r.body for r in spec.reductions + aux] + tail)
    _reductions(em, spec.reductions + aux, in_place=True, softmax_into=softmax_of)
    loss, *codes = em.stage(tail)
    em.assign("loss", loss)
    if own is not None:  # (before the gradient overwrites out, where p, the softmax, may live)
        em.assign("_own", codes[-1])
    em.assign("grad", grad_line(*codes[:len(final)]))
    if own is not None:
        em.assign("grad", "_set_target(grad, t, _own, c)")
    return Program(tuple(em.lines), ("loss", "grad"))


def elementwise_program(spec: LossSpec, with_grad: bool) -> Program:
    """Loss per element from ``u`` and ``t`` of the same shape; with the gradient, also ``grad``
    times the coefficients ``c`` (``[m]`` or None), written into ``out`` (u's shape and dtype)."""
    em = _Emitter(spec, autograd=not with_grad)
    exprs = [spec.expr] + ([spec.gradient.expr] if with_grad else [])
    em.plan([definition for _, definition in spec.features] + exprs)
    for feature, definition in spec.features:
        (code,) = em.stage([definition])
        em.assign(code_name(feature), code)
    codes = em.stage(exprs)
    em.assign("loss", codes[0])
    if with_grad:
        em.assign("grad", f"_into(out, {codes[1]}, c)")
        return Program(tuple(em.lines), ("loss", "grad"))
    return Program(tuple(em.lines), ("loss",))


def program(spec: LossSpec, with_grad: bool) -> Program:
    """The program of ``_loss`` (under autograd: nested expressions) or, with the gradient, of
    ``_loss_and_grad`` (its operations written into the buffers of a pool, see pooled_program)."""
    prog = (row_program if spec.normal_form.rows else elementwise_program)(spec, with_grad)
    return pooled_program(prog, spec) if with_grad else prog


# ---------------------------------------------------------------------------------------------
# Batch form: three functions, ``_terms(u, t, P)`` (the per-element terms g_k of the batch sums),
# ``_value(B, N, P)`` (the loss M from the sums) and ``_grad(u, t, P, B, N, out, c)`` (the gradient
# sum_k M_{B_k} g_k' of each element times c, written into out). B holds the sums as 0-d tensors.


def batch_programs(spec: LossSpec) -> dict[str, Program]:
    """The programs of the batch form's three generated functions, by function name."""
    sums = [b.symbol for b in spec.reductions]
    unpack = [(code_name(b), f"B[{i}]") for i, b in enumerate(sums)]
    terms = _Emitter(spec, like="u")
    codes = terms.stage([b.body for b in spec.reductions])
    names = tuple(f"g{i + 1}" for i in range(len(codes)))
    for name, code in zip(names, codes):
        terms.assign(name, code)
    # (a where of numbers alone takes the sums' dtype, not torch's default float32)
    value = _Emitter(spec, like="N")  # (N: the batch size, a tensor of the sums' dtype even without sums)
    value.lines += unpack
    (loss,) = value.stage([spec.expr])
    value.assign("loss", loss)
    grad = _Emitter(spec, like="u", autograd=False)
    grad.lines += unpack
    (g,) = grad.stage([spec.gradient.expr])
    grad.assign("grad", f"_into(out, {g}, c)")
    return {"_terms": Program(tuple(terms.lines), ("[" + ", ".join(names) + "]",)),
            "_value": Program(tuple(value.lines), ("loss",)),
            "_grad": Program(tuple(grad.lines), ("grad",))}


# Composite form (tasks): the loss of the task losses L1 … Lk and the learnables, under autograd.


def composite_program(spec: LossSpec) -> Program:
    """``_loss(L, S, P)``: L the task losses (a list of 0-d tensors), S the learnables by name."""
    em = _Emitter(spec)
    tasks = sorted((s for s in spec.expr.free_symbols if s.name[:1] == "L" and s.name[1:].isdigit()),
                   key=lambda s: int(s.name[1:]))
    for s in tasks:
        em.names[s] = f"L[{int(s.name[1:]) - 1}]"
    bound = dict(spec.bound)
    for learnable in spec.learnables:
        symbols = learnable.symbols(bound)
        for i, s in enumerate(symbols):
            em.names[s] = f"S.{learnable.name}" if learnable.size is None else f"S.{learnable.name}[{i}]"
    (loss,) = em.stage([spec.expr])
    em.assign("loss", loss)
    return Program(tuple(em.lines), ("loss",))


# ---------------------------------------------------------------------------------------------
# Pooled programs: the body of ``_loss_and_grad`` (not under autograd) as three-address statements, each
# writing its result into a buffer (``out=``). The buffers come from a pool that the engine keeps across
# the chunks of one call (``_buffers``, ``_Pool`` in the runtime), so that a chunk allocates (and the
# kernel faults in) no fresh [m, C] temporaries. The printed expressions are parsed back (``ast``) and
# each of their nodes is computed by the same torch operation Python would run on the printed text, in
# the same order: the values stay bit for bit those of the nested expressions.

# A value's shape, as (per row, per class): [m, C], [m, 1] (the elementwise form: [m]), [1, C]
# (class vectors) or a number (False, False; also a 0-d tensor: never pooled). One letter per shape names
# the pool's buffers (upper case: bool).
_LETTERS = {("row", True, True): "c", ("row", True, False): "r", ("row", False, True): "k",
            ("elementwise", True, False): "e"}

# How a node of the printed code computes into a buffer: {0}, {1}, … the operands, {out} the buffer,
# {tmp} / {mask} scratch buffers of the result's shape (float / bool) for the runtime helpers that take
# several passes. A template without scratch is one elementwise operation (or a copy): it may write into
# the buffer of an operand whose value dies there.
_UNARY_OUT = ("exp", "log", "log1p", "expm1", "sigmoid", "abs", "sign", "tanh", "square", "reciprocal",
              "sqrt", "rsqrt", "neg", "sin", "cos", "floor", "ceil", "erf", "erfc", "lgamma")
_BINARY_OUT = ("maximum", "minimum", "clamp_min", "clamp_max", "pow", "atan2", "hypot")
_COMPARE = ("lt", "le", "gt", "ge", "eq", "ne")
OPS = {
    **{f"torch.{f}": f"torch.{f}({{0}}, out={{out}})" for f in _UNARY_OUT},
    **{f"torch.{f}": f"torch.{f}({{0}}, {{1}}, out={{out}})" for f in _BINARY_OUT + _COMPARE},
    "torch.where": "_where({0}, {1}, {2}, {out})",
    "_pow": "torch.pow({0}, {1}, out={out})",  # (not under autograd: _pow is torch.pow)
    **{f.torch: f.pooled for f in functions.ENTRIES if f.pooled},  # (the atoms' own: softplus, step, ...)
    ".clone": "{out}.copy_({0})",
    ast.Add: "torch.add({0}, {1}, out={out})",
    ast.Sub: "torch.sub({0}, {1}, out={out})",
    ast.Mult: "torch.mul({0}, {1}, out={out})",
    ast.Div: "torch.div({0}, {1}, out={out})",
    ast.Pow: "torch.pow({0}, {1}, out={out})",
    ast.BitAnd: "torch.bitwise_and({0}, {1}, out={out})",
    ast.BitOr: "torch.bitwise_or({0}, {1}, out={out})",
    ast.USub: "torch.neg({0}, out={out})",
    ast.Invert: "torch.bitwise_not({0}, out={out})",
    "rdiv": "torch.mul(torch.reciprocal({1}, out={out}), {0}, out={out})",  # number / tensor: what Python runs
}
BOOL_OPS = {f"torch.{f}" for f in _COMPARE} | {ast.BitAnd, ast.BitOr, ast.Invert}
# The runtime helpers that stay calls (their results are not pooled: per-row values, or written in place
# into their first argument): the shape of their result, from their arguments' shapes.
HELPERS = {
    "_at_target": lambda shapes: (True, False),
    "_row_sum": lambda shapes: (shapes[0][0], False),
    "_row_max": lambda shapes: (shapes[0][0], False),
    "_row_lse": lambda shapes: (shapes[0][0], False),
    "_row_lse_": lambda shapes: (shapes[0][0], False),
    "_exp_shifted": lambda shapes: (True, True),
    "_exclude_target_": lambda shapes: (True, shapes[0][1]),  # (per row: the target's entry differs)
    "_exclude_target": lambda shapes: (True, shapes[0][1]),
    "_into": lambda shapes: shapes[0],
    "_set_target": lambda shapes: shapes[0],
    "_affine": lambda shapes: shapes[0],
    "_exp_affine": lambda shapes: shapes[0],
    "_detach": lambda shapes: shapes[0],
    ".div_": lambda shapes: shapes[0],
}
NUMBERS = ("_constant", "_flag", "_scalar", "_num_classes")  # calls whose result is a number (or a 0-d tensor)
_SCALAR = (False, False)


@dataclass
class _Statement:
    target: str       # the program's name it binds, or "" (an intermediate value)
    text: str         # the code, with {rN} where register N's buffer goes
    out: int | None   # the register it writes, if any
    scratch: tuple    # registers it uses as scratch
    uses: frozenset   # registers it reads
    in_place: bool    # whether out may be the buffer of an operand that dies here


class _Flattener:
    """Three-address statements from a program's lines; values live in registers, later given buffers."""

    def __init__(self, form: str, shapes: dict, tensors: set):
        self.form = form
        self.shapes = dict(shapes)  # name -> shape of its value
        self.bool: set = set()      # names of bool values
        self.holds: dict = {}       # name -> the registers whose buffers its value reads
        self.tensors = tensors      # attribute texts that are tensors (class vectors P.name)
        self.registers: list[str] = []  # register -> letter
        self.statements: list[_Statement] = []
        self.code = ""
        self._shapes: dict = {}

    def register(self, shape, is_bool: bool) -> int:
        letter = _LETTERS[(self.form,) + shape]
        self.registers.append(letter.upper() if is_bool else letter)
        return len(self.registers) - 1

    def segment(self, node) -> str:
        return ast.get_source_segment(self.code, node).replace("{", "{{").replace("}", "}}")

    @staticmethod
    def name(func) -> str | None:
        """A call's function as the tables spell it: ``torch.exp``, ``_pow``, ``.clone`` (a method)."""
        if isinstance(func, ast.Name):
            return func.id
        if isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id == "torch":
                return "torch." + func.attr
            return "." + func.attr
        return None

    def shape(self, node) -> tuple:
        """The shape of a node's value, from its leaves (memoized per line: operand asks at every level)."""
        key = (id(node), self.code)
        if key not in self._shapes:
            self._shapes[key] = self._shape(node)
        return self._shapes[key]

    def _shape(self, node) -> tuple:
        if isinstance(node, ast.Name):
            return self.shapes.get(node.id, _SCALAR)
        if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Store):
            if ast.get_source_segment(self.code, node) in self.tensors:
                return (False, True)
        if isinstance(node, ast.Call):
            name = self.name(node.func)
            if name in NUMBERS or name is not None and name.startswith("math."):
                return _SCALAR
            args = ([node.func.value] if name and name.startswith(".") else []) + list(node.args)
            if name in HELPERS:
                return HELPERS[name]([self.shape(a) for a in args])
            children = args
        else:
            children = list(ast.iter_child_nodes(node))
        shapes = [self.shape(c) for c in children if isinstance(c, ast.expr)]
        return (any(s[0] for s in shapes), any(s[1] for s in shapes))

    def operand(self, node, into: str | None = None):
        """(text, shape, registers it reads, bool?) of a node, after the statements computing it; with
        ``into``, a pooled operation writes there and its text is returned instead of a statement."""
        shape = self.shape(node)
        if shape == _SCALAR:  # a number, or a small tensor ([1, 1], 0-d): as printed, not pooled
            names = [n.id for n in ast.walk(node) if isinstance(n, ast.Name)]
            return (self.segment(node), shape, frozenset().union(*[self.holds.get(n, ()) for n in names]),
                    self._truth(node))
        if isinstance(node, ast.Name):
            return node.id, shape, self.holds.get(node.id, frozenset()), node.id in self.bool
        if isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Store) \
                and ast.get_source_segment(self.code, node) in self.tensors:
            return self.segment(node), shape, frozenset(), False
        if isinstance(node, ast.BinOp) and type(node.op) in OPS:
            op = type(node.op)
            if op is ast.Div and self.shape(node.left) == _SCALAR and self._number(node.left):
                op = "rdiv"
            return self.pooled(op, [node.left, node.right], shape, into)
        if isinstance(node, ast.UnaryOp) and type(node.op) in OPS:
            return self.pooled(type(node.op), [node.operand], shape, into)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return self.operand(node.operand, into)
        if isinstance(node, ast.Call):
            name = self.name(node.func)
            method = name is not None and name.startswith(".")
            args = ([node.func.value] if method else []) + list(node.args)
            if name in OPS and not node.keywords:
                return self.pooled(name, args, shape, into)
            if self._into(node):  # _into(out, x, c): x's last operation written straight into out
                text, _, uses, _ = self.operand(node.args[1], into=node.args[0].id)
                return f"_times({text}, {self.segment(node.args[2])})", shape, uses, False
            if name in HELPERS or name is not None and name.startswith("torch."):
                # a helper (or a torch call as the printer wrote it): a call, its operands pooled
                parts = [self.operand(a) for a in args] + [self.operand(k.value) for k in node.keywords]
                texts = [p[0] for p in parts[:len(args)]]
                texts += [f"{k.arg}={p[0]}" for k, p in zip(node.keywords, parts[len(args):])]
                text = f"{texts[0]}{name}({', '.join(texts[1:])})" if method else f"{name}({', '.join(texts)})"
                return text, shape, frozenset().union(*[p[2] for p in parts]), False
        raise NotImplementedError(f"pooled program: cannot flatten {ast.dump(node)}")

    def _truth(self, node) -> bool:
        """Whether a scalar node is a truth value (a Python bool, or _flag's bool tensor)."""
        if isinstance(node, (ast.Compare, ast.BoolOp)) or isinstance(node, ast.UnaryOp) and \
                isinstance(node.op, ast.Not):
            return True
        if isinstance(node, ast.Constant):
            return isinstance(node.value, bool)
        if isinstance(node, ast.Name):
            return node.id in self.bool
        if isinstance(node, ast.IfExp):
            return self._truth(node.body) and self._truth(node.orelse)
        return isinstance(node, ast.Call) and self.name(node.func) == "_flag"

    def _number(self, node) -> bool:
        """Whether a scalar node is a Python number (else a 0-d tensor, as _constant(x, like) is)."""
        return not any(isinstance(n, ast.Call) and self.name(n.func) == "_constant" for n in ast.walk(node))

    def pooled(self, op, args, shape, into):
        template = OPS[op]
        parts = [self.operand(a) for a in args]
        # a where choosing between two truth values (a where nested in a condition; sympy may make one of
        # them True, False or a test of parameters alone) is bool too
        is_bool = op in BOOL_OPS or (op == "torch.where" and all(part[3] for part in parts[1:]))
        uses = frozenset().union(*[p[2] for p in parts])
        texts = [p[0] for p in parts]
        if into is not None:
            return template.format(*texts, out=into), shape, uses, is_bool
        out = self.register(shape, is_bool)
        scratch = []
        fills = {"out": f"{{r{out}}}"}
        for key, flag in (("tmp", False), ("mask", True)):
            if "{" + key + "}" in template:
                scratch.append(self.register(shape, flag))
                fills[key] = f"{{r{scratch[-1]}}}"
        self.statements.append(_Statement("", template.format(*texts, **fills), out, tuple(scratch), uses,
                                          not scratch))
        return f"{{r{out}}}", shape, frozenset([out]), is_bool

    def line(self, target: str, code: str) -> None:
        self.code = code
        self._shapes = {}  # (ids of this line's nodes only: the tree is alive until the next line)
        node = ast.parse(code, mode="eval").body
        count = len(self.statements)
        text, shape, uses, is_bool = self.operand(node)
        last = self.statements[-1] if len(self.statements) > count else None
        if last is not None and last.out is not None and text == f"{{r{last.out}}}" and not last.target:
            last.target = target  # the line's own value: its last operation binds the name
        else:
            self.statements.append(_Statement(target, text, None, (), uses, False))
        self.shapes[target], self.holds[target] = shape, uses
        if is_bool:
            self.bool.add(target)
        else:
            self.bool.discard(target)

    def _into(self, node) -> bool:
        if not (isinstance(node, ast.Call) and self.name(node.func) == "_into" and len(node.args) == 3
                and isinstance(node.args[0], ast.Name) and not node.keywords):
            return False
        value = node.args[1]
        op = None
        if isinstance(value, ast.BinOp):
            op = type(value.op)
        elif isinstance(value, ast.UnaryOp):
            op = type(value.op)
        elif isinstance(value, ast.Call) and not value.keywords:
            op = self.name(value.func)
        if op not in OPS or op in BOOL_OPS or "{tmp}" in OPS[op] or "{mask}" in OPS[op]:
            return False
        if op is ast.Div and self.shape(value.left) == _SCALAR:
            return False  # (rdiv: two operations)
        return self.shape(value) == self.shapes.get(node.args[0].id)


def pooled_program(prog: Program, spec: LossSpec) -> Program:
    """The program with every operation on tensors written into a buffer of the pool (``_pool``, an
    argument of the generated function): buffers assigned by liveness (free again after the last use of
    their value), one per shape and dtype that is live at once."""
    row = spec.normal_form.rows
    vector = (True, False)
    shapes = {"z": (True, True), "out": (True, True), "c": vector} if row else \
        {"u": vector, "t": vector, "out": vector, "c": vector}
    if row and not spec.has_target:  # (soft targets q: [m, C])
        shapes["t"] = (True, True)
    flat = _Flattener(spec.form, shapes, {f"P.{name}" for name in spec.class_vectors})
    try:
        for target, code in prog.lines:
            flat.line(target, code)
    except NotImplementedError:  # code the tables do not cover (none in the catalog): nested, as printed
        return prog
    statements = flat.statements
    last: dict[int, int] = {}
    for i, s in enumerate(statements):
        for r in s.uses:
            last[r] = i
    for name in prog.outputs:
        for r in flat.holds.get(name, ()):
            last[r] = len(statements)
    letters: list[str] = []
    free: dict[str, list[int]] = {}
    buffer: dict[int, int] = {}

    def take(register):
        letter = flat.registers[register]
        pool = free.setdefault(letter, [])
        if pool:
            buffer[register] = pool.pop(0)
        else:
            letters.append(letter)
            buffer[register] = len(letters) - 1

    def release(registers):
        for r in registers:
            pool = free.setdefault(flat.registers[r], [])
            pool.append(buffer[r])
            pool.sort()

    lines = []
    for i, s in enumerate(statements):
        dying = sorted(r for r in s.uses if last[r] == i)
        if s.in_place:
            release(dying)
        for r in ([s.out] if s.out is not None else []) + list(s.scratch):
            take(r)
        if not s.in_place:
            release(dying)
        release(s.scratch)
        if s.out is not None and s.out not in last:
            release([s.out])
        lines.append((s.target, s.text.format(**{f"r{r}": f"_b{b}" for r, b in buffer.items()})))
    if letters:
        names = ", ".join(f"_b{i}" for i in range(len(letters)))
        like = "z" if row else "u"
        lines.insert(0, (names if len(letters) > 1 else names + ",", f"_buffers(_pool, {like}, {''.join(letters)!r})"))
    return Program(tuple(lines), prog.outputs)
