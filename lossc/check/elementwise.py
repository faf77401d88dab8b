"""Property checks of elementwise losses: margin (m = y f), binary (logit f, y in {0, 1}), regression
(r = y - yhat). Each is one or two functions of one variable ("cases"), decided by the one-variable
engine; the generated code re-evaluates every counterexample."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from ..ir import T, U
from ..kinds.margin import M
from ..kinds.regression import R
from .curvature import affine, analyze
from .ladder import Checker
from .numeric import fmt
from .onevar import (Pieces, Undecided, compare, continuous_at, elementary, finite_real, grid, is_smooth,
                     kink_report, pieces_of, prove_sign, simpler)
from .verdict import Verdict, not_applicable, plausible, proved, refuted, unknown

OO = sympy.oo


@dataclass
class Case:
    """One function of one variable: the loss for one target value (or in the margin / residual)."""

    label: str              # "m", "r", "y = 1", ...
    x: sympy.Symbol         # the variable
    expr: sympy.Expr        # the loss in x alone
    target: float           # the target value fed to the generated code
    sign: int               # x = sign * input (+ offset): margin/binary u = x; regression yhat = -r
    symbolic: bool = True   # False when the loss has other free symbols (a regression target)

    def where(self) -> dict:
        """How x maps to the generated code's inputs: input = sign * x, target = target."""
        return {"case": self.label, "sign": self.sign, "target": self.target}

    def inputs(self, xs):
        xs = np.asarray(xs, dtype=np.float64)
        return (xs if self.sign > 0 else -xs), np.full_like(xs, self.target)


def _s(e):
    return sympy.sstr(e)


def cases_of(ctx) -> list[Case]:
    kind, e = ctx.spec.kind, ctx.expr
    free = e.free_symbols
    if kind == "margin":
        if free <= {M}:
            return [Case("m", M, e, 1.0, 1)]
        return [Case(f"y = {t:+d}", U, e.xreplace({M: t * U, T: t}), float(t), 1) for t in (1, -1)]
    if kind == "binary":
        return [Case(f"y = {t}", U, e.xreplace({T: t}), float(t), 1) for t in (1, 0)]
    if kind == "regression":
        if free <= {R}:
            return [Case("r", R, e, 0.0, -1)]
        full = e.xreplace({R: T - U})
        return [Case(f"y = {t}", U, full.xreplace({T: t}), float(t), 1, symbolic=False) for t in (0, 1, -2)]
    raise Undecided(kind)


class Elementwise(Checker):
    """One or two functions of one variable (the cases) and their split into smooth pieces."""

    def __init__(self, ctx):
        super().__init__(ctx)
        self.kind = ctx.spec.kind
        self.cases = cases_of(ctx)
        self._pieces: dict = {}

    def phi(self, case: Case, xs) -> np.ndarray:
        u, t = case.inputs(xs)
        return self.ev.elem_np(u, t)

    def dphi(self, case: Case, xs) -> np.ndarray:
        u, t = case.inputs(xs)
        return self.ev.elem_grad_np(u, t) * case.sign

    def pieces(self, case: Case) -> Pieces:
        if case.label not in self._pieces:
            try:
                self._pieces[case.label] = pieces_of(elementary(case.expr), case.x)
            except (Undecided, NotImplementedError, TypeError, ValueError) as err:
                self._pieces[case.label] = Undecided(str(err))
        got = self._pieces[case.label]
        if isinstance(got, Exception):
            raise got
        return got

    def suffix(self, case: Case) -> str:
        """' for y = 1' (or nothing for the single case), for evidence texts."""
        return "" if case.label in ("m", "r") else f" for {case.label}"

    def each_case(self, per_case, combine_text: str) -> Verdict:
        """Combine per-case verdicts: refuted if any is, proved if all are."""
        verdicts = [per_case(c) for c in self.cases]
        for v in verdicts:
            if v.verdict == "refuted":
                return v
        if all(v.verdict == "proved" for v in verdicts):
            if len(verdicts) == 1:
                return verdicts[0]
            return proved(combine_text + "\n" + "\n".join(v.evidence for v in verdicts))
        for rank in ("unknown", "plausible"):
            for v in verdicts:
                if v.verdict == rank:
                    return v
        return verdicts[0]

    # ------------------------------------------------------------------ convex
    def convex(self) -> Verdict:
        if "convex" not in self._memo:  # calibration and properness reuse it
            self._memo["convex"] = self._convex()
        return self._memo["convex"]

    def _convex(self) -> Verdict:
        extra = ""
        if self.kind == "binary":
            e0, e1 = (c.expr for c in self.cases[::-1])
            if sympy.simplify(self.ctx.expr - ((1 - T) * e0 + T * e1)) == 0:
                extra = " (and for soft targets y in [0, 1]: the loss is affine in y)"
        var = {"margin": "f (m = y f is affine in f)", "regression": "yhat (r = y - yhat is affine in yhat)",
               "binary": "f"}[self.kind]
        return self.each_case(self._convex_case, f"convex in {var} for each target{extra} {self.setting}:")

    def _convex_case(self, case: Case) -> Verdict:
        x = case.x
        result = analyze(case.expr, {x: affine(str(x), "the variable")})
        if result.curvature in ("convex", "affine", "constant"):
            return proved(f"convex in {x}{self.suffix(case)} by composition rules (DCP) {self.setting}:\n"
                          + result.proof())
        found = self._midpoint_search(case)  # cheap, and decides most non-convex losses at once
        if found is not None:
            return found
        witness, why = None, None
        if case.symbolic:
            try:
                ok, text, witness = self._convex_pieces(case)
                if ok:
                    return proved(f"convex in {x}{self.suffix(case)} {self.setting}: {text}")
                why = text
            except (Undecided, NotImplementedError, TypeError, ValueError) as err:
                why = str(err)
        if witness is not None:
            found = self._midpoint_search(case, witness)
            if found is not None:
                return found
        return plausible(f"not proved ({why}); no midpoint violation on a grid of 400 points x 6 widths"
                         f"{self.suffix(case)} {self.setting}")

    def _convex_pieces(self, case: Case):
        x = case.x
        e = elementary(case.expr)
        if is_smooth(e):
            d2 = simpler(sympy.diff(e, x, 2))
            why = prove_sign(d2, x, -OO, OO, "nonneg")
            if why:
                return True, f"d2L/d{x}2 = {_s(d2)} >= 0 ({why})", None
            return False, f"d2L/d{x}2 = {_s(d2)} not shown >= 0", self._negative_point(d2, x, -OO, OO)
        P = self.pieces(case)
        lines = []
        for piece in P.pieces:
            d2 = simpler(sympy.diff(piece.expr, x, 2))
            why = prove_sign(d2, x, piece.lo, piece.hi, "nonneg")
            if not why:
                return False, f"on {piece.interval()} d2/d{x}2 = {_s(d2)} not shown >= 0", \
                    self._negative_point(d2, x, piece.lo, piece.hi)
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

    def _negative_point(self, e, x, lo, hi):
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

    def _midpoint_search(self, case: Case, witness=None) -> Verdict | None:
        xs = np.array(([float(witness)] if witness is not None else []) + grid(-OO, OO, 400))
        for h in (1e-3, 1e-2, 0.1, 0.5, 2.0, 8.0):
            a, b = self.phi(case, xs - h), self.phi(case, xs + h)
            m = self.phi(case, xs)
            gap = m - 0.5 * (a + b)
            tol = 64 * np.finfo(float).eps * (np.abs(a) + np.abs(b) + 2 * np.abs(m)) + 1e-13
            ok = np.isfinite(gap) & (gap > tol)
            if ok.any():
                i = int(np.argmax(np.where(ok, gap, -np.inf)))
                x0 = xs[i]
                va, vm, vb = (float(self.phi(case, [v])[0]) for v in (x0 - h, x0, x0 + h))  # re-evaluated
                if vm - 0.5 * (va + vb) > tol[i]:
                    return refuted(
                        f"not convex{self.suffix(case)} {self.setting}: L({case.x} = {fmt(x0)}) = {fmt(vm, 10)} > "
                        f"(L({fmt(x0 - h)}) + L({fmt(x0 + h)}))/2 = {fmt(0.5 * (va + vb), 10)} (float64, generated code)",
                        {**case.where(), "x": x0, "h": h, "L": vm, "L_minus": va, "L_plus": vb})
        return None

    # ------------------------------------------------------------------ calibrated / proper
    def partial_losses(self):
        """(l_plus(u), l_minus(u), variable): the loss for the positive and the negative label as functions
        of the score u."""
        if self.kind == "margin":
            if len(self.cases) == 1:
                phi = self.cases[0].expr
                return phi.xreplace({M: U}), phi.xreplace({M: -U})
            return self.cases[0].expr, self.cases[1].expr
        return self.cases[0].expr, self.cases[1].expr  # binary: y = 1, y = 0

    def calibrated(self) -> Verdict:
        if self.kind == "regression":
            return not_applicable("calibration is about classification; this is a regression loss")
        lp, lm = self.partial_losses()
        convex = self.convex()
        if convex.verdict == "proved":
            v = self._calibrated_convex(lp, lm)
            if v is not None:
                return v
        v = self._calibrated_symmetric(lp, lm)
        if v is not None:
            return v
        found = self._risk_scan(lp, lm)
        if found is not None:
            return found
        return plausible(f"scan of eta in (1/2, 1) x scores in [-60, 60] and far points found H^-(eta) > H(eta) "
                         f"everywhere {self.setting}; not proved")

    def _slope_at_zero(self, e):
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

    def _calibrated_convex(self, lp, lm) -> Verdict | None:
        try:
            dp, dm = self._slope_at_zero(lp), self._slope_at_zero(lm)
        except (Undecided, NotImplementedError, TypeError, ValueError):
            return None
        if dp is None or dm is None:
            found = self._risk_scan(lp, lm)
            if found is not None:
                return Verdict("refuted", "convex but not differentiable at 0 (Bartlett, Jordan & McAuliffe "
                               "2006, Thm 6)\n" + found.evidence, found.counterexample)
            return None
        name = "phi'(0)" if self.kind == "margin" else "l_1'(0)"
        if compare(dp, 0) < 0 and compare(dp + dm, 0) == 0:
            psi = self._psi(lp, lm)
            text = (f"convex, differentiable at 0 with {name} = {_s(dp)} < 0 {self.setting}: classification-"
                    f"calibrated (Bartlett, Jordan & McAuliffe 2006, Thm 6" +
                    ("" if self.kind == "margin" else "; the binary form: C_eta'(0) = eta l_1'(0) + (1-eta) "
                     "l_0'(0) has the sign of 1/2 - eta since l_0'(0) = -l_1'(0)") + ")")
            if psi:
                text += f"; psi-transform psi(theta) = {psi}"
            return proved(text)
        found = self._risk_scan(lp, lm)
        if found is not None:
            return Verdict("refuted", f"convex with {name} = {_s(dp)} (and l'(0) sum {_s(dp + dm)}): not "
                           f"calibrated by Bartlett, Jordan & McAuliffe 2006, Thm 6\n" + found.evidence,
                           found.counterexample)
        return None

    def _psi(self, lp, lm) -> str | None:
        """psi(theta) = phi(0) - H((1+theta)/2) when H has a closed form (smooth convex losses)."""
        eta, theta = sympy.Symbol("eta", positive=True), sympy.Symbol("theta", positive=True)
        Ceta = elementary(eta * lp + (1 - eta) * lm)
        if not is_smooth(Ceta):
            return self._psi_pieces(Ceta, eta, theta)
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

    def _psi_pieces(self, Ceta, eta, theta) -> str | None:
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

    def _label_sums(self):
        """(scores, sum of the losses of both labels) from the generated code, for a quick look."""
        tp, tm = (1.0, -1.0) if self.kind == "margin" else (1.0, 0.0)
        xs = np.array([0.0, 0.5, 1.0, 2.0, -1.5, 3.0])
        return xs, self.ev.elem_np(xs, np.full_like(xs, tp)) + self.ev.elem_np(xs, np.full_like(xs, tm))

    def _sums_differ(self):
        xs, sums = self._label_sums()
        for i in range(1, len(xs)):
            if abs(sums[i] - sums[0]) > 1e-9 * (1 + abs(sums[0])):
                return i
        return None

    def _calibrated_symmetric(self, lp, lm) -> Verdict | None:
        if self._sums_differ() is not None:
            return None
        total = sympy.simplify(elementary(lp + lm))
        if total.free_symbols:
            by_pieces = self._constant_by_pieces(elementary(lp + lm))
            if by_pieces is None:
                return None
            total = by_pieces[0]
        mono = self.monotone()
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
                      f"lim_(f->oo) l = {_s(lim)} {self.setting}: C_eta(f) = (1-eta) {_s(total)} + (2 eta - 1) l(f), "
                      f"so for eta > 1/2 the infimum over f <= 0 is l(0)'s, strictly above the infimum: "
                      f"classification-calibrated")

    def _risk_scan(self, lp, lm) -> Verdict | None:
        xs = np.array(sorted(set(grid(-OO, OO, 1200)) | {-1e4, -1e3, 1e3, 1e4}))
        tp, tm = (1.0, -1.0) if self.kind == "margin" else (1.0, 0.0)
        vp = self.ev.elem_np(xs, np.full_like(xs, tp))
        vm = self.ev.elem_np(xs, np.full_like(xs, tm))
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
                again = eta * self.ev.elem_np([a], [tp])[0] + (1 - eta) * self.ev.elem_np([a], [tm])[0]
                return refuted(
                    f"not calibrated {self.setting}: for eta = P(y = +1) = {eta} the conditional risk C_eta(f) = "
                    f"eta l_+(f) + (1 - eta) l_-(f) is lowest, among {len(xs)} scores in [-1e4, 1e4], at the "
                    f"wrong-sign score f = {fmt(a)}: C = {fmt(again, 10)} <= {fmt(right_best, 10)}, the best with the "
                    f"right sign (float64, generated code): H^-(eta) = H(eta) (MATH.md's scan)",
                    {"eta": eta, "f": a, "risk": float(again), "best_right_sign": right_best,
                     "targets": [tp, tm]})
        return None

    def proper(self) -> Verdict:
        if self.kind != "binary":
            return not_applicable("properness needs a link from the score to a probability: the binary kind's "
                                  "logit (sigmoid link) has one; margin and regression losses do not "
                                  "(see calibrated)")
        lp, lm = self.partial_losses()
        eta = sympy.Symbol("eta", positive=True)
        Ceta = elementary(eta * lp + (1 - eta) * lm)
        link = sympy.log(eta / (1 - eta))
        convex = self.convex()
        slope = None
        if convex.verdict == "proved":
            try:
                slope = sympy.simplify(sympy.diff(Ceta, U).subs(U, link))
            except (TypeError, ValueError):
                slope = None
        if slope is not None and slope == 0 and convex.verdict == "proved":
            return proved(f"C_eta(f) = eta l_1(f) + (1 - eta) l_0(f) is convex in f (see convex) and "
                          f"dC_eta/df = 0 at f = log(eta/(1 - eta)) for every eta (sympy): sigmoid(f*) = eta, a "
                          f"proper composite loss with the logit link (Reid & Williamson 2010) {self.setting}")
        for e in (0.1, 0.3, 0.7, 0.9):
            f0 = float(np.log(e / (1 - e)))
            xs = np.linspace(f0 - 20, f0 + 20, 4001)
            C = e * self.ev.elem_np(xs, np.ones_like(xs)) + (1 - e) * self.ev.elem_np(xs, np.zeros_like(xs))
            i = int(np.nanargmin(C))
            c0 = e * self.ev.elem_np([f0], [1.0])[0] + (1 - e) * self.ev.elem_np([f0], [0.0])[0]
            c1 = e * self.ev.elem_np([xs[i]], [1.0])[0] + (1 - e) * self.ev.elem_np([xs[i]], [0.0])[0]
            if c1 < c0 - 1e-9 * (1 + abs(c0)):
                return refuted(f"not proper {self.setting}: for eta = {e}, the truthful logit f = log(eta/(1-eta)) "
                               f"= {fmt(f0)} has conditional risk {fmt(c0, 10)}, but f = {fmt(xs[i])} (sigmoid "
                               f"{fmt(1 / (1 + np.exp(-xs[i])))}) has {fmt(c1, 10)} (float64, generated code)",
                               {"eta": e, "f_truthful": f0, "risk_truthful": float(c0), "f": float(xs[i]),
                                "risk": float(c1)})
        return plausible(f"the truthful logit minimised the conditional risk at eta = 0.1, 0.3, 0.7, 0.9 on a grid "
                         f"{self.setting}; not proved")

    # ------------------------------------------------------------------ symmetric
    def symmetric(self) -> Verdict:
        if self.kind == "regression":
            return not_applicable("symmetry (sum over labels constant) is about classification labels")
        lp, lm = self.partial_losses()
        label = "phi(m) + phi(-m)" if self.kind == "margin" else "l(f, 1) + l(f, 0)"
        i = self._sums_differ()
        if i is not None:
            xs, sums = self._label_sums()
            return refuted(f"not symmetric {self.setting}: {label} = {fmt(sums[0], 10)} at f = 0 but "
                           f"{fmt(sums[i], 10)} at f = {fmt(xs[i])} (float64, generated code)",
                           {"f1": 0.0, "sum1": float(sums[0]), "f2": float(xs[i]), "sum2": float(sums[i])})
        total = sympy.simplify(elementary(lp + lm))
        if not total.free_symbols:
            return proved(f"{label} = {_s(total)} for every score (sympy) {self.setting}: symmetric, tolerant to "
                          f"uniform label noise (Ghosh, Manwani & Sastry 2015)")
        piecewise = self._constant_by_pieces(elementary(lp + lm))
        if piecewise is not None:
            return proved(f"{label} = {_s(piecewise[0])} for every score {self.setting}: {piecewise[1]}; symmetric, "
                          f"tolerant to uniform label noise (Ghosh, Manwani & Sastry 2015)")
        tp, tm = (1.0, -1.0) if self.kind == "margin" else (1.0, 0.0)
        xs = np.array([0.0, 0.5, 1.0, 2.0, -1.5, 3.0])
        sums = self.ev.elem_np(xs, np.full_like(xs, tp)) + self.ev.elem_np(xs, np.full_like(xs, tm))
        for i in range(1, len(xs)):
            if abs(sums[i] - sums[0]) > 1e-9 * (1 + abs(sums[0])):
                return refuted(f"not symmetric {self.setting}: {label} = {fmt(sums[0], 10)} at f = 0 but "
                               f"{fmt(sums[i], 10)} at f = {fmt(xs[i])} (float64, generated code)",
                               {"f1": 0.0, "sum1": float(sums[0]), "f2": float(xs[i]), "sum2": float(sums[i])})
        return unknown(f"{label} = {_s(total)}: not shown constant, no difference found")

    def _constant_by_pieces(self, e):
        """(value, why) when e is the same constant on every smooth piece and at every kink."""
        try:
            P = pieces_of(e, U)
        except (Undecided, NotImplementedError, TypeError, ValueError):
            return None
        values = [sympy.simplify(p.expr) for p in P.pieces]
        if not all(v.is_number for v in values) or any(compare(v, values[0]) != 0 for v in values[1:]):
            return None
        for k in P.kinks:
            if compare(e.subs(U, k), values[0]) != 0:
                return None
        pieces = "; ".join(f"{_s(v)} on {p.interval()}" for v, p in zip(values, P.pieces))
        return values[0], f"split at its kinks {', '.join(map(_s, P.kinks))}: {pieces}, and the same at the kinks"
