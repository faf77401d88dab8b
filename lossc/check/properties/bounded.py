"""``bounded``: sup |L| < oo over every input and target."""

from __future__ import annotations

import numpy as np
import sympy

from ..ladder import UNDECIDED, climb, proof
from ..numeric import fmt, rng_for
from ..onevar import bounded_on, continuous_on, elementary, finite_real, grid
from ..row import P, concrete, sign_range
from ..verdict import Verdict, plausible, proved, refuted, unknown

OO = sympy.oo
_s = sympy.sstr


def elementwise(c) -> Verdict:
    return c.each_case(lambda case: climb(proof(lambda: _limit(c, case)), proof(lambda: _pieces(c, case)),
                                          otherwise=lambda: _largest(c, case)),
                       f"bounded for each target {c.setting}:")


def _split(c, case):
    try:
        return c.pieces(case)
    except UNDECIDED:
        return None


def _limit(c, case) -> Verdict | None:
    """Refuted by a sympy limit +-oo at either end (the end pieces), with the generated code's values."""
    if not case.symbolic:
        return None
    x, P_ = case.x, _split(c, case)
    ends = ([(P_.pieces[-1].expr, OO), (P_.pieces[0].expr, -OO)] if P_ is not None else
            [(elementary(case.expr), OO), (elementary(case.expr), -OO)])
    for e, end in ends:
        try:
            lim = sympy.limit(e, x, end)
        except (NotImplementedError, ValueError, TypeError):
            continue
        if lim in (OO, -OO):
            s = 1 if end == OO else -1
            pts = [s * v for v in (10.0, 100.0, 1000.0)]
            vals = c.phi(case, pts)
            return refuted(f"unbounded{c.suffix(case)} {c.setting}: L -> {_s(lim)} as {x} -> {_s(end)} "
                           f"(sympy limit); L = {fmt(vals)} at {x} = {fmt(pts)} (float64, generated code)",
                           {**case.where(), "x": pts, "L": vals.tolist(), "limit": str(lim)})
    return None


def _pieces(c, case) -> Verdict | None:
    P_ = _split(c, case) if case.symbolic else None
    if P_ is None:
        return None
    x = case.x
    whys = [bounded_on(p.expr, x, p.lo, p.hi) for p in P_.pieces]
    at = [P_.expr.subs(x, k) for k in P_.kinks]
    if all(whys) and all(finite_real(v) for v in at):
        return proved(f"bounded{c.suffix(case)} {c.setting}: "
                      + "; ".join(f"{_s(p.expr)} on {p.interval()}: {w}" for p, w in zip(P_.pieces, whys))
                      + ("; at the kinks " + ", ".join(f"L({_s(k)}) = {_s(v)}" for k, v in zip(P_.kinks, at))
                         if P_.kinks else ""))
    return None


def _largest(c, case) -> Verdict:
    xs = np.array(grid(-OO, OO) + [1e4, -1e4])
    vals = c.phi(case, xs)
    return plausible(f"largest value {fmt(np.nanmax(np.abs(vals)))} on {len(xs)} points up to |{case.x}| = 1e4"
                     f"{c.suffix(case)} {c.setting}; not proved")


def row(c) -> Verdict:
    return climb(proof(lambda: _pt(c)), lambda: _ray(c), proof(lambda: _class_sums(c)),
                 otherwise=lambda: plausible(_sup_search(c)))


def _pt(c) -> Verdict | None:
    """L = g(p_t): bounded iff g has finite limits at 0+ and 1 and is continuous between."""
    g = c.g
    if g is None:
        return None
    low = sympy.limit(g, P, 0, "+")
    at1 = sympy.simplify(g.subs(P, 1))
    # continuous on (0, 1]: the premises are shown by enclosures over [0, 1] (the route of continuous_on
    # for a finite interval), which cover the closed end p = 1 too
    cont = continuous_on(elementary(g), P, 0, 1)
    if low.is_finite and at1.is_finite and cont is not None:
        return proved(f"L = g(p_t), g(p) = {_s(g)}, is continuous on (0, 1] with lim_(p->0+) g = {_s(low)} "
                      f"and g(1) = {_s(at1)} (sympy), so bounded on (0, 1] {c.setting}")
    if low in (OO, -OO):
        z = [np.array([-s, 0.0, 0.0]) for s in (10.0, 100.0, 1000.0)]
        vals = c.ev.row_np(np.array(z), [0, 0, 0])
        return refuted(f"unbounded {c.setting}: L = g(p_t) with g(p) = {_s(g)} and lim_(p_t->0+) g = "
                       f"{_s(low)} (sympy); along z = (-s, 0, 0), y = 0: L = {fmt(vals)} at s = 10, 100, 1000 "
                       f"(float64, generated code)",
                       {"z": [v.tolist() for v in z], "y": 0, "L": vals.tolist(), "limit": str(low)})
    return unknown(f"g(p) = {_s(g)}: lim_(p->0+) = {_s(low)}; continuity on (0, 1] not shown")


def _ray(c) -> Verdict | None:
    """Growth along a ray of logits in the generated code, confirmed by a sympy limit."""
    y = 0
    dirs = [(-1, 0, 0), (0, 1, 0), (0, 1, 1), (1, 0, 0), (1, 1, 1), (-1, -1, -1), (0, -1, 0), (0, 1, -1)]
    s = sympy.Symbol("s", positive=True)
    for d in dirs:
        pts = np.array([[k * v for v in d] for k in (10.0, 100.0, 1000.0)])
        vals = c.ev.row_np(pts, [y] * 3)
        if not (np.all(np.isfinite(vals)) and abs(vals[2]) > 10 * (1 + abs(vals[0])) and
                abs(vals[2]) > abs(vals[1]) > abs(vals[0])):
            continue
        try:
            lim = sympy.limit(concrete(c.spec, c.values, [s * v for v in d], y), s, OO)
        except Exception:  # noqa: BLE001
            continue
        if lim in (OO, -OO):
            return refuted(f"unbounded {c.setting}: along z = s*{d} with y = 0 (C = 3), L -> {_s(lim)} as "
                           f"s -> oo (sympy limit); L = {fmt(vals)} at s = 10, 100, 1000 (float64, generated code)",
                           {"direction": list(d), "y": y, "s": [10, 100, 1000], "L": vals.tolist(),
                            "limit": str(lim)})
    return None


def _class_sums(c) -> Verdict | None:
    found = sign_range(c.spec, c.values)
    if found is not None:
        _, r = found
        if r.finite:
            return proved(f"interval arithmetic on the loss in p_t and class sums: L in {r.text()} {c.setting}")
    return None


def _sup_search(c) -> str:
    rng = rng_for("sup", c.spec.hash)
    z = np.concatenate([rng.normal(size=(64, 3)) * s for s in (1, 10, 100)])
    vals = c.ev.row_np(z, rng.integers(0, 3, len(z)))
    return (f"no growth found along 8 rays (s up to 1000), largest value among {len(z)} random logit vectors "
            f"{fmt(np.nanmax(vals))} {c.setting}; not proved")
