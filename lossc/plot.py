"""``lossc plot``: a loss and its gradient along the one variable that matters for its kind.

| kind | x axis | the loss is evaluated at | gradient panel |
| --- | --- | --- | --- |
| multiclass | p_t | C = 10 classes, the target's logit s, the others 0 | dL/dz_y |
| distribution | p_0 | C = 2, z = (s, 0), q = (0.9, 0.1) (one-hot smoothed by eps = 0.2) | dL/dz_0 |
| margin | m = y f | y = +1, f = m | dL/dm |
| binary | f | y = 1 | dL/df |
| regression | r = y - yhat | y = 1, yhat = 1 - r | dL/dyhat |
| batch | s_0 | a batch of 8: y = (1,1,1,1,0,0,0,0), s = (s_0, .9, .9, .9, .1, .1, .1, .1) | dL/ds_0 |
| tasks | s_1 (the first learnable) | every task loss L_i = 1, the other learnables at their initial values | dL/ds_1 |

Per-class parameters (ldam's counts, logit_adjusted's prior) are drawn at their defaults, numbers
standing for every class. A batch loss's x axis is one positive element's prediction (a probability)
while the rest of the batch is classified correctly and confidently; a tasks loss without learnables
is drawn against L1 instead (dL/dL1).

Values and gradients come from the fused torch backend (its gradient is the closed-form one).
matplotlib is an optional extra (``pip install 'lossc[plot]'``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import LossError, LossKindError, LossParamError

CLASSES = 10  # the multiclass curves use this many classes
SOFT_TARGET = (0.9, 0.1)  # the distribution curves' q: the one-hot (1, 0) smoothed by eps = 0.2
BATCH_TARGET = (1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0)  # the batch curves' batch; element 0 varies
BATCH_REST = (0.9, 0.9, 0.9, 0.1, 0.1, 0.1, 0.1)  # the other elements' predictions: right and confident

# kind -> (input range, x-axis label, gradient label)
AXES = {
    "multiclass": ((-8.0, 8.0), f"p_t (C = {CLASSES}: target logit varied, others 0)", "dL/dz_y"),
    "distribution": ((-6.0, 6.0), f"p_0 (C = 2: z = (s, 0), soft target q = {SOFT_TARGET})", "dL/dz_0"),
    "margin": ((-3.0, 3.0), "margin m = y·f (y = +1)", "dL/dm"),
    "binary": ((-6.0, 6.0), "logit f (y = 1)", "dL/df"),
    "regression": ((-3.0, 3.0), "residual r = y − ŷ (y = 1)", "dL/dŷ"),
    "batch": ((0.0, 1.0), "prediction s_0 of one positive\n(batch of 8: the other 3 positives at s = 0.9, "
                          "4 negatives at s = 0.1)", "dL/ds_0"),
    "tasks": ((-3.0, 3.0), "first learnable s_1\n(every task loss L_i = 1, other learnables at their initial value)",
              "dL/ds_1"),
}


@dataclass(frozen=True)
class Curve:
    """One loss sampled along its kind's axis."""

    label: str
    kind: str
    x: torch.Tensor
    loss: torch.Tensor
    grad: torch.Tensor


def curve(spec: str, params: dict | None = None, points: int = 401) -> Curve:
    """The loss and its gradient of one spec (catalog name or path) along its kind's axis.

    ``params`` may name parameters the loss does not have; those are ignored."""
    from . import api
    parsed = api.parse(spec)
    own = {p.name for p in parsed.params}
    given = {k: v for k, v in (params or {}).items() if k in own}
    parsed = api.parse(spec, **given)
    if parsed.kind not in AXES:
        raise LossKindError(f"lossc plot does not draw {parsed.kind} losses")
    runtime = {p.name for p in parsed.runtime_params}
    module = api.loss(parsed, backend="torch", reduction="none" if parsed.form in ("row", "elementwise") else "mean",
                      **{k: v for k, v in given.items() if k in runtime})
    lo, hi = AXES[parsed.kind][0]
    s = torch.linspace(lo, hi, points, dtype=torch.float64)
    x, value, grad = SAMPLERS[parsed.kind](module, s)
    label = parsed.name + (" (" + ", ".join(f"{k}={v}" for k, v in given.items()) + ")" if given else "")
    return Curve(label, parsed.kind, x, value.detach(), grad.detach())


def _multiclass(module, s):
    z = torch.zeros(len(s), CLASSES, dtype=torch.float64)
    z[:, 0] = s
    z.requires_grad_(True)
    value = module(z, torch.zeros(len(s), dtype=torch.long))
    (grad,) = torch.autograd.grad(value.sum(), z)
    return torch.softmax(z.detach(), 1)[:, 0], value, grad[:, 0]


def _distribution(module, s):
    z = torch.stack([s, torch.zeros_like(s)], 1).requires_grad_(True)
    q = torch.tensor(SOFT_TARGET, dtype=torch.float64).expand(len(s), 2)
    value = module(z, q)
    (grad,) = torch.autograd.grad(value.sum(), z)
    return torch.softmax(z.detach(), 1)[:, 0], value, grad[:, 0]


def _regression(module, s):
    yhat = (1.0 - s).requires_grad_(True)
    value = module(yhat, torch.ones_like(s))
    (grad,) = torch.autograd.grad(value.sum(), yhat)
    return s, value, grad


def _logit(module, s):
    """margin (y = +1, so f = m) and binary (y = 1)."""
    f = s.clone().requires_grad_(True)
    value = module(f, torch.ones_like(s))
    (grad,) = torch.autograd.grad(value.sum(), f)
    return s, value, grad


def _batch(module, s):
    # one batch per point: a batch loss is one number for the whole batch
    target = torch.tensor(BATCH_TARGET, dtype=torch.float64)
    rest = torch.tensor(BATCH_REST, dtype=torch.float64)
    values, grads = [], []
    for v in s:
        batch = torch.cat([v.reshape(1), rest]).requires_grad_(True)
        value = module(batch, target)
        (grad,) = torch.autograd.grad(value, batch)
        values.append(value.detach())
        grads.append(grad[0])
    return s, torch.stack(values), torch.stack(grads)


def _tasks(module, s):
    module = module.double()
    tasks = sys.modules[type(module).__module__].TASKS
    learned = [p for p in module.parameters()]
    losses = [torch.ones((), dtype=torch.float64) for _ in range(tasks)]
    values, grads = [], []
    for v in s:
        if learned:  # vary the first entry of the first learnable, the task losses fixed at 1
            with torch.no_grad():
                learned[0].view(-1)[0] = v
            value = module(*losses)
            (grad,) = torch.autograd.grad(value, learned[0])
            grad = grad.view(-1)[0]
        else:  # nothing learned: vary L1
            first = v.clone().requires_grad_(True)
            value = module(first, *losses[1:])
            (grad,) = torch.autograd.grad(value, first)
        values.append(value.detach())
        grads.append(grad)
    return s, torch.stack(values), torch.stack(grads)


SAMPLERS = {"multiclass": _multiclass, "distribution": _distribution, "margin": _logit, "binary": _logit,
            "regression": _regression, "batch": _batch, "tasks": _tasks}


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise LossError("lossc plot needs matplotlib, which is not installed",
                        hint="pip install 'lossc[plot]' (or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot(specs: list[str], output: str, params: dict | None = None, points: int = 401) -> None:
    """Draw the losses of ``specs`` (one kind) and their gradients on one figure, written atomically.

    ``params`` apply to every loss that has a parameter of that name; naming one no loss has is an error."""
    if not specs:
        raise LossError("lossc plot needs at least one loss")
    if Path(output).suffix.lower() not in (".png", ".svg", ".pdf"):
        raise LossError(f"lossc plot writes .png, .svg or .pdf files, not {output!r}")
    plt = _pyplot()
    curves = [curve(spec, params, points) for spec in specs]
    kinds = sorted({c.kind for c in curves})
    if len(kinds) > 1:
        raise LossKindError(f"lossc plot draws losses of one kind per figure, got {', '.join(kinds)}")
    unused = set(params or {}) - {k for spec in specs for k in _param_names(spec)}
    if unused:
        raise LossParamError(f"no loss given has a parameter {sorted(unused)[0]}")
    _, xlabel, glabel = AXES[kinds[0]]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6.4, 6.4), constrained_layout=True)
    for c in curves:
        top.plot(c.x.numpy(), c.loss.numpy(), label=c.label)
        bottom.plot(c.x.numpy(), c.grad.numpy(), label=c.label)
    top.set_ylabel("loss")
    bottom.set_ylabel(glabel)
    bottom.set_xlabel(xlabel)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        ax.axhline(0.0, color="black", linewidth=0.5)
    top.legend()
    _save(fig, output)
    plt.close(fig)


def _param_names(spec: str) -> set[str]:
    from . import api
    return {p.name for p in api.parse(spec).params}


def _save(fig, output: str) -> None:
    target = Path(output)
    folder = target.parent if str(target.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=target.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
