"""tasks: a composite of k scalar task losses ``L1 … Lk`` (or ``L[i]`` in a series
``for i in 1..K``) with learnable parameters (``learn s[K] = 0.0``); composite form.

The generated module holds the learnables as ``nn.Parameter`` s and its forward
takes the k task losses (``module(l1, l2)`` or ``module([l1, l2])``).
"""

from . import Curve, Kind

def _curve(module, s):
    """The first learnable's first entry varied, every task loss at 1 (nothing learned: L1 varied)."""
    import sys
    import torch
    module = module.double()
    tasks = sys.modules[type(module).__module__].TASKS
    learned = [p for p in module.parameters()]
    losses = [torch.ones((), dtype=torch.float64) for _ in range(tasks)]
    values, grads = [], []
    for v in s:
        if learned:
            with torch.no_grad():
                learned[0].view(-1)[0] = v
            value = module(*losses)
            (grad,) = torch.autograd.grad(value, learned[0])
            grad = grad.view(-1)[0]
        else:
            first = v.clone().requires_grad_(True)
            value = module(first, *losses[1:])
            (grad,) = torch.autograd.grad(value, first)
        values.append(value.detach())
        grads.append(grad)
    return s, torch.stack(values), torch.stack(grads)


ORDER = 6  # place in listings
KIND = Kind(
    name="tasks",
    form="composite",
    names={},
    target="none",
    doc="k scalar task losses L1 … Lk (L[i] in a series); learnable parameters declared with 'learn'",
    curve=Curve((-3.0, 3.0), "first learnable s_1\n(every task loss L_i = 1, other learnables at their initial value)",
                "dL/ds_1", _curve),
)
