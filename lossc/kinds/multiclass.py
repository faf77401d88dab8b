"""multiclass: logits [N, C] (or [N, C, d1, ...]) and integer targets; row normal form."""

from ..ir import NUM_CLASSES, P_T, WEIGHT, TargetIndex, Vec, Z_J, class_entry
from . import Curve, Kind

CLASSES = 10  # the plotted curves' classes


def _example(shape, dtype, device, g):
    """[N, C] or [N, C, d1, ...] logits, [N] or [N, d1, ...] classes."""
    import torch
    N, C, *positions = shape
    return ((torch.randn(shape, generator=g, device=device) * 2).to(dtype),
            torch.randint(0, C, (N, *positions), generator=g, device=device))


def _curve(module, s):
    import torch
    z = torch.zeros(len(s), CLASSES, dtype=torch.float64)
    z[:, 0] = s
    z.requires_grad_(True)
    value = module(z, torch.zeros(len(s), dtype=torch.long))
    (grad,) = torch.autograd.grad(value.sum(), z)
    return torch.softmax(z.detach(), 1)[:, 0], value, grad[:, 0]


ORDER = 0  # place in listings
KIND = Kind(
    name="multiclass",
    form="row",
    names={"z": Vec(Z_J), "y": TargetIndex(), "C": NUM_CLASSES, "p_t": P_T, WEIGHT: Vec(class_entry(WEIGHT))},
    target="index",
    doc="logits z[N, C, ...], target y[N, ...] class indices",
    example=_example,
    curve=Curve((-8.0, 8.0), f"p_t (C = {CLASSES}: target logit varied, others 0)", "dL/dz_y", _curve),
)
