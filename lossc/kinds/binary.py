"""binary: logits of any shape, targets in {0, 1} of the same shape; elementwise form."""

from ..ir import T, U
from . import Checks, Curve, Kind

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


def _cases(e):
    """The loss in f for y = 1 and y = 0."""
    return [(f"y = {t}", U, e.xreplace({T: t}), float(t), 1, True, "nonpos" if t == 1 else "nonneg") for t in (1, 0)]


ORDER = 2  # place in listings
KIND = Kind(
    name="binary",
    form="elementwise",
    names={"f": U, "y": T},
    target="binary",
    doc="logits f (any shape), targets y in {0, 1}",
    example=_example,
    curve=Curve((-6.0, 6.0), "logit f (y = 1)", "dL/df", _curve),
    checks=Checks(_cases, "f", "the loss of y = 1 is non-increasing and that of y = 0 non-decreasing in f",
                  labels=(1.0, 0.0), label_sum="l(f, 1) + l(f, 0)", slope="l_1'(0)",
                  slope_note="; the binary form: C_eta'(0) = eta l_1'(0) + (1-eta) l_0'(0) has the sign of 1/2 - eta "
                             "since l_0'(0) = -l_1'(0)", logit=True, soft_targets=True),
)
