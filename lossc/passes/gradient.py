"""The gradient of a normal form, derived by sympy.

Elementwise: ``dL/du = F_u + sum_f F_f * df/du`` over the kind's features (m = t*u, …).

Row: with ``F(z_y, lse, p_t, R_1..R_m)``, ``R_k = op_{j in J_k} h_k`` and weights
``w_k(j)`` (1 for sums, ``exp(h - R)`` for log-sum-exp, the argmax indicator for max),
the gradient for class c is

    [c=y] (D_y F + sum_k F_Rk U_k) + p_c (D_lse F + sum_k F_Rk W_k)
        + sum_k F_Rk [c in J_k] w_k(c) (dh_k/dz + p dh_k/dp)(c)

with ``U_k = sum_j w_k(j) D_y h_k(j)`` and ``W_k = sum_j w_k(j) (D_lse h_k - p_j dh_k/dp)(j)``,
where ``D_y = d/dz_y + p_t d/dp_t`` and ``D_lse = d/dlse - p_t d/dp_t`` (p_t = exp(z_y - lse)).
``U_k`` and ``W_k`` are the extra class reductions of the gradient (``Gradient.aux``);
they vanish, and are dropped, when ``h_k`` does not involve the row's scalars.
"""

from __future__ import annotations

import sympy

from ..ir import IS_Y, LSE, NUM_CLASSES, P_J, P_T, U, Z_J, Z_Y, Gradient, LossSpec, Reduction
from .stabilize import GRADIENT_RULES, context, rewrite, split_hard_targets


def _d_target(e: sympy.Expr) -> sympy.Expr:
    return sympy.diff(e, Z_Y) + P_T * sympy.diff(e, P_T)


def _d_lse(e: sympy.Expr) -> sympy.Expr:
    return sympy.diff(e, LSE) - P_T * sympy.diff(e, P_T)


def _weight(r: Reduction) -> sympy.Expr:
    if r.op == "sum":
        return sympy.S.One
    if r.op == "lse":
        return sympy.exp(r.body - r.symbol)
    return sympy.Piecewise((1, sympy.Eq(r.body, r.symbol)), (0, True))


def row_gradient(spec: LossSpec) -> Gradient:
    aux: list[Reduction] = []

    def aux_sum(body: sympy.Expr, exclude: bool) -> sympy.Expr:
        body = sympy.simplify(body) if body.count_ops() < 40 else body
        if not body.free_symbols & {Z_J, P_J}:  # constant over the classes
            return body * (NUM_CLASSES - 1 if exclude else NUM_CLASSES)
        for a in aux:
            if (a.body, a.exclude_target) == (body, exclude):
                return a.symbol
        symbol = sympy.Symbol(f"A{len(aux) + 1}", real=True)
        aux.append(Reduction(symbol, "sum", body, exclude))
        return symbol

    target = _d_target(spec.expr)
    prob = _d_lse(spec.expr)
    per_class = sympy.S.Zero
    for r in spec.reductions:
        f_r = sympy.diff(spec.expr, r.symbol)
        if f_r == 0:
            continue
        w = _weight(r)
        dh_dp = sympy.diff(r.body, P_J)
        target += f_r * aux_sum(w * _d_target(r.body), r.exclude_target)
        prob += f_r * aux_sum(w * (_d_lse(r.body) - P_J * dh_dp), r.exclude_target)
        member = (1 - IS_Y) if r.exclude_target else sympy.S.One
        per_class += f_r * member * w * (sympy.diff(r.body, Z_J) + P_J * dh_dp)
    expr = IS_Y * target + P_J * prob + per_class
    return Gradient(expr, tuple(aux))


def elementwise_gradient(spec: LossSpec) -> Gradient:
    expr = sympy.diff(spec.expr, U)
    for feature, definition in spec.features:
        expr += sympy.diff(spec.expr, feature) * sympy.diff(definition, U)
    return Gradient(expr)


class _abs(sympy.Function):
    """abs of a real value, whatever sympy can prove: its derivative is sign(x) x'. (sympy.Abs of an
    argument it cannot prove real, such as log1p(m) or sqrt(m), differentiates through re, im and atan2,
    and gives 0/0 at the argument's zeros.)"""

    def fdiff(self, argindex=1):
        return sympy.sign(self.args[0])


def _with_real_abs(spec: LossSpec) -> LossSpec:
    return spec.with_(expr=spec.expr.replace(sympy.Abs, _abs),
                      reductions=tuple(Reduction(r.symbol, r.op, r.body.replace(sympy.Abs, _abs), r.exclude_target)
                                       for r in spec.reductions))


def _real(expr: sympy.Expr) -> sympy.Expr:
    """re(x) -> x, im(x) -> 0, conjugate(x) -> x: every value of a loss is real (NaN off its domain), but
    sympy differentiates abs(f) of an f it cannot prove real (log1p(m)) through re and im."""
    return expr.replace(_abs, sympy.Abs).replace(sympy.re, lambda a: a) \
        .replace(sympy.im, lambda a: sympy.S.Zero).replace(sympy.conjugate, lambda a: a)


def gradient(spec: LossSpec) -> LossSpec:
    """Attach the symbolic gradient, rewritten into stable form."""
    real = _with_real_abs(spec)
    derived = row_gradient(real) if spec.form == "row" else elementwise_gradient(real)
    derived = Gradient(_real(derived.expr), tuple(Reduction(a.symbol, a.op, _real(a.body), a.exclude_target)
                                                  for a in derived.aux))
    ctx = context(spec)
    derived = Gradient(split_hard_targets(rewrite(derived.expr, ctx, GRADIENT_RULES), ctx),
                       tuple(Reduction(a.symbol, a.op, rewrite(a.body, ctx, GRADIENT_RULES), a.exclude_target)
                             for a in derived.aux))
    return spec.with_(gradient=derived, reductions=tuple(ctx.reductions))
