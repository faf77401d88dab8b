"""``convex``: convex in the prediction (the score f, yhat, the logits z)."""

from __future__ import annotations

import numpy as np
import sympy
import torch

from ...ir import T
from ..curvature import affine, analyze, row_leaves
from ..ladder import UNDECIDED, climb
from ..numeric import DTYPE, fmt, rng_for
from ..onevar import compare, continuous_at, elementary, finite_real, grid, is_smooth, kink_report, prove_sign, simpler
from ..row import P
from ..verdict import Verdict, plausible, proved, refuted

OO = sympy.oo
CLASSES = (3, 5)
_s = sympy.sstr


def elementwise(c) -> Verdict:
    extra = ""
    if c.facts.soft_targets:
        e0, e1 = (case.expr for case in c.cases[::-1])
        if sympy.simplify(c.ctx.expr - ((1 - T) * e0 + T * e1)) == 0:
            extra = " (and for soft targets y in [0, 1]: the loss is affine in y)"
    return c.each_case(lambda case: _case(c, case),
                       f"convex in {c.facts.convex_in} for each target{extra} {c.setting}:")


def _case(c, case) -> Verdict:
    """DCP; a midpoint search (cheap, and decides most non-convex losses at once); the second derivative
    piece by piece and the slopes at the kinks; a midpoint search at the point where that proof failed."""
    tried = {"why": None, "witness": None}

    def pieces():
        if not case.symbolic:
            return None
        try:
            ok, text, tried["witness"] = _convex_pieces(c, case)
        except UNDECIDED as err:
            tried["why"] = str(err)
            return None
        if ok:
            return proved(f"convex in {case.x}{c.suffix(case)} {c.setting}: {text}")
        tried["why"] = text
        return None
    return climb(lambda: _dcp(c, case), lambda: _midpoint_search(c, case), pieces,
                 lambda: None if tried["witness"] is None else _midpoint_search(c, case, tried["witness"]),
                 otherwise=lambda: plausible(f"not proved ({tried['why']}); no midpoint violation on a grid of "
                                             f"400 points x 6 widths{c.suffix(case)} {c.setting}"))


def _dcp(c, case) -> Verdict | None:
    x = case.x
    result = analyze(case.expr, {x: affine(str(x), "the variable")})
    if result.curvature in ("convex", "affine", "constant"):
        return proved(f"convex in {x}{c.suffix(case)} by composition rules (DCP) {c.setting}:\n"
                      + result.proof())
    return None


def _convex_pieces(c, case):
    x = case.x
    e = elementary(case.expr)
    if is_smooth(e):
        d2 = simpler(sympy.diff(e, x, 2))
        why = prove_sign(d2, x, -OO, OO, "nonneg")
        if why:
            return True, f"d2L/d{x}2 = {_s(d2)} >= 0 ({why})", None
        return False, f"d2L/d{x}2 = {_s(d2)} not shown >= 0", _negative_point(d2, x, -OO, OO)
    P = c.pieces(case)
    lines = []
    for piece in P.pieces:
        d2 = simpler(sympy.diff(piece.expr, x, 2))
        why = prove_sign(d2, x, piece.lo, piece.hi, "nonneg")
        if not why:
            return False, f"on {piece.interval()} d2/d{x}2 = {_s(d2)} not shown >= 0", \
                _negative_point(d2, x, piece.lo, piece.hi)
        lines.append(f"{_s(piece.expr)} on {piece.interval()}: second derivative {_s(d2)} >= 0")
    for k, value, lv, rv, ls, rs in kink_report(P):
        if not continuous_at(value, lv, rv):
            return False, f"not shown continuous at {x} = {_s(k)} (limits {_s(lv)}, {_s(rv)}, value {_s(value)})", k
        if not (finite_real(ls) and finite_real(rs)):
            return False, f"one-sided slopes {_s(ls)}, {_s(rs)} at the kink {x} = {_s(k)} not finite", k
        if compare(ls, rs) > 0:
            return False, f"the slope drops at the kink {x} = {_s(k)}: {_s(ls)} on the left, {_s(rs)} on the right", k
        lines.append(f"kink at {x} = {_s(k)}: continuous (value {_s(value)}), slope {_s(ls)} -> {_s(rs)} "
                     f"does not decrease")
    return True, ("piecewise: " + "; ".join(lines) + " — each piece convex, continuous, slopes non-decreasing "
                  "at the kinks, hence convex (not sympy's is_convex, which is wrong at kinks)"), None


def _negative_point(e, x, lo, hi):
    try:
        f = sympy.lambdify(x, elementary(e), "numpy")
        xs = np.array(grid(lo, hi))
        with np.errstate(all="ignore"):
            v = np.asarray(f(xs), dtype=float) * np.ones_like(xs)
        v = np.where(np.isfinite(v), v, np.inf)
        i = int(np.argmin(v))
        return sympy.Float(xs[i]) if v[i] < 0 else None
    except Exception:  # noqa: BLE001
        return None


def _midpoint_search(c, case, witness=None) -> Verdict | None:
    xs = np.array(([float(witness)] if witness is not None else []) + grid(-OO, OO, 400))
    for h in (1e-3, 1e-2, 0.1, 0.5, 2.0, 8.0):
        a, b = c.phi(case, xs - h), c.phi(case, xs + h)
        m = c.phi(case, xs)
        gap = m - 0.5 * (a + b)
        tol = 64 * np.finfo(float).eps * (np.abs(a) + np.abs(b) + 2 * np.abs(m)) + 1e-13
        ok = np.isfinite(gap) & (gap > tol)
        if ok.any():
            i = int(np.argmax(np.where(ok, gap, -np.inf)))
            x0 = xs[i]
            va, vm, vb = (float(c.phi(case, [v])[0]) for v in (x0 - h, x0, x0 + h))  # re-evaluated
            if vm - 0.5 * (va + vb) > tol[i]:
                return refuted(
                    f"not convex{c.suffix(case)} {c.setting}: L({case.x} = {fmt(x0)}) = {fmt(vm, 10)} > "
                    f"(L({fmt(x0 - h)}) + L({fmt(x0 + h)}))/2 = {fmt(0.5 * (va + vb), 10)} (float64, generated code)",
                    {**case.where(), "x": x0, "h": h, "L": vm, "L_minus": va, "L_plus": vb})
    return None


def row(c) -> Verdict:
    result = analyze(c.ctx.expr, row_leaves(c.spec.reductions))
    tested = {}

    def dcp():
        if result.curvature in ("convex", "affine", "constant"):
            return proved(f"convex in z by composition rules (DCP), for every C, {c.setting}:\n"
                          + result.proof())
        return None
    return climb(dcp, lambda: _convex_pt(c), lambda: _hessian_search(c, tested),
                 otherwise=lambda: plausible(
                     f"not proved by the composition rules ({result.reasons[-1] if result.reasons else ''}); "
                     f"no violation in {tested['count']} numerical tests (Hessians and midpoints at C = "
                     f"3, 5, logit scales 0.3-8) {c.setting}"))


def _convex_pt(c) -> Verdict | None:
    """L = g(p_t) = G(d), d = z_y - lse: Hessian G''(d) w w^T - G'(d) Sigma with w = e_y - p,
    Sigma = diag p - p p^T, and v^T Sigma v >= p/(1-p) (w^T v)^2 (Cauchy-Schwarz). With g' <= 0 the
    Hessian is PSD when kappa(p) = g'(p) (1 - 2p)/(1 - p) + p g''(p) >= 0 on (0, 1)."""
    g = c.g
    if g is None or not is_smooth(g):
        return None
    g1, g2 = sympy.diff(g, P), sympy.diff(g, P, 2)
    dec = prove_sign(g1, P, 0, 1, "nonpos")
    if not dec:
        return None
    kappa = sympy.factor(sympy.cancel(sympy.together(g1 * (1 - 2 * P) / (1 - P) + P * g2)))
    why = prove_sign(kappa, P, 0, 1, "nonneg")
    if not why:
        return None
    return proved(
        f"convex in z, for every C, {c.setting}: L = g(p_t) with g(p) = {_s(g)}; with d = z[y] - lse(z), "
        f"w = e_y - p and S = diag p - p p^T the Hessian is G''(d) w w^T - G'(d) S (G(d) = g(e^d)); "
        f"v^T S v >= p_t/(1 - p_t) (w^T v)^2 for every v (Cauchy-Schwarz), and G' = p g' <= 0 ({dec}), so "
        f"v^T H v >= p_t (w^T v)^2 kappa(p_t) with kappa(p) = g'(p)(1 - 2p)/(1 - p) + p g''(p) = {_s(kappa)} "
        f">= 0 ({why})")


def _hessian_search(c, tested: dict) -> Verdict | None:
    """Negative Hessian eigenvalues (autograd of the generated code) checked by midpoints, and midpoints
    along random lines (kinks, where Hessians are zero); ``tested['count']``: how many tests."""
    rng = rng_for("convex", c.spec.hash, sorted(c.ctx.params.items()))
    count = 0
    for C in CLASSES:
        for scale in (0.3, 1.0, 3.0, 8.0):
            M = 24
            z = torch.as_tensor(rng.normal(size=(M, C)) * scale, dtype=DTYPE)
            y = torch.as_tensor(rng.integers(0, C, size=M))
            H = _hessians(c, z, y)
            count += M
            if H is None:
                continue
            lam, vecs = torch.linalg.eigh(H)
            top = lam.abs().amax(1).clamp_min(1.0)
            bad = (lam[:, 0] < -1e-6 * top).nonzero().flatten().tolist()
            for i in bad[:4]:
                v = vecs[i, :, 0]
                found = _midpoint(c, z[i], int(y[i]), v)
                if found is not None:
                    return found
            # midpoint tests along random lines catch kinks, where Hessians are zero
            V = torch.as_tensor(rng.normal(size=(M, C)), dtype=DTYPE)
            for i in range(M):
                found = _midpoint(c, z[i], int(y[i]), V[i] / V[i].norm(), steps=(0.05, 0.5))
                count += 1
                if found is not None:
                    return found
    tested["count"] = count
    return None


def _hessians(c, z, y):
    z = z.clone().requires_grad_(True)
    try:
        (g,) = torch.autograd.grad(c.ev.row(z, y).sum(), z, create_graph=True)
        rows = []
        for j in range(z.shape[1]):
            (h,) = torch.autograd.grad(g[:, j].sum(), z, retain_graph=True, allow_unused=True)
            rows.append(torch.zeros_like(z) if h is None else h)
    except RuntimeError:
        return None
    H = torch.stack(rows, 1).detach()
    H = 0.5 * (H + H.transpose(1, 2))
    return torch.nan_to_num(H, nan=0.0)


def _midpoint(c, z, y, v, steps=(1e-2, 0.1, 0.5)) -> Verdict | None:
    for h in steps:
        pts = torch.stack([z - h * v, z, z + h * v]).numpy()
        vals = c.ev.row_np(pts, [y] * 3)
        if not np.all(np.isfinite(vals)):
            continue
        gap = vals[1] - 0.5 * (vals[0] + vals[2])
        tol = 64 * np.finfo(np.float64).eps * np.abs(vals).sum() + 1e-12
        if gap > tol:
            again = c.ev.row_np(pts, [y] * 3)  # re-evaluated before it is reported
            if again[1] - 0.5 * (again[0] + again[2]) > tol:
                a, m, b = pts
                return refuted(
                    f"not convex: at z = {fmt(m)} (y = {y}) L = {fmt(again[1], 10)} exceeds the mean "
                    f"{fmt(0.5 * (again[0] + again[2]), 10)} of L at z ± {fmt(h)}·v = {fmt(a)}, {fmt(b)} "
                    f"(float64, generated code) {c.setting}",
                    {"z": m.tolist(), "y": y, "z_minus": a.tolist(), "z_plus": b.tolist(),
                     "L": float(again[1]), "L_minus": float(again[0]), "L_plus": float(again[2])})
    return None
