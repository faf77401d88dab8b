"""margin: scores and targets in {-1, +1}; the loss is written in the margin m = y * f."""

from ..ir import T, U, internal
from . import Kind

M = internal("m", real=True)

ORDER = 3  # place in listings
KIND = Kind(
    name="margin",
    form="elementwise",
    names={"m": M, "f": U, "y": T},
    features=((M, T * U),),
    target="sign",
    doc="scores f (any shape), targets y in {-1, +1}; m = y * f",
)
