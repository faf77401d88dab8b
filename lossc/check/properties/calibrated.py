"""``calibrated``: minimising the conditional risk picks the Bayes class (classification calibration)."""

from __future__ import annotations

import numpy as np
import sympy
import torch

from ...ir import NUM_CLASSES, U
from ..curvature import NONNEG, POS, ZERO, constant_sign
from ..interval import enclose_on
from ..ladder import climb
from ..numeric import DTYPE, dirichlet_posteriors, fmt, margin_of, minimise, rng_for
from ..onevar import (Undecided, compare, continuous_at, elementary, finite_real, grid, is_smooth, kink_report,
                      pieces_of, prove_sign)
from ..row import P
from ..verdict import Verdict, not_applicable, plausible, proved, refuted
from .proper import nonneg_01, pstar_map, separable_phi, strictly_proper

OO = sympy.oo
HALF = sympy.Rational(1, 2)
_s = sympy.sstr


def elementwise(c) -> Verdict:
    if c.labels is None:
        return not_applicable("calibration is about classification; this is a regression loss")
    lp, lm = c.partial_losses()
    return climb(lambda: _calibrated_convex(c, lp, lm) if c.convex().verdict == "proved" else None,
                 lambda: _calibrated_symmetric(c, lp, lm), lambda: _risk_scan(c, lp, lm),
                 otherwise=lambda: plausible(f"scan of eta in (1/2, 1) x scores in [-60, 60] and far points found "
                                             f"H^-(eta) > H(eta) everywhere {c.setting}; not proved"))


def _slope_at_zero(e):
    """e'(0), or None if e has a kink at 0."""
    e = elementary(e)
    if is_smooth(e):
        return sympy.simplify(sympy.diff(e, U).subs(U, 0))
    P = pieces_of(e, U)
    for k, value, lv, rv, ls, rs in kink_report(P):
        if compare(k, 0) == 0:
            if not (continuous_at(value, lv, rv) and finite_real(ls) and finite_real(rs)):
                return None
            return None if compare(ls, rs) != 0 else ls
    for piece in P.pieces:
        if (piece.lo == -OO or compare(piece.lo, 0) < 0) and (piece.hi == OO or compare(piece.hi, 0) > 0):
            return sympy.simplify(sympy.diff(piece.expr, U).subs(U, 0))
    return None


def _calibrated_convex(c, lp, lm) -> Verdict | None:
    try:
        dp, dm = _slope_at_zero(lp), _slope_at_zero(lm)
    except (Undecided, NotImplementedError, TypeError, ValueError):
        return None
    if dp is None or dm is None:
        found = _risk_scan(c, lp, lm)
        if found is not None:
            return Verdict("refuted", "convex but not differentiable at 0 (Bartlett, Jordan & McAuliffe "
                           "2006, Thm 6)\n" + found.evidence, found.counterexample)
        return None
    name = c.facts.slope
    if compare(dp, 0) < 0 and compare(dp + dm, 0) == 0:
        psi = _psi(c, lp, lm)
        text = (f"convex, differentiable at 0 with {name} = {_s(dp)} < 0 {c.setting}: classification-"
                f"calibrated (Bartlett, Jordan & McAuliffe 2006, Thm 6" +
                c.facts.slope_note + ")")
        if psi:
            text += f"; psi-transform psi(theta) = {psi}"
        return proved(text)
    found = _risk_scan(c, lp, lm)
    if found is not None:
        return Verdict("refuted", f"convex with {name} = {_s(dp)} (and l'(0) sum {_s(dp + dm)}): not "
                       f"calibrated by Bartlett, Jordan & McAuliffe 2006, Thm 6\n" + found.evidence,
                       found.counterexample)
    return None


def _psi(c, lp, lm) -> str | None:
    """psi(theta) = phi(0) - H((1+theta)/2) when H has a closed form (smooth convex losses)."""
    eta, theta = sympy.Symbol("eta", positive=True), sympy.Symbol("theta", positive=True)
    Ceta = elementary(eta * lp + (1 - eta) * lm)
    if not is_smooth(Ceta):
        return _psi_pieces(Ceta, eta, theta)
    try:
        sols = sympy.solve(sympy.diff(Ceta, U), U)
    except (NotImplementedError, ValueError, TypeError):
        return None
    sols = [s for s in sols if s.is_real is not False]
    if len(sols) != 1:
        return None
    H = sympy.simplify(Ceta.subs(U, sols[0]))
    psi = sympy.simplify(Ceta.subs(U, 0).subs(eta, 0) * 0 + elementary(lp).subs(U, 0)
                         - H.subs(eta, (1 + theta) / 2))
    return f"{_s(psi)} for theta in (0, 1) (minimiser a*(eta) = {_s(sympy.simplify(sols[0]))}, sympy)"


def _psi_pieces(Ceta, eta, theta) -> str | None:
    """For piecewise-linear convex C_eta: the minimum is at a kink (found with eta in (1/2, 1))."""
    w = sympy.Symbol("w", positive=True)
    try:
        kinks = set()
        for node in sympy.preorder_traversal(Ceta):
            if isinstance(node, (sympy.Max, sympy.Min)):
                args = node.args
                for i in range(len(args)):
                    for j in range(i + 1, len(args)):
                        kinks.update(sympy.solve(args[i] - args[j], U))
        values = [sympy.simplify(Ceta.subs(U, k).rewrite(sympy.Piecewise)) for k in kinks]
        values = [sympy.piecewise_fold(v) for v in values]
        sub = {eta: (1 + w / (1 + w)) / 2}  # eta in (1/2, 1) as w ranges over (0, oo)
        best = None
        for v in values:
            vv = sympy.simplify(v.subs(sub))
            if vv.has(sympy.Piecewise, sympy.Max, sympy.Min):
                return None
            if best is None or (sympy.simplify(vv - best[1]).is_negative):
                best = (v, vv)
            elif not sympy.simplify(vv - best[1]).is_nonnegative:
                return None
        if best is None:
            return None
        phi0 = sympy.simplify(Ceta.subs(U, 0).subs(eta, 0))
        psi = sympy.simplify(phi0 - best[0].subs(eta, (1 + theta) / 2))
        return f"{_s(psi)} for theta in (0, 1) (minimum of C_eta at a kink, sympy)"
    except Exception:  # noqa: BLE001
        return None


def _calibrated_symmetric(c, lp, lm) -> Verdict | None:
    if c.sums_differ() is not None:
        return None
    total = sympy.simplify(elementary(lp + lm))
    if total.free_symbols:
        by_pieces = c.constant_by_pieces(elementary(lp + lm))
        if by_pieces is None:
            return None
        total = by_pieces[0]
    mono = c.monotone()
    if mono.verdict != "proved":
        return None
    e = elementary(lp)
    at0 = sympy.simplify(e.subs(U, 0))
    try:
        lim = sympy.limit(pieces_of(e, U).pieces[-1].expr, U, OO)
    except (Undecided, NotImplementedError, TypeError, ValueError):
        return None
    if compare(at0, lim) <= 0 if lim.is_finite else lim != -OO:
        return None
    return proved(f"l(f) + l(-f) = {_s(total)} is constant and l is non-increasing with l(0) = {_s(at0)} > "
                  f"lim_(f->oo) l = {_s(lim)} {c.setting}: C_eta(f) = (1-eta) {_s(total)} + (2 eta - 1) l(f), "
                  f"so for eta > 1/2 the infimum over f <= 0 is l(0)'s, strictly above the infimum: "
                  f"classification-calibrated")


def _risk_scan(c, lp, lm) -> Verdict | None:
    xs = np.array(sorted(set(grid(-OO, OO, 1200)) | {-1e4, -1e3, 1e3, 1e4}))
    tp, tm = c.labels
    vp = c.ev.elem_np(xs, np.full_like(xs, tp))
    vm = c.ev.elem_np(xs, np.full_like(xs, tm))
    for eta in (0.55, 0.6, 0.7, 0.8, 0.9, 0.95, 0.45, 0.4, 0.3, 0.2, 0.1):
        C = eta * vp + (1 - eta) * vm
        C = np.where(np.isfinite(C), C, np.inf)
        sgn = 1 if eta > 0.5 else -1
        wrong = xs * sgn <= 0
        H = float(C.min())
        Hw = float(C[wrong].min())
        tol = 1e-9 * (1 + abs(H))
        right_best = float(C[~wrong].min()) if (~wrong).any() else np.inf
        if Hw <= H + tol and Hw <= right_best:
            i = int(np.argmin(np.where(wrong, C, np.inf)))
            a = float(xs[i])
            again = eta * c.ev.elem_np([a], [tp])[0] + (1 - eta) * c.ev.elem_np([a], [tm])[0]
            return refuted(
                f"not calibrated {c.setting}: for eta = P(y = +1) = {eta} the conditional risk C_eta(f) = "
                f"eta l_+(f) + (1 - eta) l_-(f) is lowest, among {len(xs)} scores in [-1e4, 1e4], at the "
                f"wrong-sign score f = {fmt(a)}: C = {fmt(again, 10)} <= {fmt(right_best, 10)}, the best with the "
                f"right sign (float64, generated code): H^-(eta) = H(eta) (MATH.md's scan)",
                {"eta": eta, "f": a, "risk": float(again), "best_right_sign": right_best,
                 "targets": [tp, tm]})
    return None


def row(c) -> Verdict:
    return climb(lambda: _calibrated_pt(c), lambda: _calibrated_map(c), lambda: _strictly_proper(c),
                 otherwise=lambda: _calibrated_numeric(c))


def _strictly_proper(c) -> Verdict | None:
    """Strict properness (the separable route of 'proper', whose evidence says 'strictly proper')."""
    if c.sep is not None and c.sep_smooth and strictly_proper(c.proper()):
        return proved(f"strictly proper (see 'proper'): the unique minimiser p* = q has the argmax of q, and "
                      f"R is lower semicontinuous on the closed simplex, so predictions with a wrong argmax "
                      f"have a strictly larger infimum (Tewari & Bartlett 2007) {c.setting}")
    return None


def _calibrated_pt(c) -> Verdict | None:
    g = c.g
    if g is None:
        return None
    dg = sympy.simplify(sympy.diff(g, P))
    if not is_smooth(g):
        return None
    whole = prove_sign(dg, P, 0, 1, "nonpos")
    box = enclose_on(elementary(dg), P, 0, HALF, pieces=32)
    if whole is None or not box.hi < 0 or sympy.simplify(dg) == 0:
        return None
    at1 = sympy.limit(g, P, 1, "-")
    if not at1.is_finite:  # g must be bounded below (by g(1)) for the infima to be finite
        return None
    return proved(
        f"L = g(p_t) with g(p) = {_s(g)}, g'(p) = {_s(dg)} {c.setting}: g' <= 0 on (0, 1] ({whole}) and "
        f"g' < 0 on (0, 1/2] (interval arithmetic: g' in {box.text()}); g is analytic and not constant, so "
        f"strictly decreasing, and bounded below by g(1) = {_s(at1)}. Swapping or shifting mass towards argmax q lowers R(p; q) = sum_j q_j g(p_j), "
        f"so every minimiser over the closed simplex has its argmax in argmax q, and by compactness the "
        f"infimum over wrong-argmax predictions is strictly larger: classification-calibrated "
        f"(Zhang 2004; Tewari & Bartlett 2007)")


def _calibrated_map(c) -> Verdict | None:
    if not (c.sep is not None and c.sep.terms and c.sep_smooth):
        return None
    q, phi = separable_phi(c)
    text = pstar_map(phi, q)
    if text is None:
        return None
    lam = sympy.Symbol("lam")
    sols = sympy.solve(sympy.Eq(sympy.diff(phi, P), lam), P)
    p = sympy.expand(sols[0])
    a, b = sympy.diff(p, q), p.subs(q, 0)
    lamv = sympy.solve(sympy.Eq(a + NUM_CLASSES * b, 1), lam)[0]
    slope = sympy.simplify(a.subs(lam, lamv))
    if constant_sign(sympy.simplify(b.subs(lam, lamv))) not in (POS, NONNEG, ZERO):
        return None  # p* could leave the simplex: the minimiser would not be the stationary point
    second = sympy.simplify(sympy.diff(phi, P, 2))
    B = sympy.simplify(second.subs(q, 0))
    A = sympy.simplify(sympy.diff(second, q))
    strict = nonneg_01(B) and prove_sign(A + B, P, 0, 1, "nonneg") and sympy.simplify(A + B) != 0
    if constant_sign(slope) != POS or not strict:
        return None
    return proved(f"{text}: p* is strictly increasing in q (slope {_s(slope)} > 0) and R is strictly convex in "
                  f"p (d2phi/dp2 = {_s(second)}), so the unique minimiser has the argmax of q: "
                  f"classification-calibrated {c.setting}")


def _calibrated_numeric(c) -> Verdict:
    rng = rng_for("calibrated", c.spec.hash, sorted(c.ctx.params.items()))
    tested = 0
    for C, n in ((3, 10), (4, 4)):
        qs = dirichlet_posteriors(C, rng, n)
        found = _calibration_counterexample(c, qs, C)
        tested += len(qs)
        if found is not None:
            return found
    return plausible(f"for {tested} posteriors q (Dirichlet draws, near-ties, near-vertices; C = 3, 4) the "
                     f"lowest risk found with a wrong argmax stayed above the lowest risk found (L-BFGS from "
                     f"several starts, limits along rays) {c.setting}; not a proof")


def _starts(q: np.ndarray, rng) -> list[np.ndarray]:
    C = len(q)
    out = [np.zeros(C), np.log(q), 3 * np.log(q), 10 * np.log(q)]
    out += [rng.normal(size=C) * 2 for _ in range(2)]
    if C <= 3:  # 0/1 corners: where piecewise-linear risks (multiclass hinges) have their minimisers
        out += [np.array([(b >> i) & 1 for i in range(C)], dtype=float) for b in range(1, 2 ** C - 1)]
    return out


def _ray_points(C: int) -> list[np.ndarray]:
    """Points far along rays: where infima at infinity are approached."""
    dirs = []
    for k in range(C):
        e = np.zeros(C)
        e[k] = 1
        dirs += [e, -e]
        for m in range(C):
            if m != k:
                f = e.copy()
                f[m] = 0.5
                dirs.append(f)
    return [s * d for d in dirs for s in (10.0, 1e2, 1e4, 1e8)]


def _calibration_counterexample(c, qs: np.ndarray, C: int) -> Verdict | None:
    rng = rng_for("starts", C, c.spec.hash)
    rays = np.array(_ray_points(C))
    qs = [q for q in qs if margin_of(q) >= 0.05]  # near-ties have tiny gaps: no tolerance tells them from 0
    if not qs:
        return None
    # every (q, start) minimised at once, over all z and over each wrong-argmax region z_k = max_j w_j
    rows, wrong_rows, wrong_k = [], [], []
    starts = {i: np.array(_starts(q, rng)) for i, q in enumerate(qs)}
    for i, q in enumerate(qs):
        a = int(np.argmax(q))
        for z0 in starts[i]:
            rows.append((i, z0))
            for k in range(C):
                if q[k] < q[a] - 1e-12:
                    wrong_rows.append((i, z0))
                    wrong_k.append(k)
    Q = torch.tensor(np.array([qs[i] for i, _ in rows]), dtype=DTYPE)
    Z = minimise(lambda z: c.ev.risk(z, Q), torch.tensor(np.array([z for _, z in rows]), dtype=DTYPE),
                 iters=150).numpy()
    Qw = torch.tensor(np.array([qs[i] for i, _ in wrong_rows]), dtype=DTYPE)
    ks = torch.tensor(wrong_k)
    idx = torch.arange(len(wrong_k))

    def wrong(w):
        z = w.clone()
        z[idx, ks] = w.max(1).values
        return z
    W = minimise(lambda w: c.ev.risk(wrong(w), Qw),
                 torch.tensor(np.array([z for _, z in wrong_rows]), dtype=DTYPE), iters=150)
    W = wrong(W).numpy()
    for i, q in enumerate(qs):
        a = int(np.argmax(q))
        right = np.concatenate([Z[[r for r, (j, _) in enumerate(rows) if j == i]], starts[i], rays])
        vals = c.ev.risk_np(right, np.broadcast_to(q, right.shape).copy())
        vals = np.where(np.isfinite(vals), vals, np.inf)
        sel = [r for r, (j, _) in enumerate(wrong_rows) if j == i]
        if not sel:
            continue
        corners = []
        for r in sel:  # the starts themselves, moved into the wrong region (L-BFGS may only make them worse)
            z0 = wrong_rows[r][1].copy()
            z0[wrong_k[r]] = z0.max()
            corners.append(z0)
        wz = np.concatenate([W[sel], np.array(corners), rays[np.argmax(rays, 1) != a]])
        vw = c.ev.risk_np(wz, np.broadcast_to(q, wz.shape).copy())
        vw = np.where(np.isfinite(vw), vw, np.inf)
        j = int(np.argmin(vw))
        best_wrong, z_wrong = float(vw[j]), wz[j].copy()
        best = min(float(vals.min()), best_wrong)
        z_best = right[int(np.argmin(vals))] if float(vals.min()) <= best_wrong else z_wrong
        tol = 1e-7 * (1 + abs(best))
        if not best_wrong <= best + tol:
            continue
        # a strict wrong argmax, re-evaluated on its own
        z = z_wrong.copy()
        k = int(np.argmax(np.where(np.arange(C) == a, -np.inf, z)))
        z[k] = max(z[k], z[a]) + 1e-9 * max(1.0, abs(z[k]))
        if int(np.argmax(z)) == a:
            continue
        r = float(c.ev.risk_np(z, q)[0])
        if r <= best + tol:
            return refuted(
                f"not calibrated {c.setting}: for q = {fmt(q)} (argmax {a}, C = {C}) the prediction "
                f"z = {fmt(z)} (argmax {int(np.argmax(z))}) has conditional risk {fmt(r, 12)}, within "
                f"{fmt(tol, 2)} of the lowest risk found anywhere, {fmt(best, 12)} (L-BFGS from "
                f"{len(starts[i])} starts and {len(rays)} far points; float64, generated code): the infimum "
                f"over wrong-argmax predictions is not larger (MATH.md's tolerance rule)",
                {"q": q.tolist(), "z": z.tolist(), "risk": r, "best_risk": best, "z_best": z_best.tolist(),
                 "tolerance": tol})
    return None
