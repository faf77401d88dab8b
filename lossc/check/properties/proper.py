"""``proper``: the truthful prediction minimises the conditional risk (a proper scoring rule, through the
kind's link: the sigmoid of a logit, the softmax of a row)."""

from __future__ import annotations

import numpy as np
import sympy
import torch

from ...ir import NUM_CLASSES, U
from ..ladder import climb
from ..numeric import DTYPE, dirichlet_posteriors, fmt, minimise, rng_for
from ..onevar import elementary, prove_sign
from ..row import P, concrete
from ..verdict import Verdict, not_applicable, plausible, proved, refuted, unknown

_s = sympy.sstr
_LINE_OPS = 100  # largest row expression (in sympy operations) whose line minimum is solved exactly


def elementwise(c) -> Verdict:
    if not c.facts.logit:
        return not_applicable("properness needs a link from the score to a probability: the binary kind's "
                              "logit (sigmoid link) has one; margin and regression losses do not "
                              "(see calibrated)")
    return climb(lambda: _stationary(c), lambda: _beat_truthful_logit(c),
                 otherwise=lambda: plausible(f"the truthful logit minimised the conditional risk at eta = 0.1, 0.3, "
                                             f"0.7, 0.9 on a grid {c.setting}; not proved"))


def _stationary(c) -> Verdict | None:
    """C_eta convex (see convex) with zero slope at the truthful logit log(eta/(1 - eta)), for every eta."""
    if c.convex().verdict != "proved":
        return None
    lp, lm = c.partial_losses()
    eta = sympy.Symbol("eta", positive=True)
    Ceta = elementary(eta * lp + (1 - eta) * lm)
    try:
        slope = sympy.simplify(sympy.diff(Ceta, U).subs(U, sympy.log(eta / (1 - eta))))
    except (TypeError, ValueError):
        return None
    if slope == 0:
        return proved(f"C_eta(f) = eta l_1(f) + (1 - eta) l_0(f) is convex in f (see convex) and "
                      f"dC_eta/df = 0 at f = log(eta/(1 - eta)) for every eta (sympy): sigmoid(f*) = eta, a "
                      f"proper composite loss with the logit link (Reid & Williamson 2010) {c.setting}")
    return None


def _beat_truthful_logit(c) -> Verdict | None:
    """A logit with a lower conditional risk than the truthful one, on a grid around it (re-evaluated)."""
    for e in (0.1, 0.3, 0.7, 0.9):
        f0 = float(np.log(e / (1 - e)))
        xs = np.linspace(f0 - 20, f0 + 20, 4001)
        C = e * c.ev.elem_np(xs, np.ones_like(xs)) + (1 - e) * c.ev.elem_np(xs, np.zeros_like(xs))
        i = int(np.nanargmin(C))
        c0 = e * c.ev.elem_np([f0], [1.0])[0] + (1 - e) * c.ev.elem_np([f0], [0.0])[0]
        c1 = e * c.ev.elem_np([xs[i]], [1.0])[0] + (1 - e) * c.ev.elem_np([xs[i]], [0.0])[0]
        if c1 < c0 - 1e-9 * (1 + abs(c0)):
            return refuted(f"not proper {c.setting}: for eta = {e}, the truthful logit f = log(eta/(1-eta)) "
                           f"= {fmt(f0)} has conditional risk {fmt(c0, 10)}, but f = {fmt(xs[i])} (sigmoid "
                           f"{fmt(1 / (1 + np.exp(-xs[i])))}) has {fmt(c1, 10)} (float64, generated code)",
                           {"eta": e, "f_truthful": f0, "risk_truthful": float(c0), "f": float(xs[i]),
                            "risk": float(c1)})
    return None


def row(c) -> Verdict:
    return climb(lambda: _proper_separable(c) if c.sep is not None and c.sep_smooth else None,
                 lambda: _beaten(c),
                 otherwise=lambda: plausible(f"no z beat the truthful prediction z = log q for 8 posteriors q (C = 3, "
                                             f"L-BFGS from log q) {c.setting}; not a proof"))


def strictly_proper(v: Verdict) -> bool:
    """Whether a verdict of 'proper' says strictly proper (the separable route: a unique minimiser)."""
    return v.verdict == "proved" and v.evidence.startswith("strictly proper")


def separable_phi(c):
    """phi(p; q) with R(z; q) = sum_j phi(p_j; q_j), and its pieces A = G'', B = sum c h''."""
    q = sympy.Symbol("q", positive=True)
    G, terms = c.sep.G, c.sep.terms
    extra = sum((k * h for k, h in terms), sympy.S.Zero)
    return q, q * G + extra


def _proper_separable(c) -> Verdict:
    q, phi = separable_phi(c)
    u = sympy.diff(phi, P).xreplace({P: q})
    du = sympy.diff(u, q)
    form = f"R(z; q) = sum_j phi(p_j; q_j), phi(p; q) = {_s(phi)}"
    numeric = [sympy.N(du.subs({q: v, NUM_CLASSES: 3}), 20) for v in (sympy.Rational(1, 7), sympy.Rational(3, 5))]
    varies = any(v.is_real and abs(v) > 1e-12 for v in numeric)  # cheap: skip simplify when u moves with q
    if not varies:
        u = sympy.simplify(u)
    if not varies and sympy.simplify(du) == 0:
        A = sympy.diff(c.sep.G, P, 2)
        B = sum((k * sympy.diff(h, P, 2) for k, h in c.sep.terms), sympy.S.Zero)
        r1 = nonneg_01(A + B)
        r0 = nonneg_01(B)
        if r1 and r0:
            strict = sympy.simplify(A + B) != 0
            return proved(
                f"{'strictly ' if strict else ''}proper {c.setting}: {form}; dphi/dp at p = q is "
                f"{_s(u)} for every q (sympy), so p = q meets the Lagrange condition on the simplex; "
                f"d2phi/dp2 = q*({_s(sympy.simplify(A))}) + ({_s(sympy.simplify(B))}) >= 0 for q in [0, 1] "
                f"({r1}; {r0}), so R is convex in p and p = q minimises it"
                + ("; not identically 0 and analytic, so strictly convex: the minimiser is unique"
                   if strict else ""))
        return unknown(f"p = q is stationary ({form}, dphi/dp = {_s(u)} at p = q) but convexity in p is "
                       "not proved")
    pmap = pstar_map(phi, q)
    cex = _improve_truthful(c)
    text = (f"not proper {c.setting}: {form}; dphi/dp at p = q is {_s(u)}, which depends on q, "
            f"so p = q is not a stationary point of R on the simplex")
    if pmap:
        text += f"; the minimiser is {pmap}"
    if cex is None:
        return unknown(text + " (but no numerical improvement on p = q was confirmed)")
    return refuted(text + "\n" + cex[0], cex[1])


def nonneg_01(e) -> str | None:
    e = sympy.simplify(e)
    if e == 0:
        return "identically 0"
    return prove_sign(e, P, 0, 1, "nonneg")


def pstar_map(phi, q) -> str | None:
    """Solve dphi/dp = lam for p; if p is affine in q, fix lam by sum_j p_j = 1."""
    lam = sympy.Symbol("lam")
    if not sympy.diff(phi, P).is_rational_function(P):
        return None  # transcendental in p: no closed form worth a slow solve
    try:
        sols = sympy.solve(sympy.Eq(sympy.diff(phi, P), lam), P)
    except (NotImplementedError, ValueError, TypeError):
        return None
    if len(sols) != 1:
        return None
    p = sympy.expand(sols[0])
    if sympy.diff(p, q, 2) != 0:
        return None
    a, b = sympy.diff(p, q), p.subs(q, 0)
    lams = sympy.solve(sympy.Eq(a + NUM_CLASSES * b, 1), lam)
    if len(lams) != 1:
        return None
    pstar = sympy.simplify(p.subs(lam, lams[0]))
    return f"p* = {_s(pstar)} (sympy: Lagrange condition with sum_j p_j = 1)"


def _improve_truthful(c, C: int = 3):
    """A z with R(z; q) < R(log q; q), found by descent from log q and re-evaluated."""
    rng = rng_for("proper", c.spec.hash, sorted(c.ctx.params.items()))
    qs = [np.array([0.7, 0.2, 0.1]), np.array([0.5, 0.3, 0.2])] + list(dirichlet_posteriors(C, rng, 6))
    for q in qs:
        z0 = np.log(q)
        r0 = float(c.ev.risk_np(z0, q)[0])
        qt = torch.as_tensor(q[None], dtype=DTYPE)
        z = minimise(lambda z: c.ev.risk(z, qt), torch.as_tensor(z0[None], dtype=DTYPE), iters=20)[0].numpy()
        r1 = float(c.ev.risk_np(z, q)[0])
        tol = 1e-9 * (1 + abs(r0))
        if r1 < r0 - tol and float(c.ev.risk_np(z, q)[0]) < float(c.ev.risk_np(z0, q)[0]) - tol:
            p1 = np.exp(z - np.logaddexp.reduce(z))
            return (f"counterexample (float64, generated code): q = {fmt(q)}: R(log q) = {fmt(r0, 10)} > "
                    f"R(z*) = {fmt(r1, 10)} at z* = {fmt(z)} (softmax {fmt(p1)})",
                    {"q": q.tolist(), "z_truthful": z0.tolist(), "R_truthful": r0, "z": z.tolist(), "R": r1})
    return None


def _beaten(c) -> Verdict | None:
    """A z with a lower risk than log q; for a loss that moves with z + c, also below the whole truthful line."""
    found = _improve_truthful(c)
    if found is None:
        return None
    if c.invariant:
        return refuted(f"not proper {c.setting}: the truthful prediction softmax(z) = q is beaten\n"
                       + found[0], found[1])
    line = _line_minimum(c, found[1])
    if line is not None:
        return refuted(f"not proper {c.setting}: no z with softmax(z) = q reaches the risk of z*\n"
                       + found[0] + "\n" + line, found[1])
    return unknown("the loss is not a function of softmax(z) alone (it moves with z + c); "
                   "the truthful line z = log q + c was not minimised exactly")


def _line_minimum(c, data) -> str | None:
    """min over c of R(log q + c*1; q), exactly (sympy) for the q of a counterexample."""
    q = [sympy.Rational(repr(v)) for v in data["q"]]
    q = [v / sum(q) for v in q]
    s_ = sympy.Symbol("c", real=True)
    try:
        R = sum(q[y] * concrete(c.spec, c.values, [sympy.log(v) + s_ for v in q], y)
                for y in range(len(q)))
        if R.count_ops() > _LINE_OPS:  # sympy's simplify/solve can run for minutes on large rows (z_loss)
            return None
        R = sympy.simplify(R)
        crit = sympy.solve(sympy.diff(R, s_), s_)
        cands = [R.subs(s_, s) for s in crit if s.is_real] + [sympy.limit(R, s_, sympy.oo),
                                                                sympy.limit(R, s_, -sympy.oo)]
        low = min(sympy.N(v, 30) for v in cands)
    except Exception:  # noqa: BLE001 - sympy may fail in many ways; then we do not claim
        return None
    if not low.is_real or low <= data["R"] * (1 + 1e-9) + 1e-12:
        return None
    return (f"min over c of R(log q + c; q) = {fmt(float(low), 10)} (sympy: stationary points and limits "
            f"of the exact expression) > R(z*) = {fmt(data['R'], 10)}")
