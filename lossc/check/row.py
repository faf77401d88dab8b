"""Algebra of the row normal form: the loss written in probabilities.

With z[y] = lse(z) + log p_t and z[j] = lse(z) + log p[j], a row loss becomes an
expression in p_t, lse(z) and class sums. Three shapes matter to the checks:

- *p_t alone*: ``L = g(p_t)`` (no lse, no class reductions left): CE, focal, GCE, ...
- *separable*: ``L = G(p_t) + sum_k c_k S_k`` with ``S_k = sum_j h_k(p[j])`` and constant
  ``c_k``: label smoothing, Brier. Then ``R(z; q) = sum_j [q_j G(p_j) + sum_k c_k h_k(p_j)]``.
- anything else (NCE's ratio, squentropy's raw logits, max reductions): numerical.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from ..ir import IS_Y, LSE, NUM_CLASSES, P_J, P_T, Z_J, Z_Y
from .onevar import elementary

P = sympy.Symbol("p", positive=True)  # p_t (or one class's probability) as a plain variable


def pform(e: sympy.Expr) -> sympy.Expr:
    """e with z[y] = lse + log p_t, z[j] = lse + log p[j] and the atoms written with exp/log."""
    e = elementary(e)
    return e.xreplace({Z_Y: LSE + sympy.log(P_T), Z_J: LSE + sympy.log(P_J)})


def pt_function(spec, values: dict) -> sympy.Expr | None:
    """g with L = g(p_t) (in the variable P), or None when the loss depends on more than p_t."""
    e = pform(spec.expr.xreplace(values))
    if e.free_symbols & ({LSE, Z_J, P_J, IS_Y} | {r.symbol for r in spec.reductions}):
        return None
    return e.xreplace({P_T: P})


@dataclass(frozen=True)
class Separable:
    """L = G(p_t) + sum_k c_k sum_j h_k(p[j])."""

    G: sympy.Expr                  # in P
    terms: tuple                   # ((c_k, h_k in P), ...)

    def describe(self) -> str:
        parts = [sympy.sstr(self.G.xreplace({P: sympy.Symbol('p_t')}))]
        for c, h in self.terms:
            parts.append(f"({sympy.sstr(c)}) * sum_j {sympy.sstr(h.xreplace({P: sympy.Symbol('p_j')}))}")
        return " + ".join(parts)


def _body_parts(body: sympy.Expr):
    """(a, h0) with body = a * lse + h0(p[j]), or None."""
    b = sympy.expand(pform(body))
    a = sympy.diff(b, LSE)
    if a.free_symbols - {NUM_CLASSES}:
        return None
    h0 = sympy.expand(b - a * LSE)
    if h0.free_symbols - {P_J, NUM_CLASSES}:
        return None
    return a, h0


def class_sums(spec, values: dict):
    """expr in p_t, lse and opaque full-sum symbols S_k = sum_j h_k(p[j]); or None.

    Returns (expression, {S_k: h_k in P}).
    """
    sums: dict = {}
    repl = {}
    parts = _sum_parts(spec, values)
    if parts is None:
        return None
    for r, a, h0, count in parts:
        S = _intern(sums, h0.xreplace({P_J: P}))
        value = a * count * LSE + S
        if r.exclude_target:
            value -= h0.xreplace({P_J: P_T})
        repl[r.symbol] = value
    e = _without_lse(pform(spec.expr.xreplace(values)).xreplace(repl))
    if e is None or e.free_symbols - ({P_T, NUM_CLASSES} | set(sums)):
        return None
    return e.xreplace({P_T: P}), sums


def _sum_parts(spec, values: dict):
    """[(reduction, a, h0, count)] for each class reduction, a sum whose body is a * lse + h0(p[j])
    over count classes; None when one is not of that form."""
    out = []
    for r in spec.reductions:
        parts = _body_parts(r.body.xreplace(values)) if r.op == "sum" else None
        if parts is None:
            return None
        out.append((r, *parts, NUM_CLASSES - 1 if r.exclude_target else NUM_CLASSES))
    return out


def _without_lse(e: sympy.Expr):
    """e with its lse terms cancelled, or None when lse does not cancel."""
    if e.has(LSE):
        e = sympy.expand(e)
        if sympy.simplify(sympy.diff(e, LSE)) != 0:
            return None
        e = e.subs(LSE, 0)
    return e


def _intern(sums: dict, h: sympy.Expr) -> sympy.Symbol:
    for s, existing in sums.items():
        if sympy.simplify(existing - h) == 0:
            return s
    s = sympy.Symbol(f"S{len(sums) + 1}")
    sums[s] = h
    return s


def separable(spec, values: dict) -> Separable | None:
    out = class_sums(spec, values)
    if out is None:
        return None
    e, sums = out
    e = sympy.expand(e)
    terms = []
    for s, h in sums.items():
        c = sympy.simplify(sympy.diff(e, s))
        if c.free_symbols - {NUM_CLASSES}:
            return None
        terms.append((c, h))
        e = e - c * s
    e = sympy.expand(e)
    if e.free_symbols & set(sums):
        return None
    return Separable(e, tuple(terms))


def label_sum(spec, values: dict):
    """sum_k L(z, k) as an expression in lse and class sums (sympy-simplified), or None."""
    out = class_sums(spec, values)
    if out is None:
        return None
    e, sums = out
    total = sympy.S.Zero
    for term in sympy.Add.make_args(sympy.expand(e)):
        coef, dep = term.as_independent(P)
        if dep == 1:
            total += coef * NUM_CLASSES
            continue
        for piece in sympy.Add.make_args(sympy.expand(dep)):
            k, g = piece.as_independent(P)
            if g == P:
                total += coef * k           # sum_j p_j = 1
            else:
                total += coef * k * _intern(sums, g)
    return sympy.simplify(total), sums


def concrete(spec, values: dict, z: list, y: int) -> sympy.Expr:
    """L(z, y) as a sympy expression for a concrete row z (numbers or expressions) and class y."""
    C = len(z)
    lse = sympy.log(sum(sympy.exp(v) for v in z))
    p = [sympy.exp(v - lse) for v in z]
    row = {Z_Y: z[y], LSE: lse, P_T: p[y], NUM_CLASSES: sympy.Integer(C)}
    for r in spec.reductions:
        body = elementary(r.body.xreplace(values))
        terms = [body.xreplace({**row, Z_J: z[j], P_J: p[j], IS_Y: sympy.Integer(int(j == y))})
                 for j in range(C) if not (r.exclude_target and j == y)]
        row[r.symbol] = {"sum": lambda t: sympy.Add(*t), "max": lambda t: sympy.Max(*t),
                         "lse": lambda t: sympy.log(sympy.Add(*[sympy.exp(v) for v in t]))}[r.op](terms)
    return elementary(spec.expr.xreplace(values)).xreplace(row)


def sign_form(spec, values: dict):
    """(expr, box) for range analysis: expr in P and one symbol T_k per class reduction, with
    T_k = sum_{j in J_k} h_k(p[j]) enclosed by |J_k| * range(h_k); lse must cancel. Or None."""
    from .interval import Interval, enclose_on
    from .interval import _mul
    box = {}
    repl = {}
    parts = _sum_parts(spec, values)
    if parts is None:
        return None
    for i, (r, a, h0, count) in enumerate(parts):
        T = sympy.Symbol(f"T{i + 1}")
        repl[r.symbol] = a * count * LSE + T
        h = enclose_on(h0.xreplace({P_J: P}), P, 0, 1)
        n = Interval(1 if r.exclude_target else 2, "inf")
        box[T] = _mul(n, h)
    e = _without_lse(pform(spec.expr.xreplace(values)).xreplace(repl))
    box[NUM_CLASSES] = Interval(2, "inf")
    if e is None or e.free_symbols - ({P_T} | set(box)):
        return None
    return e.xreplace({P_T: P}), box


def sign_range(spec, values: dict):
    """(expr, interval): the loss in p_t and class sums (``sign_form``) and its enclosure for p_t in (0, 1]; or
    None."""
    from .interval import Interval, enclose
    form = sign_form(spec, values)
    if form is None:
        return None
    e, box = form
    return e, enclose(e, {**box, P: Interval(0, 1)})


def row_box(spec, values: dict):
    """(expr, box) for range analysis in the row symbols themselves: d = z[y] - lse(z) in (-inf, 0],
    p's in (0, 1], logits anywhere, each reduction enclosed by (count) x (range of its body)."""
    from .interval import Interval, _add, _mul, enclose
    from .onevar import elementary
    D = sympy.Symbol("d", nonpositive=True)
    whole = Interval("-inf", "inf")
    box = {D: Interval("-inf", 0), LSE: whole, P_T: Interval(0, 1), Z_J: whole, P_J: Interval(0, 1),
           IS_Y: Interval(0, 1), NUM_CLASSES: Interval(2, "inf")}
    for r in spec.reductions:
        body = elementary(r.body.xreplace(values)).xreplace({Z_Y: LSE + D})
        h = enclose(body, box)
        if r.op == "sum":
            box[r.symbol] = _mul(Interval(1 if r.exclude_target else 2, "inf"), h)
        elif r.op == "max":
            box[r.symbol] = h
        else:
            box[r.symbol] = _add(h, Interval(0, "inf"))
    e = elementary(spec.expr.xreplace(values)).xreplace({Z_Y: LSE + D})
    return e, box
