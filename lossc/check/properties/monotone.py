"""``monotone``: the loss falls as the prediction gets better (margin up, the target's logit up, |r| down)."""

from __future__ import annotations

import math

import numpy as np
import sympy
import torch

from ..ladder import climb, proof
from ..numeric import DTYPE, fmt, rng_for
from ..onevar import compare, continuous_at, elementary, grid, is_smooth, kink_report, prove_sign, simpler
from ..row import P
from ..verdict import Verdict, plausible, proved, refuted, unknown

OO = sympy.oo
_s = sympy.sstr
WHAT = {"nonpos": "non-increasing", "nonneg": "non-decreasing",
        "unimodal": "non-increasing for r < 0 and non-decreasing for r > 0"}


def elementwise(c) -> Verdict:
    return c.each_case(lambda case: _case(c, case), f"{c.facts.monotone} {c.setting}:")


def _case(c, case) -> Verdict:
    want = case.monotone  # the kind's direction for this case
    what = WHAT[want]
    return climb(proof(lambda: _pieces(c, case, want, what)), lambda: _search(c, case, want, what),
                 otherwise=lambda: plausible(f"{what} on {len(grid(-OO, OO, 800))} grid points{c.suffix(case)} "
                                             f"{c.setting}; not proved"))


def _pieces(c, case, want: str, what: str) -> Verdict | None:
    """dL/dx of the wanted sign on every piece (for unimodal: <= 0 left of 0, >= 0 right of it), continuous
    at the kinks."""
    if not case.symbolic:
        return None
    x, P_ = case.x, c.pieces(case)
    whys = []
    for p in P_.pieces:
        d1 = simpler(sympy.diff(p.expr, x))
        spans = [(p.lo, p.hi, want)]
        if want == "unimodal":
            spans = []
            if p.lo == -OO or compare(p.lo, 0) < 0:
                spans.append((p.lo, sympy.Min(p.hi, 0) if p.hi != OO else 0, "nonpos"))
            if p.hi == OO or compare(p.hi, 0) > 0:
                spans.append((sympy.Max(p.lo, 0) if p.lo != -OO else 0, p.hi, "nonneg"))
        for lo, hi, w in spans:
            why = prove_sign(d1, x, lo, hi, w)
            if not why:
                return None
            whys.append(f"dL/d{x} = {_s(d1)} on ({_s(lo)}, {_s(hi)}): {why}")
    if all(continuous_at(v, lv, rv) for _, v, lv, rv, _, _ in kink_report(P_)):
        return proved(f"{what} in {x}{c.suffix(case)} {c.setting}: " + "; ".join(whys)
                      + ("; continuous at the kinks" if P_.kinks else ""))
    return None


def _search(c, case, want: str, what: str) -> Verdict | None:
    """The steepest wrong-way step on a grid of 800 points, re-evaluated."""
    xs = np.array(grid(-OO, OO, 800))
    v = c.phi(case, xs)
    if want == "unimodal":
        d = np.diff(v)
        bad = np.where(((xs[1:] <= 0) & (d > 1e-12 * (1 + np.abs(v[1:])))) |
                       ((xs[:-1] >= 0) & (d < -1e-12 * (1 + np.abs(v[1:])))))[0]
    else:
        d = np.diff(v) * (1 if want == "nonpos" else -1)
        bad = np.where(d > 1e-12 * (1 + np.abs(v[1:])))[0]
    if not len(bad):
        return None
    i = int(bad[np.argmax(np.abs(d[bad]))])
    a, b = (float(t) for t in c.phi(case, [xs[i], xs[i + 1]]))
    return refuted(f"not monotone{c.suffix(case)} {c.setting}: L({case.x} = {fmt(xs[i])}) = {fmt(a, 10)}, "
                   f"L({case.x} = {fmt(xs[i + 1])}) = {fmt(b, 10)} (should be {what}; float64, generated code)",
                   {**case.where(), "x1": float(xs[i]), "L1": a, "x2": float(xs[i + 1]), "L2": b})


CLASSES, SCALES, ROWS = (3, 5), (0.5, 2.0, 6.0), 48


def row(c) -> Verdict:
    return climb(lambda: _pt(c), lambda: _raise_target(c),
                 otherwise=lambda: plausible(f"dL/dz[y] <= 0 at {len(CLASSES) * len(SCALES) * ROWS} logit vectors "
                                             f"(C = 3, 5, confident and unconfident rows) {c.setting}; not proved"))


def _pt(c) -> Verdict | None:
    """L = g(p_t): g' <= 0 on (0, 1], or an increase past a zero of g' in the generated code."""
    if c.g is None or not is_smooth(elementary(c.g)):
        return None
    g = c.g
    dg = sympy.simplify(sympy.diff(g, P))
    why = prove_sign(dg, P, 0, 1, "nonpos")
    if why:
        return proved(f"L = g(p_t) with g'(p) = {_s(dg)} <= 0 on (0, 1] ({why}): non-increasing in p_t "
                      f"{c.setting}")
    try:
        crit = [r for r in sympy.solve(sympy.Eq(dg, 0), P) if r.is_real and 0 < r < 1]
    except (NotImplementedError, ValueError, TypeError):
        crit = []
    if not crit:
        xs = np.linspace(1e-3, 1 - 1e-6, 2000)
        vals = sympy.lambdify(P, elementary(g), "numpy")(xs)
        crit = [sympy.Float(xs[int(np.nanargmin(vals))])]
    p0 = crit[0]
    for p1 in (sympy.Rational(999999, 1000000), sympy.Rational(99, 100)):
        if p1 <= p0:
            continue
        zs = np.array([[math.log(float(p) / (1 - float(p))), 0.0] for p in (p0, p1)])
        vals = c.ev.row_np(zs, [0, 0])
        if vals[1] > vals[0] + 1e-12 * (1 + abs(vals[0])):
            return refuted(f"not monotone {c.setting}: g(p) = {_s(g)} has g'(p) = {_s(dg)}, zero at "
                           f"p_t = {_s(p0)}; L = {fmt(vals[0], 10)} at p_t = {fmt(float(p0))} (z = {fmt(zs[0])}) "
                           f"< L = {fmt(vals[1], 10)} at the larger p_t = {fmt(float(p1))} (z = {fmt(zs[1])}), "
                           f"C = 2, y = 0 (float64, generated code)",
                           {"z1": zs[0].tolist(), "z2": zs[1].tolist(), "y": 0, "L1": float(vals[0]),
                            "L2": float(vals[1]), "p_t1": float(p0), "p_t2": float(p1)})
    return unknown(f"g'(p) = {_s(dg)} is not shown <= 0 on (0, 1], and no increase was confirmed")


def _raise_target(c) -> Verdict | None:
    """Rows where dL/dz[y] > 0 (generated gradient): the loss after raising z[y] a little, re-evaluated."""
    rng = rng_for("monotone", c.spec.hash, sorted(c.ctx.params.items()))
    for C in CLASSES:
        for scale in SCALES:
            z = rng.normal(size=(ROWS, C)) * scale
            y = rng.integers(0, C, ROWS)
            z[np.arange(ROWS), y] += rng.uniform(0, 12, ROWS)  # confident rows too: p_t near 1
            zt, yt = torch.as_tensor(z, dtype=DTYPE), torch.as_tensor(y)
            g = c.ev.row_grad(zt, yt).numpy()[np.arange(ROWS), y]
            for i in np.argsort(-g)[:3]:
                if g[i] <= 1e-9:
                    break
                for h in (1e-3, 1e-2, 0.1):
                    z2 = z[i].copy()
                    z2[y[i]] += h
                    vals = c.ev.row_np(np.stack([z[i], z2]), [y[i], y[i]])
                    if vals[1] > vals[0] + 64 * np.finfo(float).eps * (1 + abs(vals[0])):
                        p = np.exp(z[i] - np.logaddexp.reduce(z[i]))
                        return refuted(
                            f"not monotone {c.setting}: raising the target logit lowers p_t's loss only up "
                            f"to a point: at z = {fmt(z[i])} (y = {int(y[i])}, p_t = {fmt(p[y[i]])}) "
                            f"L = {fmt(vals[0], 12)}, and with z[y] + {fmt(h)} L = {fmt(vals[1], 12)} "
                            f"(float64, generated code)",
                            {"z": z[i].tolist(), "y": int(y[i]), "h": h, "L": float(vals[0]),
                             "L_raised": float(vals[1])})
    return None
