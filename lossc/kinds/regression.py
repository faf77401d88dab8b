"""regression: predictions and real targets; the residual is r = y - yhat."""

from ..ir import T, U, internal
from . import Curve, Kind

R = internal("r", real=True)

def _example(shape, dtype, device, g):
    import torch
    return (torch.randn(shape, generator=g, device=device).to(dtype),
            torch.randn(shape, generator=g, device=device).to(dtype))


def _curve(module, s):
    import torch
    yhat = (1.0 - s).requires_grad_(True)
    value = module(yhat, torch.ones_like(s))
    (grad,) = torch.autograd.grad(value.sum(), yhat)
    return s, value, grad


ORDER = 4  # place in listings
KIND = Kind(
    name="regression",
    form="elementwise",
    names={"yhat": U, "y": T, "r": R},
    features=((R, T - U),),
    target="real",
    doc="predictions yhat (any shape), targets y; r = y - yhat",
    example=_example,
    curve=Curve((-3.0, 3.0), "residual r = y − ŷ (y = 1)", "dL/dŷ", _curve),
)
