"""margin: scores and targets in {-1, +1}; the loss is written in the margin m = y * f."""

from ..ir import T, U, internal
from . import Checks, Curve, Kind
from .binary import _curve  # (the same axis: f = m at y = +1)

M = internal("m", real=True)


def _example(shape, dtype, device, g):
    import torch
    x = torch.randn(shape, generator=g, device=device) * 2
    return x.to(dtype), torch.where(torch.rand(shape, generator=g, device=device) < 0.5, 1.0, -1.0).to(dtype)


def _cases(e):
    """phi(m) alone, else the loss in f for y = +1 and y = -1."""
    if e.free_symbols <= {M}:
        return [("m", M, e, 1.0, 1, True, "nonpos")]
    return [(f"y = {t:+d}", U, e.xreplace({M: t * U, T: t}), float(t), 1, True, "nonpos" if t > 0 else "nonneg")
            for t in (1, -1)]


ORDER = 3  # place in listings
KIND = Kind(
    name="margin",
    form="elementwise",
    names={"m": M, "f": U, "y": T},
    features=((M, T * U),),
    target="sign",
    doc="scores f (any shape), targets y in {-1, +1}; m = y * f",
    example=_example,
    curve=Curve((-3.0, 3.0), "margin m = y·f (y = +1)", "dL/dm", _curve),
    checks=Checks(_cases, "f (m = y f is affine in f)", "non-increasing in the margin", labels=(1.0, -1.0),
                  label_sum="phi(m) + phi(-m)", slope="phi'(0)"),
)
