"""regression: predictions and real targets; the residual is r = y - yhat."""

from ..ir import T, U, internal
from . import Kind

R = internal("r", real=True)

ORDER = 4  # place in listings
KIND = Kind(
    name="regression",
    form="elementwise",
    names={"yhat": U, "y": T, "r": R},
    features=((R, T - U),),
    target="real",
    doc="predictions yhat (any shape), targets y; r = y - yhat",
)
