"""PolyLoss coefficients (Leng et al. 2022): a loss of p_t alone in the basis (1 - p_t)^j."""

from __future__ import annotations

import sympy

from ..errors import LossKindError
from .row import P, pt_function

X = sympy.Symbol("x", positive=True)  # x = 1 - p_t


def expansion(ctx, order: int) -> dict:
    """{"coefficients": {j: alpha_j}, "integer": bool, "leading_gradient": str, "g": str}."""
    spec = ctx.spec
    if spec.kind != "multiclass":
        raise LossKindError(f"{spec.name} is a {spec.kind} loss: PolyLoss coefficients are defined for multiclass "
                            "losses of p_t = softmax(z)[y]")
    g = pt_function(spec, ctx.values)
    if g is None:
        uses = sorted({str(s) for s in spec.expr.free_symbols if str(s) not in ("p_t", "z[y]", "lse(z)", "C")}
                      | ({r.symbol.name for r in spec.reductions}))
        detail = ("it uses the class reduction(s) " + ", ".join(r.describe() for r in spec.reductions)) \
            if spec.reductions else f"it uses {', '.join(uses) or 'lse(z) beyond p_t'}"
        raise LossKindError(f"{spec.name} does not depend on p_t alone ({detail}); PolyLoss coefficients "
                            "exist only for losses of p_t alone")
    if g.free_symbols - {P}:
        raise LossKindError(f"{spec.name}: the loss in p_t still has free symbols {sorted(map(str, g.free_symbols - {P}))}")
    f = g.xreplace({P: 1 - X})
    series = sympy.expand(sympy.series(f, X, 0, order + 1).removeO())
    coefficients: dict = {}
    integer = True
    for term in sympy.Add.make_args(series):
        if term == 0:
            continue
        c, e = term.as_coeff_exponent(X)
        if c.has(X) or c.free_symbols:
            raise LossKindError(f"{spec.name}: the expansion around p_t = 1 has a term {term} that is not a power "
                                "of (1 - p_t)")
        if not e.is_Integer:
            integer = False
        key = int(e) if e.is_Integer else sympy.nsimplify(e)
        coefficients[key] = coefficients.get(key, sympy.S.Zero) + sympy.nsimplify(c) if c.is_Float else \
            coefficients.get(key, sympy.S.Zero) + c
    if integer:
        for j in range(1, order + 1):
            coefficients.setdefault(j, sympy.S.Zero)
        coefficients = {j: coefficients[j] for j in sorted(coefficients) if j <= order}
    else:
        coefficients = dict(sorted(coefficients.items(), key=lambda kv: float(kv[0])))
    grad = sympy.expand(sympy.series(sympy.diff(f, X), X, 0, order + 1).removeO())
    lead = _leading(grad)
    return {"coefficients": coefficients, "integer": integer, "g": sympy.sstr(g.xreplace({P: sympy.Symbol('p_t')})),
            "leading_gradient": lead}


def _leading(series: sympy.Expr) -> str:
    terms = [t for t in sympy.Add.make_args(series) if t != 0]
    if not terms:
        return "0"
    lowest = min(terms, key=lambda t: float(t.as_coeff_exponent(X)[1]))
    return sympy.sstr(lowest.xreplace({X: sympy.Symbol("(1 - p_t)")}))
