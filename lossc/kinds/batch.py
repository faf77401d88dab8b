"""batch: a loss of the whole batch, ``M(theta; B_1..B_k, N)`` with batch sums
``B_k = sum(g_k(s, y) for i)``; predictions s (probabilities, or logits with
``from_logits=True``: then s = sigmoid(input)), targets y in {0, 1}; batch form.

AnyLoss and other confusion-matrix metrics live here. ``s`` and ``y`` are one
element's values and appear only inside a batch sum; ``N`` is the batch size
(the total weight of the kept elements when weights are given).
"""

from ..ir import BATCH_SIZE, T, U
from . import Curve, Kind

PLOT_TARGET = (1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0)  # the plotted curves' batch; element 0 varies
PLOT_REST = (0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1)  # the other elements' predictions: right and confident

def _example(shape, dtype, device, g):
    """Probabilities s (the batch modules' default), targets in {0, 1}."""
    import torch
    return (torch.rand(shape, generator=g, device=device).to(dtype),
            (torch.rand(shape, generator=g, device=device) < 0.3).to(dtype))


def _curve(module, s):
    """One batch per point: a batch loss is one number for the whole batch."""
    import torch
    target = torch.tensor(PLOT_TARGET, dtype=torch.float64)
    rest = torch.tensor(PLOT_REST, dtype=torch.float64)
    values, grads = [], []
    for v in s:
        batch = torch.cat([v.reshape(1), rest]).requires_grad_(True)
        value = module(batch, target)
        (grad,) = torch.autograd.grad(value, batch)
        values.append(value.detach())
        grads.append(grad[0])
    return s, torch.stack(values), torch.stack(grads)


ORDER = 5  # place in listings
KIND = Kind(
    name="batch",
    form="batch",
    names={"s": U, "y": T, "N": BATCH_SIZE},
    target="binary",
    doc="predictions s[N] (probabilities, or logits with from_logits=True), targets y[N] in {0, 1}; "
        "sum(... for i) over the batch, N the batch size",
    example=_example,
    curve=Curve((0.0, 1.0), "prediction s_0 of one positive\n(batch of 8: the other 3 positives at s = 0.9, "
                            "4 negatives at s = 0.1)", "dL/ds_0", _curve),
)
