"""``nonnegative``: L >= 0 for every input and target."""

from __future__ import annotations

import numpy as np
import sympy

from ..interval import enclose
from ..ladder import climb, proof, recheck
from ..numeric import fmt, rng_for
from ..onevar import compare, finite_real, grid, prove_sign
from ..row import P, row_box, sign_range
from ..verdict import Verdict, plausible, proved, refuted

OO = sympy.oo
_s = sympy.sstr


def elementwise(c) -> Verdict:
    return c.each_case(lambda case: climb(proof(lambda: _pieces(c, case)), lambda: _negative(c, case),
                                          otherwise=lambda: _smallest(c, case)),
                       f"nonnegative for each target {c.setting}:")


def _pieces(c, case) -> Verdict | None:
    """Each smooth piece shown >= 0 and the value at each kink >= 0."""
    if not case.symbolic:
        return None
    x, P_ = case.x, c.pieces(case)
    whys = []
    for p in P_.pieces:
        why = prove_sign(p.expr, x, p.lo, p.hi, "nonneg")
        if not why:
            return None
        whys.append(f"on {p.interval()}: {why}")
    at = [P_.expr.subs(x, k) for k in P_.kinks]  # the value at a kink is its own (a where may jump)
    if all(finite_real(v) and compare(v, 0) >= 0 for v in at):
        return proved(f"L >= 0{c.suffix(case)} {c.setting}: " + "; ".join(whys)
                      + ("; at the kinks " + ", ".join(f"L({_s(k)}) = {_s(v)}" for k, v in zip(P_.kinks, at))
                         if P_.kinks else ""))
    return None


def _lowest(c, case):
    xs = np.array(grid(-OO, OO) + [1e4, -1e4])
    vals = c.phi(case, xs)
    return xs, vals, int(np.nanargmin(vals))


def _negative(c, case) -> Verdict | None:
    xs, vals, i = _lowest(c, case)
    if vals[i] < -1e-12:
        again = float(c.phi(case, [xs[i]])[0])
        return refuted(f"negative{c.suffix(case)}: L({case.x} = {fmt(xs[i])}) = {fmt(again, 10)} (float64, "
                       f"generated code) {c.setting}", {**case.where(), "x": float(xs[i]), "L": again})
    return None


def _smallest(c, case) -> Verdict:
    xs, vals, i = _lowest(c, case)
    return plausible(f"smallest value {fmt(vals[i])} on {len(xs)} points{c.suffix(case)} {c.setting}; not proved")


def row(c) -> Verdict:
    return climb(proof(lambda: _pt(c)), proof(lambda: _class_sums(c)), lambda: _row_box(c), lambda: _search(c),
                 otherwise=lambda: _row_smallest(c))


def _pt(c) -> Verdict | None:
    if c.g is not None:
        why = prove_sign(c.g, P, 0, 1, "nonneg")
        if why:
            return proved(f"L = g(p_t), g(p) = {_s(c.g)} >= 0 on (0, 1] ({why}) {c.setting}")
    return None


def _class_sums(c) -> Verdict | None:
    found = sign_range(c.spec, c.values)
    if found is not None:
        e, r = found
        if r.lo >= 0:
            return proved(f"interval arithmetic on L = {_s(e)} (p = p_t in (0, 1], T_k class sums with their "
                          f"ranges): L in {r.text()} {c.setting}")
    return None


def _row_box(c) -> Verdict | None:
    e, box = row_box(c.spec, c.values)
    r = enclose(e, box)
    if r.lo >= 0:
        return proved(f"interval arithmetic on L = {_s(e)} (d = z[y] - lse(z) <= 0, probabilities in (0, 1], "
                      f"class reductions enclosed term by term): L in {r.text()} {c.setting}")
    return None


def _row_lowest(c):
    rng = rng_for("nonneg", c.spec.hash, sorted(c.ctx.params.items()))
    z = np.concatenate([rng.normal(size=(128, 3)) * s for s in (0.5, 3, 30)])
    y = rng.integers(0, 3, len(z))
    vals = c.ev.row_np(z, y)
    return z, y, vals, int(np.nanargmin(vals))


def _search(c) -> Verdict | None:
    z, y, vals, i = _row_lowest(c)
    if not vals[i] < -1e-12:
        return None
    again = recheck(lambda: c.ev.row_np(z[i:i + 1], y[i:i + 1])[0], lambda v: v < -1e-12)
    if again is not None:
        return refuted(f"negative: L = {fmt(again, 10)} at z = {fmt(z[i])}, y = {int(y[i])} (float64, "
                       f"generated code) {c.setting}", {"z": z[i].tolist(), "y": int(y[i]), "L": float(again)})
    return None


def _row_smallest(c) -> Verdict:
    z, _, vals, i = _row_lowest(c)
    return plausible(f"smallest value {fmt(vals[i])} among {len(z)} random logit vectors {c.setting}; not proved")
