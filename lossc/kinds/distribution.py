"""distribution: logits [N, C] (or [N, C, d1, ...]) and target probabilities of the same shape
(soft targets, label distributions); row normal form, the target q[j] inside class reductions."""

from ..ir import NUM_CLASSES, Q_J, WEIGHT, Vec, Z_J, class_entry
from . import Kind

ORDER = 1  # place in listings
KIND = Kind(
    name="distribution",
    form="row",
    names={"z": Vec(Z_J), "q": Vec(Q_J), "C": NUM_CLASSES, WEIGHT: Vec(class_entry(WEIGHT))},
    target="distribution",
    doc="logits z[N, C, ...], target probabilities q[N, C, ...] (each row sums to 1)",
)
