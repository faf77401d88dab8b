"""multiclass: logits [N, C] (or [N, C, d1, ...]) and integer targets; row normal form."""

from ..ir import NUM_CLASSES, P_T, WEIGHT, TargetIndex, Vec, Z_J, class_entry
from . import Kind

ORDER = 0  # place in listings
KIND = Kind(
    name="multiclass",
    form="row",
    names={"z": Vec(Z_J), "y": TargetIndex(), "C": NUM_CLASSES, "p_t": P_T, WEIGHT: Vec(class_entry(WEIGHT))},
    target="index",
    doc="logits z[N, C, ...], target y[N, ...] class indices",
)
