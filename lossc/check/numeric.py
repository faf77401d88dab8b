"""Numerical falsification, shared by every property: the loss is evaluated through the
*generated* code (the kernel functions of ``lossc.module``), in float64, seeded.

Nothing here proves anything. It finds candidate counterexamples; each one is
evaluated again, on its own, before a property is refuted with it, and reported
with its numbers.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch

from ..runtime import _as_rows

DTYPE = torch.float64


def rng_for(*parts) -> np.random.Generator:
    """A deterministic generator per question (same seed, same report)."""
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def fmt(x, digits: int = 6) -> str:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    if isinstance(x, (list, tuple, np.ndarray)) and np.ndim(x) > 0:
        return "[" + ", ".join(fmt(v, digits) for v in np.asarray(x).ravel().tolist()) + "]"
    x = float(x)
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.{digits}g}"


class Evaluator:
    """The generated loss of a spec at given parameters, as float64 functions."""

    def __init__(self, spec, params: dict):
        from .. import api
        self.spec = spec
        self.module = api.module(spec)
        self.P = self.module._params(**params)
        self.kernel = self.module.KERNEL

    # ---------------------------------------------------------------- row form
    def row(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L(z_i, y_i) for rows z [M, C] (float64) and targets y [M]."""
        out = self.kernel.loss(z, y, self.P)
        return _as_rows(out, z.shape[0], z)

    def row_np(self, z, y) -> np.ndarray:
        z = torch.as_tensor(np.asarray(z, dtype=np.float64)).reshape(-1, np.shape(z)[-1])
        y = torch.as_tensor(np.asarray(y, dtype=np.int64)).reshape(-1)
        with torch.no_grad():
            return self.row(z, y).numpy()

    def row_grad(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = z.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(self.row(z, y).sum(), z)
        return g

    def risk(self, z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Conditional risk R(z; q) = sum_y q_y L(z, y), rows z [B, C], posteriors q [B, C]."""
        B, C = z.shape
        zz = z.repeat_interleave(C, dim=0)
        yy = torch.arange(C).repeat(B)
        return (self.row(zz, yy).reshape(B, C) * q).sum(1)

    def risk_np(self, z, q) -> np.ndarray:
        with torch.no_grad():
            return self.risk(torch.tensor(np.atleast_2d(z), dtype=DTYPE),
                             torch.tensor(np.atleast_2d(q), dtype=DTYPE)).numpy()

    def label_sum_np(self, z) -> np.ndarray:
        """sum_k L(z, k) per row."""
        z = np.atleast_2d(np.asarray(z, dtype=np.float64))
        return self.risk_np(z, np.ones_like(z))

    # ---------------------------------------------------------------- elementwise form
    def elem(self, u: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        out = self.kernel.loss(u, t, self.P)
        return _as_rows(out, u.shape[0], u)

    def elem_np(self, u, t) -> np.ndarray:
        u = torch.as_tensor(np.asarray(u, dtype=np.float64)).reshape(-1)
        t = torch.as_tensor(np.asarray(t, dtype=np.float64)).reshape(-1).expand_as(u).contiguous()
        with torch.no_grad():
            return self.elem(u, t).numpy()

    def elem_grad_np(self, u, t) -> np.ndarray:
        u = torch.as_tensor(np.asarray(u, dtype=np.float64)).reshape(-1).clone().requires_grad_(True)
        t = torch.as_tensor(np.asarray(t, dtype=np.float64)).reshape(-1).expand_as(u).contiguous()
        (g,) = torch.autograd.grad(self.elem(u, t).sum(), u)
        return g.detach().numpy()


# ---------------------------------------------------------------------------- minimisation

def minimise(fn, z0: torch.Tensor, iters: int = 150) -> torch.Tensor:
    """Minimise sum_b fn(z)[b] over z [B, C] (independent rows) with L-BFGS in float64."""
    z = z0.detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([z], lr=1, max_iter=iters, tolerance_grad=1e-13, tolerance_change=1e-15,
                            history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        v = fn(z)
        v = torch.where(torch.isfinite(v), v, torch.full_like(v, 1e300))
        total = v.sum()
        total.backward()
        if not torch.isfinite(z.grad).all():
            z.grad = torch.nan_to_num(z.grad, nan=0.0, posinf=0.0, neginf=0.0)
        return total

    try:
        opt.step(closure)
    except RuntimeError:
        pass
    return z.detach()


def dirichlet_posteriors(C: int, rng: np.random.Generator, n: int = 16) -> np.ndarray:
    """Posteriors q on the simplex: Dirichlet draws, near-ties, near-vertices and no-majority points."""
    qs = list(rng.dirichlet(np.ones(C), size=n))
    qs += list(rng.dirichlet(np.full(C, 0.3), size=max(2, n // 4)))
    tie = np.full(C, 0.2 / max(C - 2, 1)) if C > 2 else np.zeros(C)
    tie[0], tie[1] = 0.41, 0.39
    if C == 2:
        tie = np.array([0.52, 0.48])
    qs.append(tie / tie.sum())
    vertex = np.full(C, 0.02 / (C - 1))
    vertex[0] = 0.98
    qs.append(vertex)
    if C >= 3:
        flat = np.full(C, (1 - 0.4) / (C - 1))
        flat[0] = 0.4
        qs.append(flat)
        mid = np.full(C, 0.1 / max(C - 2, 1))
        mid[0], mid[1] = 0.6, 0.3
        qs.append(mid / mid.sum())
        split = np.full(C, 0.25 / max(C - 2, 1))  # no majority, distinct top two
        split[0], split[1] = 0.4, 0.35
        qs.append(split / split.sum())
    qs = np.clip(np.array(qs), 1e-6, None)
    return qs / qs.sum(1, keepdims=True)


def margin_of(q: np.ndarray) -> float:
    s = np.sort(q)[::-1]
    return float(s[0] - s[1])
