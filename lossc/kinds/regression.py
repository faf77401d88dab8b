"""regression: predictions and real targets; the residual is r = y - yhat."""

from ..ir import T, U, internal
from . import Checks, Curve, Kind

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


def _cases(e):
    """phi(r) alone, else the loss in yhat for a few targets (not symbolic: the target stays in it)."""
    if e.free_symbols <= {R}:
        return [("r", R, e, 0.0, -1, True, "unimodal")]
    full = e.xreplace({R: T - U})
    return [(f"y = {t}", U, full.xreplace({T: t}), float(t), 1, False, "unimodal") for t in (0, 1, -2)]


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
    checks=Checks(_cases, "yhat (r = y - yhat is affine in yhat)", "non-decreasing in |r|"),
)
