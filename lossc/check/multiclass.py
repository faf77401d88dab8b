"""Property checks of multiclass losses (row normal form: logits z, target class y)."""

from __future__ import annotations

import numpy as np
import sympy
import torch

from ..ir import LSE, NUM_CLASSES
from . import row as rowalg
from .curvature import analyze, row_leaves
from .interval import enclose_on
from .ladder import Checker
from .numeric import DTYPE, dirichlet_posteriors, fmt, margin_of, minimise, rng_for
from .onevar import elementary, is_smooth, prove_sign
from .row import P
from .verdict import Verdict, plausible, proved, refuted, unknown

D = sympy.Symbol("d", nonpositive=True)  # d = z[y] - lse(z) = log p_t <= 0
HALF = sympy.Rational(1, 2)
CLASSES = (3, 5)
_LINE_OPS = 100  # largest row expression (in sympy operations) whose line minimum is solved exactly


def _s(e) -> str:
    return sympy.sstr(e)


def _pt_text(e) -> str:
    return _s(e.xreplace({P: sympy.Symbol("p_t")}))


class Multiclass(Checker):
    """The checks of one multiclass loss at one parameter setting."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.spec = ctx.spec
        self.values = ctx.values
        self.g = rowalg.pt_function(self.spec, self.values)
        self.sep = rowalg.separable(self.spec, self.values)
        self.sums = rowalg.class_sums(self.spec, self.values)
        self.invariant = self.sums is not None  # a function of softmax(z): shift-invariant
        self._strict_proper = None
        # the derivative-based routes (properness, the minimiser map, monotonicity, smoothness) need smooth
        # forms: sympy differentiates a where/pos branch by branch and sees no jump (where(p_t < 0.5, 0, 1))
        self.sep_smooth = self.sep is not None and is_smooth(elementary(self.sep.G)) and all(
            is_smooth(elementary(h)) for _, h in self.sep.terms)

    # ------------------------------------------------------------------ convex
    def convex(self) -> Verdict:
        result = analyze(self.ctx.expr, row_leaves(self.spec.reductions))
        if result.curvature in ("convex", "affine", "constant"):
            return proved(f"convex in z by composition rules (DCP), for every C, {self.setting}:\n"
                          + result.proof())
        if self.g is not None:
            v = self._convex_pt()
            if v is not None:
                return v
        found = self._hessian_search()
        if found is not None:
            return found
        return plausible(f"not proved by the composition rules ({result.reasons[-1] if result.reasons else ''}); "
                         f"no violation in {self._convex_count} numerical tests (Hessians and midpoints at C = "
                         f"3, 5, logit scales 0.3-8) {self.setting}")

    def _convex_pt(self) -> Verdict | None:
        """L = g(p_t) = G(d), d = z_y - lse: Hessian G''(d) w w^T - G'(d) Sigma with w = e_y - p,
        Sigma = diag p - p p^T, and v^T Sigma v >= p/(1-p) (w^T v)^2 (Cauchy-Schwarz). With g' <= 0 the
        Hessian is PSD when kappa(p) = g'(p) (1 - 2p)/(1 - p) + p g''(p) >= 0 on (0, 1)."""
        g = self.g
        if not is_smooth(g):
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
            f"convex in z, for every C, {self.setting}: L = g(p_t) with g(p) = {_s(g)}; with d = z[y] - lse(z), "
            f"w = e_y - p and S = diag p - p p^T the Hessian is G''(d) w w^T - G'(d) S (G(d) = g(e^d)); "
            f"v^T S v >= p_t/(1 - p_t) (w^T v)^2 for every v (Cauchy-Schwarz), and G' = p g' <= 0 ({dec}), so "
            f"v^T H v >= p_t (w^T v)^2 kappa(p_t) with kappa(p) = g'(p)(1 - 2p)/(1 - p) + p g''(p) = {_s(kappa)} "
            f">= 0 ({why})")

    def _hessian_search(self) -> Verdict | None:
        rng = rng_for("convex", self.spec.hash, sorted(self.ctx.params.items()))
        count = 0
        for C in CLASSES:
            for scale in (0.3, 1.0, 3.0, 8.0):
                M = 24
                z = torch.as_tensor(rng.normal(size=(M, C)) * scale, dtype=DTYPE)
                y = torch.as_tensor(rng.integers(0, C, size=M))
                H = self._hessians(z, y)
                count += M
                if H is None:
                    continue
                lam, vecs = torch.linalg.eigh(H)
                top = lam.abs().amax(1).clamp_min(1.0)
                bad = (lam[:, 0] < -1e-6 * top).nonzero().flatten().tolist()
                for i in bad[:4]:
                    v = vecs[i, :, 0]
                    found = self._midpoint(z[i], int(y[i]), v)
                    if found is not None:
                        return found
                # midpoint tests along random lines catch kinks, where Hessians are zero
                V = torch.as_tensor(rng.normal(size=(M, C)), dtype=DTYPE)
                for i in range(M):
                    found = self._midpoint(z[i], int(y[i]), V[i] / V[i].norm(), steps=(0.05, 0.5))
                    count += 1
                    if found is not None:
                        return found
        self._convex_count = count
        return None

    def _hessians(self, z, y):
        z = z.clone().requires_grad_(True)
        try:
            (g,) = torch.autograd.grad(self.ev.row(z, y).sum(), z, create_graph=True)
            rows = []
            for c in range(z.shape[1]):
                (h,) = torch.autograd.grad(g[:, c].sum(), z, retain_graph=True, allow_unused=True)
                rows.append(torch.zeros_like(z) if h is None else h)
        except RuntimeError:
            return None
        H = torch.stack(rows, 1).detach()
        H = 0.5 * (H + H.transpose(1, 2))
        return torch.nan_to_num(H, nan=0.0)

    def _midpoint(self, z, y, v, steps=(1e-2, 0.1, 0.5)) -> Verdict | None:
        for h in steps:
            pts = torch.stack([z - h * v, z, z + h * v]).numpy()
            vals = self.ev.row_np(pts, [y] * 3)
            if not np.all(np.isfinite(vals)):
                continue
            gap = vals[1] - 0.5 * (vals[0] + vals[2])
            tol = 64 * np.finfo(np.float64).eps * np.abs(vals).sum() + 1e-12
            if gap > tol:
                again = self.ev.row_np(pts, [y] * 3)  # re-evaluated before it is reported
                if again[1] - 0.5 * (again[0] + again[2]) > tol:
                    a, m, b = pts
                    return refuted(
                        f"not convex: at z = {fmt(m)} (y = {y}) L = {fmt(again[1], 10)} exceeds the mean "
                        f"{fmt(0.5 * (again[0] + again[2]), 10)} of L at z ± {fmt(h)}·v = {fmt(a)}, {fmt(b)} "
                        f"(float64, generated code) {self.setting}",
                        {"z": m.tolist(), "y": y, "z_minus": a.tolist(), "z_plus": b.tolist(),
                         "L": float(again[1]), "L_minus": float(again[0]), "L_plus": float(again[2])})
        return None

    # ------------------------------------------------------------------ proper
    def proper(self) -> Verdict:
        if self.sep is not None and self.sep_smooth:
            return self._proper_separable()
        if self.invariant:
            return self._proper_numeric(invariant=True)
        return self._proper_numeric(invariant=False)

    def _phi(self):
        """phi(p; q) with R(z; q) = sum_j phi(p_j; q_j), and its pieces A = G'', B = sum c h''."""
        q = sympy.Symbol("q", positive=True)
        G, terms = self.sep.G, self.sep.terms
        extra = sum((c * h for c, h in terms), sympy.S.Zero)
        return q, q * G + extra

    def _proper_separable(self) -> Verdict:
        q, phi = self._phi()
        u = sympy.diff(phi, P).xreplace({P: q})
        du = sympy.diff(u, q)
        form = f"R(z; q) = sum_j phi(p_j; q_j), phi(p; q) = {_s(phi)}"
        numeric = [sympy.N(du.subs({q: v, NUM_CLASSES: 3}), 20) for v in (sympy.Rational(1, 7), sympy.Rational(3, 5))]
        varies = any(v.is_real and abs(v) > 1e-12 for v in numeric)  # cheap: skip simplify when u moves with q
        if not varies:
            u = sympy.simplify(u)
        if not varies and sympy.simplify(du) == 0:
            A = sympy.diff(self.sep.G, P, 2)
            B = sum((c * sympy.diff(h, P, 2) for c, h in self.sep.terms), sympy.S.Zero)
            r1 = self._nonneg_01(A + B)
            r0 = self._nonneg_01(B)
            if r1 and r0:
                strict = sympy.simplify(A + B) != 0
                self._strict_proper = strict
                return proved(
                    f"{'strictly ' if strict else ''}proper {self.setting}: {form}; dphi/dp at p = q is "
                    f"{_s(u)} for every q (sympy), so p = q meets the Lagrange condition on the simplex; "
                    f"d2phi/dp2 = q*({_s(sympy.simplify(A))}) + ({_s(sympy.simplify(B))}) >= 0 for q in [0, 1] "
                    f"({r1}; {r0}), so R is convex in p and p = q minimises it"
                    + ("; not identically 0 and analytic, so strictly convex: the minimiser is unique"
                       if strict else ""))
            return unknown(f"p = q is stationary ({form}, dphi/dp = {_s(u)} at p = q) but convexity in p is "
                           "not proved")
        pmap = self._pstar_map(phi, q)
        cex = self._improve_truthful()
        text = (f"not proper {self.setting}: {form}; dphi/dp at p = q is {_s(u)}, which depends on q, "
                f"so p = q is not a stationary point of R on the simplex")
        if pmap:
            text += f"; the minimiser is {pmap}"
        if cex is None:
            return unknown(text + " (but no numerical improvement on p = q was confirmed)")
        return refuted(text + "\n" + cex[0], cex[1])

    def _nonneg_01(self, e) -> str | None:
        e = sympy.simplify(e)
        if e == 0:
            return "identically 0"
        return prove_sign(e, P, 0, 1, "nonneg")

    def _pstar_map(self, phi, q) -> str | None:
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

    def _improve_truthful(self, C: int = 3):
        """A z with R(z; q) < R(log q; q), found by descent from log q and re-evaluated."""
        rng = rng_for("proper", self.spec.hash, sorted(self.ctx.params.items()))
        qs = [np.array([0.7, 0.2, 0.1]), np.array([0.5, 0.3, 0.2])] + list(dirichlet_posteriors(C, rng, 6))
        for q in qs:
            z0 = np.log(q)
            r0 = float(self.ev.risk_np(z0, q)[0])
            qt = torch.as_tensor(q[None], dtype=DTYPE)
            z = minimise(lambda z: self.ev.risk(z, qt), torch.as_tensor(z0[None], dtype=DTYPE), iters=20)[0].numpy()
            r1 = float(self.ev.risk_np(z, q)[0])
            tol = 1e-9 * (1 + abs(r0))
            if r1 < r0 - tol and float(self.ev.risk_np(z, q)[0]) < float(self.ev.risk_np(z0, q)[0]) - tol:
                p1 = np.exp(z - np.logaddexp.reduce(z))
                return (f"counterexample (float64, generated code): q = {fmt(q)}: R(log q) = {fmt(r0, 10)} > "
                        f"R(z*) = {fmt(r1, 10)} at z* = {fmt(z)} (softmax {fmt(p1)})",
                        {"q": q.tolist(), "z_truthful": z0.tolist(), "R_truthful": r0, "z": z.tolist(), "R": r1})
        return None

    def _proper_numeric(self, invariant: bool) -> Verdict:
        found = self._improve_truthful()
        if found is not None and invariant:
            return refuted(f"not proper {self.setting}: the truthful prediction softmax(z) = q is beaten\n"
                           + found[0], found[1])
        if found is not None:
            line = self._line_minimum(found[1])
            if line is not None:
                return refuted(f"not proper {self.setting}: no z with softmax(z) = q reaches the risk of z*\n"
                               + found[0] + "\n" + line, found[1])
            return unknown("the loss is not a function of softmax(z) alone (it moves with z + c); "
                           "the truthful line z = log q + c was not minimised exactly")
        n = 8
        return plausible(f"no z beat the truthful prediction z = log q for {n} posteriors q (C = 3, L-BFGS from "
                         f"log q) {self.setting}; not a proof")

    def _line_minimum(self, data) -> str | None:
        """min over c of R(log q + c*1; q), exactly (sympy) for the q of a counterexample."""
        q = [sympy.Rational(repr(v)) for v in data["q"]]
        q = [v / sum(q) for v in q]
        c = sympy.Symbol("c", real=True)
        try:
            R = sum(q[y] * rowalg.concrete(self.spec, self.values, [sympy.log(v) + c for v in q], y)
                    for y in range(len(q)))
            if R.count_ops() > _LINE_OPS:  # sympy's simplify/solve can run for minutes on large rows (z_loss)
                return None
            R = sympy.simplify(R)
            crit = sympy.solve(sympy.diff(R, c), c)
            cands = [R.subs(c, s) for s in crit if s.is_real] + [sympy.limit(R, c, sympy.oo),
                                                                    sympy.limit(R, c, -sympy.oo)]
            low = min(sympy.N(v, 30) for v in cands)
        except Exception:  # noqa: BLE001 - sympy may fail in many ways; then we do not claim
            return None
        if not low.is_real or low <= data["R"] * (1 + 1e-9) + 1e-12:
            return None
        return (f"min over c of R(log q + c; q) = {fmt(float(low), 10)} (sympy: stationary points and limits "
                f"of the exact expression) > R(z*) = {fmt(data['R'], 10)}")

    # ------------------------------------------------------------------ calibrated
    def calibrated(self) -> Verdict:
        if self.g is not None:
            v = self._calibrated_pt()
            if v is not None:
                return v
        if self.sep is not None and self.sep.terms and self.sep_smooth:
            v = self._calibrated_map()
            if v is not None:
                return v
        if self._strict_proper is None and self.sep is not None and self.sep_smooth:
            self.proper()
        if self._strict_proper:
            return proved(f"strictly proper (see 'proper'): the unique minimiser p* = q has the argmax of q, and "
                          f"R is lower semicontinuous on the closed simplex, so predictions with a wrong argmax "
                          f"have a strictly larger infimum (Tewari & Bartlett 2007) {self.setting}")
        return self._calibrated_numeric()

    def _calibrated_pt(self) -> Verdict | None:
        g = self.g
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
            f"L = g(p_t) with g(p) = {_s(g)}, g'(p) = {_s(dg)} {self.setting}: g' <= 0 on (0, 1] ({whole}) and "
            f"g' < 0 on (0, 1/2] (interval arithmetic: g' in {box.text()}); g is analytic and not constant, so "
            f"strictly decreasing, and bounded below by g(1) = {_s(at1)}. Swapping or shifting mass towards argmax q lowers R(p; q) = sum_j q_j g(p_j), "
            f"so every minimiser over the closed simplex has its argmax in argmax q, and by compactness the "
            f"infimum over wrong-argmax predictions is strictly larger: classification-calibrated "
            f"(Zhang 2004; Tewari & Bartlett 2007)")

    def _calibrated_map(self) -> Verdict | None:
        q, phi = self._phi()
        text = self._pstar_map(phi, q)
        if text is None:
            return None
        lam = sympy.Symbol("lam")
        sols = sympy.solve(sympy.Eq(sympy.diff(phi, P), lam), P)
        p = sympy.expand(sols[0])
        a, b = sympy.diff(p, q), p.subs(q, 0)
        lamv = sympy.solve(sympy.Eq(a + NUM_CLASSES * b, 1), lam)[0]
        slope = sympy.simplify(a.subs(lam, lamv))
        from .curvature import NONNEG, POS, ZERO, constant_sign
        if constant_sign(sympy.simplify(b.subs(lam, lamv))) not in (POS, NONNEG, ZERO):
            return None  # p* could leave the simplex: the minimiser would not be the stationary point
        second = sympy.simplify(sympy.diff(phi, P, 2))
        B = sympy.simplify(second.subs(q, 0))
        A = sympy.simplify(sympy.diff(second, q))
        strict = self._nonneg_01(B) and prove_sign(A + B, P, 0, 1, "nonneg") and sympy.simplify(A + B) != 0
        if constant_sign(slope) != POS or not strict:
            return None
        return proved(f"{text}: p* is strictly increasing in q (slope {_s(slope)} > 0) and R is strictly convex in "
                      f"p (d2phi/dp2 = {_s(second)}), so the unique minimiser has the argmax of q: "
                      f"classification-calibrated {self.setting}")

    def _calibrated_numeric(self) -> Verdict:
        rng = rng_for("calibrated", self.spec.hash, sorted(self.ctx.params.items()))
        tested = 0
        for C, n in ((3, 10), (4, 4)):
            qs = dirichlet_posteriors(C, rng, n)
            found = self._calibration_counterexample(qs, C)
            tested += len(qs)
            if found is not None:
                return found
        return plausible(f"for {tested} posteriors q (Dirichlet draws, near-ties, near-vertices; C = 3, 4) the "
                         f"lowest risk found with a wrong argmax stayed above the lowest risk found (L-BFGS from "
                         f"several starts, limits along rays) {self.setting}; not a proof")

    def _starts(self, q: np.ndarray, rng) -> list[np.ndarray]:
        C = len(q)
        out = [np.zeros(C), np.log(q), 3 * np.log(q), 10 * np.log(q)]
        out += [rng.normal(size=C) * 2 for _ in range(2)]
        if C <= 3:  # 0/1 corners: where piecewise-linear risks (multiclass hinges) have their minimisers
            out += [np.array([(b >> i) & 1 for i in range(C)], dtype=float) for b in range(1, 2 ** C - 1)]
        return out

    def _ray_points(self, C: int) -> list[np.ndarray]:
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

    def _calibration_counterexample(self, qs: np.ndarray, C: int) -> Verdict | None:
        rng = rng_for("starts", C, self.spec.hash)
        rays = np.array(self._ray_points(C))
        qs = [q for q in qs if margin_of(q) >= 0.05]  # near-ties have tiny gaps: no tolerance tells them from 0
        if not qs:
            return None
        # every (q, start) minimised at once, over all z and over each wrong-argmax region z_k = max_j w_j
        rows, wrong_rows, wrong_k = [], [], []
        starts = {i: np.array(self._starts(q, rng)) for i, q in enumerate(qs)}
        for i, q in enumerate(qs):
            a = int(np.argmax(q))
            for z0 in starts[i]:
                rows.append((i, z0))
                for k in range(C):
                    if q[k] < q[a] - 1e-12:
                        wrong_rows.append((i, z0))
                        wrong_k.append(k)
        Q = torch.tensor(np.array([qs[i] for i, _ in rows]), dtype=DTYPE)
        Z = minimise(lambda z: self.ev.risk(z, Q), torch.tensor(np.array([z for _, z in rows]), dtype=DTYPE),
                     iters=150).numpy()
        Qw = torch.tensor(np.array([qs[i] for i, _ in wrong_rows]), dtype=DTYPE)
        ks = torch.tensor(wrong_k)
        idx = torch.arange(len(wrong_k))

        def wrong(w):
            z = w.clone()
            z[idx, ks] = w.max(1).values
            return z
        W = minimise(lambda w: self.ev.risk(wrong(w), Qw),
                     torch.tensor(np.array([z for _, z in wrong_rows]), dtype=DTYPE), iters=150)
        W = wrong(W).numpy()
        for i, q in enumerate(qs):
            a = int(np.argmax(q))
            right = np.concatenate([Z[[r for r, (j, _) in enumerate(rows) if j == i]], starts[i], rays])
            vals = self.ev.risk_np(right, np.broadcast_to(q, right.shape).copy())
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
            vw = self.ev.risk_np(wz, np.broadcast_to(q, wz.shape).copy())
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
            r = float(self.ev.risk_np(z, q)[0])
            if r <= best + tol:
                return refuted(
                    f"not calibrated {self.setting}: for q = {fmt(q)} (argmax {a}, C = {C}) the prediction "
                    f"z = {fmt(z)} (argmax {int(np.argmax(z))}) has conditional risk {fmt(r, 12)}, within "
                    f"{fmt(tol, 2)} of the lowest risk found anywhere, {fmt(best, 12)} (L-BFGS from "
                    f"{len(starts[i])} starts and {len(rays)} far points; float64, generated code): the infimum "
                    f"over wrong-argmax predictions is not larger (MATH.md's tolerance rule)",
                    {"q": q.tolist(), "z": z.tolist(), "risk": r, "best_risk": best, "z_best": z_best.tolist(),
                     "tolerance": tol})
        return None

    # ------------------------------------------------------------------ symmetric
    def symmetric(self) -> Verdict:
        out = rowalg.label_sum(self.spec, self.values)
        if out is not None:
            total, sums = out
            if not (total.free_symbols & (set(sums) | {LSE})):
                return proved(f"sum_k L(z, k) = {_s(total)} for every z (sympy: the loss written in p_t and class "
                              f"sums, summed over the target) {self.setting}: symmetric, so the minimiser of the "
                              f"risk is unchanged by uniform label noise of rate < (C-1)/C (Ghosh, Kumar & "
                              f"Sastry 2017)")
        rng = rng_for("symmetric", self.spec.hash, sorted(self.ctx.params.items()))
        for C in (3, 2, 5):
            zs = np.concatenate([np.zeros((1, C)), rng.normal(size=(8, C)) * 3])
            sums = self.ev.label_sum_np(zs)
            for i in range(1, len(zs)):
                if abs(sums[i] - sums[0]) > 1e-8 * (1 + abs(sums[0])):
                    again = self.ev.label_sum_np(zs[[0, i]])
                    if abs(again[1] - again[0]) > 1e-8 * (1 + abs(again[0])):
                        return refuted(
                            f"not symmetric {self.setting}: sum_k L(z, k) = {fmt(again[0], 10)} at z = {fmt(zs[0])} "
                            f"but {fmt(again[1], 10)} at z = {fmt(zs[i])} (C = {C}; float64, generated code)",
                            {"C": C, "z1": zs[0].tolist(), "sum1": float(again[0]), "z2": zs[i].tolist(),
                             "sum2": float(again[1])})
        return plausible(f"sum_k L(z, k) was the same at 27 logit vectors (C = 2, 3, 5) {self.setting}; not proved "
                         f"symbolically")
