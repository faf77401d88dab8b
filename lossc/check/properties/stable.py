"""``stable`` (a test, not a ladder): the generated code of every available backend, on saturated inputs, in low precision.

The loss and its gradient must be finite wherever the true value (computed in
float64) is representable in the dtype: a loss of 1e8 is not a float16 number,
and returning inf for it is correct rounding, not instability.
"""

from __future__ import annotations

import numpy as np
import torch

from ..numeric import fmt
from ..verdict import Verdict, plausible, refuted

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
BACKENDS = ("torch", "reference")
TRITON = "triton"


def _inputs(kind: str):
    """(input [N, ...] float64, target) pairs of saturated cases, with a description each."""
    cases = []
    if kind in ("multiclass", "distribution"):
        C = 5
        rows, targets, names = [], [], []
        for big in (30.0, 100.0, 1e3, 1e4):
            for y, label in ((0, "p_t -> 1"), (1, "p_t -> 0")):
                z = np.zeros(C)
                z[0] = big
                rows.append(z)
                targets.append(y)
                names.append(f"z = {fmt(big)} e_0, y = {y} ({label})")
            z = np.linspace(-big, big, C)
            rows.append(z)
            targets.append(0)
            names.append(f"z = linspace(-{fmt(big)}, {fmt(big)}), y = 0")
            rows.append(-z)
            targets.append(0)
            names.append(f"z = linspace({fmt(big)}, -{fmt(big)}), y = 0")
        rows.append(np.zeros(C))
        targets.append(2)
        names.append("z = 0 (uniform)")
        rows.append(np.full(C, 1e4))
        targets.append(3)
        names.append("z = 1e4 * ones")
        cases.append((torch.tensor(np.array(rows)), torch.tensor(targets), names))
        return cases
    values = [0.0, 1e-6, 0.5, 1.0, 3.0, 30.0, 100.0, 1e3, 1e4]
    us = np.array(sorted({s * v for v in values for s in (1, -1)}))
    if kind == "margin":
        ts = (1.0, -1.0)
    elif kind == "binary":
        ts = (1.0, 0.0)
    else:
        ts = (0.0, 1.0, -1e4, 1e4)
    for t in ts:
        cases.append((torch.tensor(us), torch.full((len(us),), t, dtype=torch.float64),
                      [f"f = {fmt(u)}, y = {fmt(t)}" for u in us]))
    return cases


def check_stable(ctx) -> Verdict:
    from ... import api
    spec = ctx.spec
    failures = []
    ran = 0
    for backend in BACKENDS:
        module = api.loss(spec, backend=backend, reduction="none", **ctx.params)
        ref = api.loss(spec, backend="reference", reduction="none", **ctx.params)
        for x64, t, names in _inputs(spec.kind):
            x = x64.clone().requires_grad_(True)
            truth = ref(x, t)
            (gtruth,) = torch.autograd.grad(truth.sum(), x)
            truth, gtruth = truth.detach(), gtruth.detach()
            for dtype in DTYPES:
                xd = x64.to(dtype).requires_grad_(True)
                td = t if spec.kind in ("multiclass", "distribution") else t.to(dtype)
                try:
                    out = module(xd, td)
                    (grad,) = torch.autograd.grad(out.float().sum(), xd)
                except Exception as err:  # noqa: BLE001 - a crash is a failure to report
                    failures.append(f"{backend}/{str(dtype)[6:]}: raised {type(err).__name__}: {err}")
                    continue
                ran += 1
                big = torch.finfo(dtype).max / 2
                rep = (truth.abs() < big) & torch.isfinite(truth)
                bad = rep & ~torch.isfinite(out.detach().double())
                grep = (gtruth.abs() < big) & torch.isfinite(gtruth)
                gbad = grep & ~torch.isfinite(grad.double())
                if gbad.dim() > 1:
                    gbad = gbad.any(1)
                for i in (bad | gbad).nonzero().flatten().tolist()[:2]:
                    what = "loss" if bool(bad[i]) else "gradient"
                    failures.append({
                        "backend": backend, "dtype": str(dtype)[6:], "input": names[i], "what": what,
                        "x": x64[i].tolist(), "target": t[i].item(),
                        "value": fmt(out.detach().double()[i]) if what == "loss" else
                        fmt(grad.double()[i]), "float64": fmt(truth[i]) if what == "loss" else fmt(gtruth[i])})
    if failures:
        f = failures[0]
        if isinstance(f, str):
            return refuted(f"not stable: {f}", {"failures": failures[:6]})
        return refuted(f"not stable: {f['backend']} backend in {f['dtype']} gives {f['what']} {f['value']} at "
                       f"{f['input']} where float64 gives {f['float64']} (representable) {ctx.setting()}",
                       {"failures": failures[:6]})
    return plausible(f"finite loss and gradient from the generated code of every available backend "
                  f"({', '.join(BACKENDS)}; {TRITON} is not available here) in float32, bfloat16 and float16 on "
                  f"saturated inputs (|logits| up to 1e4, p_t -> 0 and -> 1; {ran} runs), wherever the float64 "
                  f"value is representable {ctx.setting()}; a test of these inputs, not a proof for all inputs")


def elementwise(c) -> Verdict:
    return check_stable(c.ctx)


row = elementwise
