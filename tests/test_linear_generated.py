"""linear_loss on generated row losses (tests/genloss.py) against their mpmath truth (tests/gencheck.py).

The generated call's logits x [N, C] are made exactly by a head: hidden = x[:, perm] / 2 and weight = 2 P (a
permutation scaled by a power of two, d = C), so hidden @ weight.T = x with no rounding at all, saturated, tied
and exact-zero logits included. The truth of d hidden and d weight follows from the truth of dL/dz:
d hidden[:, k] = 2 dL/dz[:, perm[k]] and d weight = (dL/dz).T @ hidden, with their tolerances carried along.
"""

from __future__ import annotations

import importlib.util
import math
import random

import pytest
import torch

import lossc
import gencheck as K
import genloss as G

SEEDS = {"torch": 40, "triton": 8}
CASES = [(kind, backend, seed) for kind in K.ROW_KINDS for backend in SEEDS for seed in range(SEEDS[backend])]


def _case(loss, rng):
    """A generated call with logits [N, C] (no positions: a head's rows), without sample weights."""
    while True:
        case = K.make_case(loss, rng, small=True)
        if len(case.shape) == 2:
            case.sample_weight = None
            return case


def _mismatches(what, got, want, tols):
    out = []
    for i, (g, e, t) in enumerate(zip(got, want, tols)):
        if e is None:
            continue
        if not math.isfinite(g) or abs(g - e) > t:
            out.append(f"{what}[{i}] = {g!r}, truth {e!r} (tol {t:.3g})")
    return out


@pytest.mark.parametrize("kind,backend,seed", CASES)
def test_linear_loss_of_a_generated_row_loss_matches_truth(kind, backend, seed):
    if backend == "triton" and importlib.util.find_spec("triton") is None:
        pytest.skip("triton is not installed")
    rng = random.Random(f"linear-{kind}-{backend}-{seed}")
    loss = G.generate(kind, rng, avoid=K.avoid_for(backend))
    case = _case(loss, rng)
    N, C = case.shape
    perm = list(range(C))
    rng.shuffle(perm)
    declared = {p for p, _, _ in loss.params}
    params = {k: v for k, v in case.params.items() if k in declared}
    for dtype in (K.F32,) if backend == "triton" else (K.F64, K.F32):
        exp = K.truth(loss, case, dtype)
        x = torch.tensor(case.x, dtype=K.F64).to(dtype)
        h = (x[:, perm] / 2).requires_grad_()
        W = torch.zeros(C, C, dtype=dtype)
        W[perm, torch.arange(C)] = 2.0
        W.requires_grad_()
        target = torch.tensor(case.target, dtype=torch.int64) if kind == "multiclass" else \
            torch.tensor(case.target, dtype=K.F64).to(dtype)
        weight = None if case.weight is None else torch.tensor(case.weight, dtype=K.F64)
        out = lossc.linear_loss(loss.source, h, W, target, reduction=case.reduction, weight_per_class=weight,
                                backend=backend, chunk=rng.choice((1, 2, 64)), **params)
        go = case.grad_output
        go_t = torch.tensor(go, dtype=K.F64).to(out.dtype) if isinstance(go, list) else torch.full_like(out, float(go))
        dh, dW = torch.autograd.grad(out, (h, W), go_t, allow_unused=True)
        dh = torch.zeros_like(h) if dh is None else dh
        dW = torch.zeros_like(W) if dW is None else dW
        dz, tol = exp.grad, exp.grad_tol  # (flattened [N, C])
        want_h = [None if dz[i * C + perm[k]] is None else 2 * dz[i * C + perm[k]] for i in range(N) for k in range(C)]
        tol_h = [2 * tol[i * C + perm[k]] for i in range(N) for k in range(C)]
        hv = h.detach().double()
        want_w, tol_w = [], []
        for c in range(C):
            column = [dz[i * C + c] for i in range(N)]
            for k in range(C):
                if None in column:
                    want_w.append(None)
                    tol_w.append(0.0)
                    continue
                want_w.append(sum(column[i] * float(hv[i, k]) for i in range(N)))
                tol_w.append(sum(tol[i * C + c] * abs(float(hv[i, k])) for i in range(N)) + 1e-300)
        bad = _mismatches("value", out.detach().double().reshape(-1).tolist(), exp.value, exp.value_tol) \
            + _mismatches("d hidden", dh.double().reshape(-1).tolist(), want_h, tol_h) \
            + _mismatches("d weight", dW.double().reshape(-1).tolist(), want_w, tol_w)
        assert not bad, f"{loss.source}\n{case}\n{dtype}: {bad[:3]}"
