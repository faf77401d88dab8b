"""binary: logits of any shape, targets in {0, 1} of the same shape; elementwise form."""

from ..ir import T, U
from . import Kind

ORDER = 2  # place in listings
KIND = Kind(
    name="binary",
    form="elementwise",
    names={"f": U, "y": T},
    target="binary",
    doc="logits f (any shape), targets y in {0, 1}",
)
