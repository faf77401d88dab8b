"""The checker of elementwise losses: margin (m = y f), binary (logit f, y in {0, 1}), regression
(r = y - yhat). Each is one or two functions of one variable ("cases", from the kind's ``checks``),
decided by the one-variable engine; the properties are lossc/check/properties/*.py."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sympy

from ..ir import U
from ..kinds import KINDS
from .ladder import Checker
from .onevar import Pieces, Undecided, compare, elementary, pieces_of
from .verdict import Verdict, proved

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
    monotone: str = "nonpos"  # the direction monotone wants: "nonpos", "nonneg" or "unimodal" (|x|)

    def where(self) -> dict:
        """How x maps to the generated code's inputs: input = sign * x, target = target."""
        return {"case": self.label, "sign": self.sign, "target": self.target}

    def inputs(self, xs):
        xs = np.asarray(xs, dtype=np.float64)
        return (xs if self.sign > 0 else -xs), np.full_like(xs, self.target)


def _s(e):
    return sympy.sstr(e)


class Elementwise(Checker):
    """One or two functions of one variable (the cases) and their split into smooth pieces."""

    def __init__(self, ctx):
        super().__init__(ctx)
        facts = KINDS[ctx.spec.kind].checks
        if facts is None:
            raise Undecided(ctx.spec.kind)
        self.facts = facts
        self.labels = facts.labels  # (positive, negative) target; None for regression
        self.cases = [Case(*case) for case in facts.cases(ctx.expr)]
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

    # ------------------------------------------------------------------ the two labels (calibrated, proper, symmetric)
    def partial_losses(self):
        """(l_plus(u), l_minus(u)): the loss for the positive and the negative label as functions of the
        score u (a single case phi(m): phi(u) and phi(-u))."""
        if len(self.cases) == 1:
            case = self.cases[0]
            return case.expr.xreplace({case.x: U}), case.expr.xreplace({case.x: -U})
        return self.cases[0].expr, self.cases[1].expr

    def label_sums(self):
        """(scores, sum of the losses of both labels) from the generated code, for a quick look."""
        tp, tm = self.labels
        xs = np.array([0.0, 0.5, 1.0, 2.0, -1.5, 3.0])
        return xs, self.ev.elem_np(xs, np.full_like(xs, tp)) + self.ev.elem_np(xs, np.full_like(xs, tm))

    def sums_differ(self):
        """The index of a score where the label sum differs from its value at 0, or None."""
        xs, sums = self.label_sums()
        for i in range(1, len(xs)):
            if abs(sums[i] - sums[0]) > 1e-9 * (1 + abs(sums[0])):
                return i
        return None

    def constant_by_pieces(self, e):
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
