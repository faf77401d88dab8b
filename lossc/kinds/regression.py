"""regression: predictions and real targets; the residual is r = y - yhat."""

import sympy

from ..ir import T, U
from . import Kind

R = sympy.Symbol("r", real=True)

ORDER = 4  # place in listings
KIND = Kind(
    name="regression",
    form="elementwise",
    names={"yhat": U, "y": T, "r": R},
    features=((R, T - U),),
    target="real",
    doc="predictions yhat (any shape), targets y; r = y - yhat",
)
