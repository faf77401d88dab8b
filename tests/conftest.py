"""Shared helpers for the lossc test suite.

Everything here is written from the user-facing contract (DESIGN.md and the
semantics of ``nn.CrossEntropyLoss``), not from ``lossc/runtime.py``, so that
comparing lossc against it is an independent check.
"""

from __future__ import annotations

import os
import sys
import zlib
from pathlib import Path

import torch

if not torch.cuda.is_available():
    # the triton kernels run on the CPU under triton's interpreter (tests/test_triton.py); triton reads
    # this when it is imported, so it is set before any test can import it. Without a GPU nothing else
    # runs triton kernels, so the rest of the suite is unaffected.
    os.environ.setdefault("TRITON_INTERPRET", "1")

sys.path.insert(0, str(Path(__file__).parent))

# lossc check's per-property budget is wall-clock time (10 s by default): on a loaded 2-core CI machine a
# catalog check could cross it and a test asserting its verdict would flake. The suite checks with a
# generous budget (a hang guard); tests of the budget itself pass their own timeout.
os.environ.setdefault("LOSSC_CHECK_TIMEOUT", "300")

from references import REFERENCES  # noqa: E402

if os.environ.get("PYTEST_XDIST_WORKER"):
    # one intra-op thread per xdist worker: the tensors here are small, and workers x threads above the
    # core count makes torch's thread pools spin against each other (tens of times slower)
    torch.set_num_threads(1)

MULTICLASS = "multiclass"
ELEMENTWISE_KINDS = ("binary", "margin", "regression")


def seed_of(*parts) -> int:
    """A deterministic seed from any description of a test case (stable under xdist)."""
    return zlib.crc32(repr(parts).encode())


def generator(*parts) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed_of(*parts))
    return g


def param_sets(name: str):
    """(label, params) pairs to test for a catalog loss: its defaults and its alternative setting."""
    ref = REFERENCES[name]
    out = [("default", dict(ref.params))]
    if ref.alt_params and ref.alt_params != ref.params:
        out.append(("alt", dict(ref.alt_params)))
    return out


# --------------------------------------------------------------------------
# inputs and targets
# --------------------------------------------------------------------------

def multiclass_input(shape, g, dtype=torch.float64, scale=2.0, boost=12.0):
    """Logits [N, C, ...] and an int64 target [N, ...]: random logits, with the target's logit raised by a
    random amount in [0, boost) so that p_t covers (0, 1) — confident and unconfident rows alike."""
    N, C, *rest = shape
    z = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    t = torch.randint(0, C, (N, *rest), generator=g)
    lift = torch.rand((N, *rest), generator=g, dtype=torch.float64) * boost
    z = z.scatter_add(1, t.unsqueeze(1), lift.unsqueeze(1))
    return z.to(dtype), t


def elementwise_target(kind, shape, g, dtype=torch.float64):
    if kind == "binary":
        return torch.randint(0, 2, shape, generator=g).to(dtype)
    if kind == "margin":
        return (torch.randint(0, 2, shape, generator=g) * 2 - 1).to(dtype)
    if kind == "regression":
        return (torch.randn(shape, generator=g, dtype=torch.float64) * 2).to(dtype)
    raise ValueError(kind)


# where the catalog's non-smooth losses have kinks: the margin m = 1 (hinge, squared hinge); the residual
# r = 0 and |r| = delta for every delta the tests use (absolute error, huber)
_MARGIN_KINKS = (1.0,)
_RESIDUAL_KINKS = (0.0, 0.3, 0.5, 0.7, 1.0)


def away_from_kinks(kind, x, t, gap=0.03):
    """Move inputs (float64) that lie within ``gap`` of a kink by 0.1: at a kink the subgradient is a
    convention, and inputs rounded to a low-precision dtype land on kinks (hinge at f = y = 1)."""
    for _ in range(10):
        if kind == "margin":
            m = t * x
            near = torch.zeros_like(x, dtype=torch.bool)
            for k in _MARGIN_KINKS:
                near |= (m - k).abs() < gap
            x = torch.where(near, x + 0.1 * t, x)
        elif kind == "regression":
            r = t - x
            near = torch.zeros_like(x, dtype=torch.bool)
            for k in _RESIDUAL_KINKS:
                near |= (r.abs() - k).abs() < gap
            x = torch.where(near, x + 0.1, x)
        else:
            return x
        if not bool(near.any()):
            return x
    raise AssertionError("could not move the inputs away from the kinks")


def elementwise_input(kind, shape, g, dtype=torch.float64, scale=2.0):
    x = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    t = elementwise_target(kind, shape, g, dtype).double()
    for _ in range(3):  # again after rounding to the dtype
        x = away_from_kinks(kind, x.to(dtype).double(), t)
    return x.to(dtype), t.to(dtype)


def distribution_input(shape, g, dtype=torch.float64, scale=2.0):
    """Logits [N, C, ...] and target probabilities of the same shape: random distributions, a third of
    them with exact zeros (0 log 0 = 0 must hold)."""
    z = torch.randn(shape, generator=g, dtype=torch.float64) * scale
    q = torch.softmax(torch.randn(shape, generator=g, dtype=torch.float64) * 2, dim=1)
    q = torch.where(torch.rand(shape, generator=g, dtype=torch.float64) < 0.3, 0.0, q)
    q = q / q.sum(dim=1, keepdim=True).clamp_min(1e-300)
    return z.to(dtype), q.to(dtype)


def elementwise_options(flags, shape, t, g):
    """(module options, call options, target) for an elementwise loss from option flags: w = weight
    (broadcast over the leading dimensions), k = ignore_index 7 (about 30% of the targets set to it),
    s = sample_weight."""
    options, call = {}, {}
    if "w" in flags:
        options["weight"] = torch.rand(shape[-1], generator=g, dtype=torch.float64) * 2 + 0.1
    if "k" in flags:
        options["ignore_index"] = 7
        drop = torch.rand(t.shape, generator=g) < 0.3
        t = torch.where(drop, torch.full_like(t, 7.0), t)
    if "s" in flags:
        call["sample_weight"] = torch.rand(t.shape, generator=g, dtype=torch.float64) * 3
    return options, call, t


def make_input(kind, shape, g, dtype=torch.float64):
    if kind == "distribution":
        return distribution_input(shape, g, dtype)
    if kind == MULTICLASS:
        return multiclass_input(shape, g, dtype)
    return elementwise_input(kind, shape, g, dtype)


def loss_shape(kind, input_shape):
    """Shape of the unreduced loss."""
    if kind in (MULTICLASS, "distribution"):
        return (input_shape[0], *input_shape[2:])
    return tuple(input_shape)


# --------------------------------------------------------------------------
# the reduction semantics, written independently of lossc
# --------------------------------------------------------------------------

def reference_unreduced(name, x, t, params, ignore_index=None, weight=None):
    """The hand-written reference's per-sample loss; ignored multiclass rows get a valid dummy class
    (their loss is masked out by ``reduce_reference``). ``weight`` reaches references that apply the
    class weights themselves (``reads_weight``)."""
    ref = REFERENCES[name]
    if ref.kind == MULTICLASS:
        ii = -100 if ignore_index is None else ignore_index
        t = torch.where(t == ii, torch.zeros_like(t), t)
    elif ignore_index is not None:
        t = torch.where(t == ignore_index, torch.zeros_like(t), t)
    if ref.reads_weight:
        return ref.fn(x, t, **params, weight=weight)
    return ref.fn(x, t, **params)


def reduce_reference(unreduced, kind, target, *, weight=None, ignore_index=None, sample_weight=None,
                     reduction="mean", reads_weight=False):
    """Reduce an unreduced loss following the contract.

    multiclass: rows whose target is ``ignore_index`` (default -100) are dropped; ``weight[C]`` multiplies
    each row by ``weight[target]``; ``mean`` divides by the sum of ``weight[target]`` over the kept rows
    (exactly ``nn.CrossEntropyLoss``); ``sample_weight`` multiplies the unreduced loss and does not enter the
    denominator.

    elementwise: ``weight`` broadcasts and multiplies; ``ignore_index`` (off unless given) drops elements
    whose target equals it; ``mean`` divides by the number of kept elements.
    """
    loss = unreduced
    if kind == "distribution":  # class weights act inside the loss; the mean is over rows
        keep = torch.ones_like(loss, dtype=torch.bool)
        w = torch.ones_like(loss)
        denominator = torch.tensor(float(loss.numel()), dtype=loss.dtype)
        reads_weight = False
    elif kind == MULTICLASS:
        ii = -100 if ignore_index is None else ignore_index
        keep = target != ii
        safe = torch.where(keep, target, torch.zeros_like(target))
        w = torch.ones_like(loss) if weight is None else weight.to(loss.dtype)[safe]
        w = torch.where(keep, w, torch.zeros_like(w))
        denominator = w.sum()
    else:
        keep = torch.ones_like(target, dtype=torch.bool) if ignore_index is None else target != ignore_index
        w = torch.ones_like(loss) if weight is None else torch.broadcast_to(weight.to(loss.dtype), loss.shape)
        w = torch.where(keep, w, torch.zeros_like(w))
        denominator = keep.sum().to(loss.dtype)
    loss = torch.where(keep, loss, torch.zeros_like(loss)) * (keep.to(loss.dtype) if reads_weight else w)
    if sample_weight is not None:
        loss = loss * sample_weight.to(loss.dtype)
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / denominator
    raise ValueError(reduction)


def grad_output(shape, *seed_parts):
    """A grad_output that is not 1: random in [0.5, 1.5) (float64) for an unreduced loss, None for a scalar
    (then ``backward`` uses 1.7)."""
    if len(shape) == 0:
        return None
    return torch.rand(shape, generator=generator("grad_output", *seed_parts), dtype=torch.float64) + 0.5


def backward(out, go):
    """``(out * go).sum().backward()`` for an unreduced loss, ``(out * 1.7).backward()`` for a scalar."""
    if go is None:
        (out * 1.7).backward()
    else:
        (out * go.to(out.dtype)).sum().backward()


def assert_fullgraph_matches_eager(step, layer, *inputs):
    """step(*inputs), a loss of ``layer``'s output, under torch.compile(fullgraph=True) with the aot_eager
    backend (which raises on any graph break) gives eager's value and gradient of layer.weight."""
    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    out = compiled(*inputs)
    out.backward()
    got = layer.weight.grad.clone()
    layer.weight.grad = None
    expected = step(*inputs)
    expected.backward()
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(got, layer.weight.grad)


def run_with_grad(fn, x, go):
    """(value, gradient) of ``fn(x)`` with a fresh leaf, back-propagating ``go``."""
    leaf = x.detach().clone().requires_grad_(True)
    out = fn(leaf)
    backward(out, go)
    return out.detach(), leaf.grad
