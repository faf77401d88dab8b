"""distribution: logits [N, C] (or [N, C, d1, ...]) and target probabilities of the same shape
(soft targets, label distributions); row normal form, the target q[j] inside class reductions."""

from ..ir import NUM_CLASSES, Q_J, WEIGHT, Vec, Z_J, class_entry
from . import Curve, Kind

SOFT_TARGET = (0.9, 0.1)  # the plotted curves' q: the one-hot (1, 0) smoothed by eps = 0.2


def _example(shape, dtype, device, g):
    import torch
    q = torch.softmax(torch.randn(shape, generator=g, device=device) * 2, dim=1)
    return (torch.randn(shape, generator=g, device=device) * 2).to(dtype), q.to(dtype)


def _curve(module, s):
    import torch
    z = torch.stack([s, torch.zeros_like(s)], 1).requires_grad_(True)
    q = torch.tensor(SOFT_TARGET, dtype=torch.float64).expand(len(s), 2)
    value = module(z, q)
    (grad,) = torch.autograd.grad(value.sum(), z)
    return torch.softmax(z.detach(), 1)[:, 0], value, grad[:, 0]


ORDER = 1  # place in listings
KIND = Kind(
    name="distribution",
    form="row",
    names={"z": Vec(Z_J), "q": Vec(Q_J), "C": NUM_CLASSES, WEIGHT: Vec(class_entry(WEIGHT))},
    target="distribution",
    doc="logits z[N, C, ...], target probabilities q[N, C, ...] (each row sums to 1)",
    example=_example,
    curve=Curve((-6.0, 6.0), f"p_0 (C = 2: z = (s, 0), soft target q = {SOFT_TARGET})", "dL/dz_0", _curve),
)
