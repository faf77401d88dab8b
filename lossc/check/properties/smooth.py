"""``smooth``: the gradient is Lipschitz (value and derivative continuous at every kink, the second
derivative bounded)."""

from __future__ import annotations

import numpy as np
import sympy
import torch

from ...ir import LSE, NUM_CLASSES, P_T, Z_J, Z_Y
from ..ladder import UNDECIDED, climb
from ..numeric import DTYPE, fmt, rng_for
from ..onevar import bounded_on, compare, continuous_at, elementary, finite_real, is_smooth, kink_report, simpler
from ..verdict import Verdict, plausible, proved, refuted, unknown

OO = sympy.oo
D = sympy.Symbol("d", nonpositive=True)  # d = z[y] - lse(z) = log p_t <= 0
_s = sympy.sstr


def elementwise(c) -> Verdict:
    return c.each_case(lambda case: climb(lambda: _located(c, case), lambda: _kinks(c, case),
                                          otherwise=lambda: _pieces(c, case)),
                       f"gradient Lipschitz for each target {c.setting}:")


def _located(c, case) -> Verdict | None:
    """Unknown unless the case is symbolic and split at its kinks."""
    if not case.symbolic:
        return unknown("the loss depends on the target beyond the residual: not decided")
    try:
        c.pieces(case)
    except UNDECIDED as err:
        return unknown(f"kinks not located: {err}")
    return None


def _kinks(c, case) -> Verdict | None:
    """At every kink the value and the derivative continuous (equal finite one-sided limits); else refuted
    (a jump, an infinite slope) or unknown."""
    x = case.x
    for k, value, lv, rv, ls, rs in kink_report(c.pieces(case)):
        if not continuous_at(value, lv, rv):
            jump = _value_jump(c, case, k, value, lv, rv)
            if jump is not None:
                return jump
            return unknown(f"continuity of the value at the kink {x} = {_s(k)} not shown (limits {_s(lv)}, "
                           f"{_s(rv)}, value {_s(value)})")
        if not (finite_real(ls) and finite_real(rs)):
            if ls in (OO, -OO) or rs in (OO, -OO):
                return _steep(c, case, k, ls if ls in (OO, -OO) else rs, "the derivative",
                              -1 if ls in (OO, -OO) else 1)
            return unknown(f"one-sided derivatives {_s(ls)}, {_s(rs)} at the kink {x} = {_s(k)} not shown finite")
        if compare(ls, rs) != 0:
            eps = 1e-7
            ga, gb = c.dphi(case, [float(k) - eps, float(k) + eps])
            return refuted(f"not smooth{c.suffix(case)} {c.setting}: the derivative jumps at the kink "
                           f"{x} = {_s(k)} from {_s(ls)} to {_s(rs)} (sympy); generated gradient "
                           f"{fmt(ga)} at {fmt(float(k) - eps, 10)} and {fmt(gb)} at {fmt(float(k) + eps, 10)}: "
                           f"no Lipschitz constant",
                           {**case.where(), "kink": float(k), "x1": float(k) - eps, "grad1": float(ga),
                            "x2": float(k) + eps, "grad2": float(gb)})
    return None


def _pieces(c, case) -> Verdict:
    """The second derivative bounded on every piece (proved); else refuted where it tends to +-oo."""
    x, P = case.x, c.pieces(case)
    whys = []
    for p in P.pieces:
        d2 = simpler(sympy.diff(p.expr, x, 2))
        why = bounded_on(d2, x, p.lo, p.hi)
        if why:
            whys.append(f"{_s(d2)} on {p.interval()}: {why}")
            continue
        for end, side in ((p.lo, "+"), (p.hi, "-")):
            try:
                lim = sympy.limit(d2, x, end) if end in (OO, -OO) else sympy.limit(d2, x, end, side)
            except (NotImplementedError, ValueError, TypeError):
                continue
            if lim not in (OO, -OO):
                continue
            if end in (OO, -OO):
                s = 1 if end == OO else -1
                pts = [s * v for v in (10.0, 20.0, 40.0)]
                ratios = []
                for a in pts:
                    ga, gb = c.dphi(case, [a, a + s * 1e-3])
                    ratios.append(abs(gb - ga) / 1e-3)
                return refuted(
                    f"not smooth{c.suffix(case)} {c.setting}: d2L/d{x}2 = {_s(d2)} -> {_s(lim)} as "
                    f"{x} -> {_s(end)} (sympy limit), so the gradient has no Lipschitz constant; "
                    f"|dL(a) - dL(a + h)|/h = {fmt(ratios)} at a = {fmt(pts)}, h = 1e-3 (float64, generated code)",
                    {**case.where(), "a": pts, "h": 1e-3, "ratios": ratios, "limit": str(lim)})
            return _steep(c, case, end, lim, f"d2L/d{x}2 = {_s(d2)}", 1 if side == "+" else -1)
        return unknown(f"second derivative {_s(d2)} on {p.interval()} not shown bounded")
    return proved(f"gradient Lipschitz{c.suffix(case)} {c.setting}: "
                  + ("value and derivative continuous at the kinks "
                     + ", ".join(_s(k) for k in P.kinks) + " (equal one-sided limits, sympy); " if P.kinks else "")
                  + "second derivative bounded on every piece: " + "; ".join(whys))


def _value_jump(c, case, k, value, lv, rv) -> Verdict | None:
    """Refuted when the value jumps at the kink (finite limits or value that differ), with the generated
    code's values beside it; None when the limits are not finite numbers."""
    if not all(finite_real(v) for v in (value, lv, rv)):
        return None
    if compare(lv, value) == 0 and compare(rv, value) == 0:
        return None
    x, kf = case.x, float(k)
    eps = 1e-9 * max(1.0, abs(kf))
    pts = [kf - eps, kf, kf + eps]
    vals = c.phi(case, pts)
    return refuted(f"not smooth{c.suffix(case)} {c.setting}: the value jumps at the kink {x} = {_s(k)}: "
                   f"limit {_s(lv)} from the left, {_s(rv)} from the right, value {_s(value)} there (sympy), so L "
                   f"is not differentiable there; generated code: L = {fmt(vals, 10)} at {x} = {fmt(pts, 12)} "
                   f"(float64)", {**case.where(), "kink": kf, "x": pts, "L": vals.tolist(),
                                  "limits": [str(lv), str(rv)], "value": str(value)})


def _steep(c, case, k, lim, what: str, side: int) -> Verdict:
    """Refuted: ``what`` tends to +-oo at the finite point k from one side (side -1: from the left), so the
    gradient is not Lipschitz there; the generated gradient's difference quotients beside it."""
    x, kf = case.x, float(k)
    hs = [1e-2, 1e-4, 1e-6]
    ratios = []
    for h in hs:
        a = kf + side * h
        ga, gb = c.dphi(case, [a, a + side * h / 2])
        ratios.append(float(abs(gb - ga) / (h / 2)))
    return refuted(f"not smooth{c.suffix(case)} {c.setting}: {what} -> {_s(lim)} as {x} -> {_s(k)} "
                   f"from the {'left' if side < 0 else 'right'} (sympy limit): no Lipschitz constant for the "
                   f"gradient; |dL(a) - dL(a + s h/2)|/(h/2) = {fmt(ratios)} at a = {_s(k)} + s h, h = "
                   f"{fmt(hs)} (float64, generated code)",
                   {**case.where(), "point": kf, "side": side, "h": hs, "ratios": ratios, "limit": str(lim)})


def row(c) -> Verdict:
    return climb(lambda: _symbolic(c), lambda: _gradient_jump(c),
                 otherwise=lambda: plausible(f"no gradient jump found; not proved {c.setting}"))


def _symbolic(c) -> Verdict | None:
    e = elementary(c.ctx.expr).xreplace({P_T: sympy.exp(Z_Y - LSE)})
    if not is_smooth(e) or any(not is_smooth(elementary(r.body)) for r in c.spec.reductions):
        return None  # a kink or a jump: differentiating branch by branch would not see it
    coeffs, lines = {}, []
    for r in c.spec.reductions:
        body = elementary(r.body.xreplace(c.values))
        if r.op != "sum" or body.free_symbols - {Z_J}:
            return None
        h2 = sympy.simplify(sympy.diff(body, Z_J, 2))
        b = bounded_on(h2, Z_J, -sympy.oo, sympy.oo)
        if b is None:
            return None
        k = sympy.diff(e, r.symbol)
        if k.free_symbols - {NUM_CLASSES}:
            return None
        coeffs[r.symbol] = k
        lines.append(f"{r.symbol}: h'' = {_s(h2)} bounded ({b})")
    a = sympy.diff(e, LSE) + sympy.diff(e, Z_Y)  # with z[y] = lse + d, lse's total coefficient
    rest = sympy.expand(e.xreplace({Z_Y: LSE + D}))
    for s, k in coeffs.items():
        rest = rest - k * s
    a = sympy.simplify(sympy.diff(rest, LSE))
    if a.free_symbols - {NUM_CLASSES}:
        return None
    G = sympy.simplify(rest - a * LSE)
    if G.free_symbols - {D}:
        return None
    G1, G2 = sympy.diff(G, D), sympy.diff(G, D, 2)
    b1 = bounded_on(G1, D, -sympy.oo, 0)
    b2 = bounded_on(G2, D, -sympy.oo, 0)
    if b1 is None or b2 is None:
        return None
    return proved(
        f"L = G(d) + ({_s(a)}) lse(z) + class sums, d = z[y] - lse(z) <= 0, G(d) = {_s(G)} {c.setting}; "
        f"Hessian = G''(d) (e_y - p)(e_y - p)^T - G'(d) (diag p - p p^T) + ({_s(a)}) (diag p - p p^T) + "
        f"diag(c_k h_k''(z_j)), and ||e_y - p||^2 <= 2, ||diag p - p p^T|| <= 1/2; G' = {_s(sympy.simplify(G1))} "
        f"is bounded on d <= 0 ({b1}), G'' = {_s(sympy.simplify(G2))} is bounded ({b2})"
        + ("; " + "; ".join(lines) if lines else "") + ": the gradient is Lipschitz")


def _gradient_jump(c) -> Verdict | None:
    """Where the loss has a kink (a branch, a max): a jump of the generated gradient along random lines,
    bisected to the point."""
    nonsmooth = not is_smooth(elementary(c.ctx.expr)) or any(
        not is_smooth(elementary(r.body)) or r.op == "max" for r in c.spec.reductions)
    if not nonsmooth:
        return None
    rng = rng_for("smooth", c.spec.hash, sorted(c.ctx.params.items()))
    C = 3
    for _ in range(12):
        z0 = rng.normal(size=C) * 2
        v = rng.normal(size=C)
        v /= np.linalg.norm(v)
        y = int(rng.integers(0, C))
        ts = np.linspace(-2, 2, 401)
        pts = torch.as_tensor(z0[None] + ts[:, None] * v[None], dtype=DTYPE)
        g = c.ev.row_grad(pts, torch.full((len(ts),), y)).numpy()
        jumps = np.linalg.norm(np.diff(g, axis=0), axis=1)
        i = int(np.argmax(jumps))
        if jumps[i] < 1e-3:
            continue
        a, b = ts[i], ts[i + 1]
        ga, gb = g[i], g[i + 1]
        for _ in range(60):  # bisect to the jump
            m = 0.5 * (a + b)
            gm = c.ev.row_grad(torch.as_tensor((z0 + m * v)[None], dtype=DTYPE),
                                  torch.tensor([y])).numpy()[0]
            if np.linalg.norm(gm - ga) > np.linalg.norm(gb - gm):
                b, gb = m, gm
            else:
                a, ga = m, gm
            if b - a < 1e-10:
                break
        jump = float(np.linalg.norm(gb - ga))
        if jump > 1e-3:
            za, zb = z0 + a * v, z0 + b * v
            return refuted(f"not smooth {c.setting}: the gradient jumps by {fmt(jump)} between z = {fmt(za)} "
                           f"and z = {fmt(zb)}, {fmt(b - a, 2)} apart (y = {y}; float64, generated code): no "
                           f"Lipschitz constant below {fmt(jump / (b - a), 3)}, and the jump does not shrink "
                           f"with the distance",
                           {"z1": za.tolist(), "z2": zb.tolist(), "y": y, "grad1": ga.tolist(),
                            "grad2": gb.tolist()})
    return None
