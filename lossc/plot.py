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
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from .errors import LossError, LossKindError, LossParamError
from .kinds import KINDS

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
    axis = KINDS[parsed.kind].curve
    if axis is None:
        raise LossKindError(f"lossc plot does not draw {parsed.kind} losses")
    runtime = {p.name for p in parsed.runtime_params}
    module = api.loss(parsed, backend="torch", reduction="none" if parsed.normal_form.per_element else "mean",
                      **{k: v for k, v in given.items() if k in runtime})
    s = torch.linspace(*axis.range, points, dtype=torch.float64)
    x, value, grad = axis.sample(module, s)
    label = parsed.name + (" (" + ", ".join(f"{k}={v}" for k, v in given.items()) + ")" if given else "")
    return Curve(label, parsed.kind, x, value.detach(), grad.detach())


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
    axis = KINDS[kinds[0]].curve
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(6.4, 6.4), constrained_layout=True)
    for c in curves:
        top.plot(c.x.numpy(), c.loss.numpy(), label=c.label)
        bottom.plot(c.x.numpy(), c.grad.numpy(), label=c.label)
    top.set_ylabel("loss")
    bottom.set_ylabel(axis.grad_label)
    bottom.set_xlabel(axis.x_label)
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
