"""Verdicts for the batch form (AnyLoss and other losses of a whole batch) and the composite form (tasks).

The theory of MATH.md (calibration, properness, symmetry of a per-example loss) does not apply to a
loss of the whole batch or to a combination of task losses: those are ``n/a``; the properties that
would make sense but that lossc has no procedure for are ``unknown``; ``stable`` runs the generated
code of a batch loss on saturated inputs (a test, never a proof).
"""

from __future__ import annotations

import torch

from .numeric import fmt
from .verdict import Verdict, not_applicable, plausible, refuted, unknown

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


class Batch:
    """A loss M(B_1 … B_k, N) of batch sums."""

    def __init__(self, ctx):
        self.ctx = ctx

    def _per_example(self, name: str) -> Verdict:
        return not_applicable(f"{name} is defined for a loss of one example; {self.ctx.spec.name} is a loss of "
                              "the whole batch (batch form)")

    def calibrated(self) -> Verdict:
        return self._per_example("classification calibration")

    def proper(self) -> Verdict:
        return self._per_example("properness")

    def symmetric(self) -> Verdict:
        return self._per_example("symmetry under label noise")

    def _undecided(self, name: str) -> Verdict:
        return unknown(f"{name}: lossc has no decision procedure for the batch form (a function of the batch "
                       "sums B_k); not decided")

    def convex(self) -> Verdict:
        return self._undecided("convexity in the predictions")

    def bounded(self) -> Verdict:
        return self._undecided("boundedness")

    def monotone(self) -> Verdict:
        return self._undecided("monotonicity")

    def smooth(self) -> Verdict:
        return self._undecided("smoothness")

    def nonnegative(self) -> Verdict:
        return self._undecided("nonnegativity")

    def stable(self) -> Verdict:
        """The generated torch and reference code on a batch of saturated probabilities (0, 1 and next
        to them) and, with from_logits, logits up to 1e4, in float32, bfloat16 and float16."""
        from .. import api
        spec = self.ctx.spec
        probabilities = torch.tensor([0.0, 1e-7, 1e-3, 0.5, 1 - 1e-3, 1 - 1e-7, 1.0] * 2, dtype=torch.float64)
        logits = torch.tensor([-1e4, -100.0, -30.0, 0.0, 30.0, 100.0, 1e4] * 2, dtype=torch.float64)
        target = torch.tensor([0.0] * 7 + [1.0] * 7, dtype=torch.float64)
        runs, failures = 0, []
        for from_logits, x64 in ((False, probabilities), (True, logits)):
            ref = api.loss(spec, backend="reference", from_logits=from_logits, **self.ctx.params)
            leaf = x64.clone().requires_grad_(True)
            truth = ref(leaf, target)
            (gtruth,) = torch.autograd.grad(truth, leaf)
            truth = truth.detach()
            for backend in ("torch", "reference"):
                module = api.loss(spec, backend=backend, from_logits=from_logits, **self.ctx.params)
                for dtype in DTYPES:
                    x = x64.to(dtype).requires_grad_(True)
                    try:
                        out = module(x, target.to(dtype))
                        (grad,) = torch.autograd.grad(out.float(), x)
                    except Exception as err:  # noqa: BLE001 - a crash is a failure to report
                        failures.append(f"{backend}/{str(dtype)[6:]}: raised {type(err).__name__}: {err}")
                        continue
                    runs += 1
                    big = torch.finfo(dtype).max / 2
                    if bool(torch.isfinite(truth)) and float(truth.abs()) < big and not bool(torch.isfinite(out)):
                        failures.append(f"{backend} backend in {str(dtype)[6:]} gives loss {fmt(out.double())} "
                                        f"where float64 gives {fmt(truth.detach())} (from_logits={from_logits})")
                    keep = torch.isfinite(gtruth) & (gtruth.abs() < big)
                    bad = keep & ~torch.isfinite(grad.double())
                    if bool(bad.any()):
                        i = int(bad.nonzero()[0])
                        failures.append(f"{backend} backend in {str(dtype)[6:]} gives gradient "
                                        f"{fmt(grad.double()[i])} at input {fmt(x64[i])} where float64 gives "
                                        f"{fmt(gtruth[i])} (from_logits={from_logits})")
        if failures:
            return refuted(f"not stable: {failures[0]} {self.ctx.setting()}", {"failures": failures[:6]})
        return plausible(f"finite loss and gradient from the generated torch and reference code in float32, bfloat16 "
                         f"and float16 on a batch of saturated inputs (probabilities 0, 1 and next to them; logits "
                         f"up to 1e4; {runs} runs) {self.ctx.setting()}; a test of these inputs, not a proof")


class Composite:
    """A combination of task losses with learnable parameters (tasks kind)."""

    def __init__(self, ctx):
        self.ctx = ctx

    def convex(self) -> Verdict:
        return unknown("convexity in the learnable parameters: lossc has no decision procedure for the "
                       "composite form; not decided")

    def stable(self) -> Verdict:
        return not_applicable("the composite form computes a few scalars under autograd: no saturated inputs "
                              "to test")
