"""``symmetric``: the sum of the loss over the labels is constant (tolerance to uniform label noise)."""

from __future__ import annotations

from functools import cache

import numpy as np
import sympy

from ...ir import LSE
from ..ladder import climb
from ..numeric import fmt, rng_for
from ..onevar import elementary
from ..row import label_sum
from ..verdict import Verdict, not_applicable, plausible, proved, refuted, unknown

_s = sympy.sstr
NOISE = "tolerant to uniform label noise (Ghosh, Manwani & Sastry 2015)"


def elementwise(c) -> Verdict:
    if c.labels is None:
        return not_applicable("symmetry (sum over labels constant) is about classification labels")
    lp, lm = c.partial_losses()
    label = c.facts.label_sum
    total = cache(lambda: sympy.simplify(elementary(lp + lm)))

    def constant():
        if not total().free_symbols:
            return proved(f"{label} = {_s(total())} for every score (sympy) {c.setting}: symmetric, {NOISE}")
        return None

    def by_pieces():
        piecewise = c.constant_by_pieces(elementary(lp + lm))
        if piecewise is not None:
            return proved(f"{label} = {_s(piecewise[0])} for every score {c.setting}: {piecewise[1]}; symmetric, "
                          f"{NOISE}")
        return None
    return climb(lambda: _differ(c, label), constant, by_pieces,
                 otherwise=lambda: unknown(f"{label} = {_s(total())}: not shown constant, no difference found"))


def _differ(c, label: str) -> Verdict | None:
    i = c.sums_differ()
    if i is None:
        return None
    xs, sums = c.label_sums()
    return refuted(f"not symmetric {c.setting}: {label} = {fmt(sums[0], 10)} at f = 0 but "
                   f"{fmt(sums[i], 10)} at f = {fmt(xs[i])} (float64, generated code)",
                   {"f1": 0.0, "sum1": float(sums[0]), "f2": float(xs[i]), "sum2": float(sums[i])})


def row(c) -> Verdict:
    return climb(lambda: _label_sum(c), lambda: _search(c),
                 otherwise=lambda: plausible(f"sum_k L(z, k) was the same at 27 logit vectors (C = 2, 3, 5) "
                                             f"{c.setting}; not proved symbolically"))


def _label_sum(c) -> Verdict | None:
    out = label_sum(c.spec, c.values)
    if out is not None:
        total, sums = out
        if not (total.free_symbols & (set(sums) | {LSE})):
            return proved(f"sum_k L(z, k) = {_s(total)} for every z (sympy: the loss written in p_t and class "
                          f"sums, summed over the target) {c.setting}: symmetric, so the minimiser of the "
                          f"risk is unchanged by uniform label noise of rate < (C-1)/C (Ghosh, Kumar & "
                          f"Sastry 2017)")
    return None


def _search(c) -> Verdict | None:
    rng = rng_for("symmetric", c.spec.hash, sorted(c.ctx.params.items()))
    for C in (3, 2, 5):
        zs = np.concatenate([np.zeros((1, C)), rng.normal(size=(8, C)) * 3])
        sums = c.ev.label_sum_np(zs)
        for i in range(1, len(zs)):
            if abs(sums[i] - sums[0]) > 1e-8 * (1 + abs(sums[0])):
                again = c.ev.label_sum_np(zs[[0, i]])
                if abs(again[1] - again[0]) > 1e-8 * (1 + abs(again[0])):
                    return refuted(
                        f"not symmetric {c.setting}: sum_k L(z, k) = {fmt(again[0], 10)} at z = {fmt(zs[0])} "
                        f"but {fmt(again[1], 10)} at z = {fmt(zs[i])} (C = {C}; float64, generated code)",
                        {"C": C, "z1": zs[0].tolist(), "sum1": float(again[0]), "z2": zs[i].tolist(),
                         "sum2": float(again[1])})
    return None
