"""batch: a loss of the whole batch, ``M(theta; B_1..B_k, N)`` with batch sums
``B_k = sum(g_k(s, y) for i)``; predictions s (probabilities, or logits with
``from_logits=True``: then s = sigmoid(input)), targets y in {0, 1}; batch form.

AnyLoss and other confusion-matrix metrics live here. ``s`` and ``y`` are one
element's values and appear only inside a batch sum; ``N`` is the batch size
(the total weight of the kept elements when weights are given).
"""

from ..ir import BATCH_SIZE, T, U
from . import Kind

ORDER = 5  # place in listings
KIND = Kind(
    name="batch",
    form="batch",
    names={"s": U, "y": T, "N": BATCH_SIZE},
    target="binary",
    doc="predictions s[N] (probabilities, or logits with from_logits=True), targets y[N] in {0, 1}; "
        "sum(... for i) over the batch, N the batch size",
)
