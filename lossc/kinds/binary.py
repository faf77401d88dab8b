"""binary: logits of any shape, targets in {0, 1} of the same shape; elementwise form."""

from ..ir import T, U
from . import Curve, Kind

def _example(shape, dtype, device, g):
    import torch
    x = torch.randn(shape, generator=g, device=device) * 2
    return x.to(dtype), (torch.rand(shape, generator=g, device=device) < 0.1).to(dtype)


def _curve(module, s):
    """y = 1 (binary), y = +1 (margin: f = m)."""
    import torch
    f = s.clone().requires_grad_(True)
    value = module(f, torch.ones_like(s))
    (grad,) = torch.autograd.grad(value.sum(), f)
    return s, value, grad


ORDER = 2  # place in listings
KIND = Kind(
    name="binary",
    form="elementwise",
    names={"f": U, "y": T},
    target="binary",
    doc="logits f (any shape), targets y in {0, 1}",
    example=_example,
    curve=Curve((-6.0, 6.0), "logit f (y = 1)", "dL/df", _curve),
)
