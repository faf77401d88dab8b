"""The torch engine runs rows (or elements) in chunks; test shapes fit in one chunk of the default size, so
here each loss runs with chunks of a few rows and must give what one chunk gives: values and gradients in
float64 with weights, ignored rows, sample weights, every reduction and grad_output != 1; float32 and
bfloat16 inputs (the float32 scratch buffer); and inplace_grad (the scratch buffer copied over the input)."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

import lossc
from conftest import MULTICLASS, REFERENCES, backward, generator, grad_output, loss_shape, make_input

# ([N, C, S] inputs: chunks of 3 rows are whole n's for S <= 3 (focal, kl_div), ranges of one n's positions
# for S > 3 (cross_entropy, label_smoothing))
CASES = [("cross_entropy", (23, 7)), ("focal", (5, 6, 3)), ("nfl", (23, 7)), ("brier", (23, 7)),
         ("cross_entropy", (3, 7, 2, 4)), ("label_smoothing", (2, 5, 7)), ("kl_div", (4, 5, 2)),
         ("logit_adjusted", (23, 7)), ("z_loss", (23, 7)), ("label_smoothing", (23, 7)), ("kl_div", (13, 5)),
         ("huber", (5, 4, 3)), ("sigmoid_focal", (37,))]


def _kernel(module):
    return sys.modules[type(module).__module__].KERNEL


def _run(module, x, t, go, call):
    z = (x.detach() / 2).requires_grad_(True)
    value = module(z * 2, t, **call)
    backward(value, go)
    return value.detach(), z.grad / 2


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
@pytest.mark.parametrize("inplace", [False, True], ids=["", "inplace"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name, shape", CASES, ids=[f"{c[0]}-{'x'.join(map(str, c[1]))}" for c in CASES])
def test_small_chunks_give_what_one_chunk_gives(name, shape, reduction, inplace, dtype, monkeypatch):
    kind = REFERENCES[name].kind
    g = generator("chunks", name, reduction)
    x, t = make_input(kind, shape, g)
    options, call = {}, {}
    if kind == MULTICLASS:
        t = t.clone()
        t.view(-1)[::4] = -100
        options["weight"] = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.5
    if kind != "distribution":
        call["sample_weight"] = torch.rand(loss_shape(kind, shape), generator=g, dtype=torch.float64) + 0.5
    go = grad_output(loss_shape(kind, shape) if reduction == "none" else (), "chunks", name)
    x = x.to(dtype)
    if kind != MULTICLASS:
        t = t.to(dtype)
    module = lossc.loss(name, backend="torch", reduction=reduction, inplace_grad=inplace, **options,
                        **REFERENCES[name].params)
    whole = _run(module, x, t, go, call)
    width = shape[1] if kind in (MULTICLASS, "distribution") else 1
    monkeypatch.setattr(_kernel(module), "chunk", 3 * width)  # 3 rows (or elements) per chunk
    chunked = _run(module, x, t, go, call)
    tol = dict(rtol=1e-12, atol=1e-14) if dtype == torch.float64 else dict(rtol=1e-5, atol=1e-6)
    if dtype == torch.bfloat16:  # (the sum of the reduced loss is rounded once to bfloat16 either way)
        tol = dict(rtol=8e-3, atol=1e-5)
    torch.testing.assert_close(chunked[0].double(), whole[0].double(), **tol)
    torch.testing.assert_close(chunked[1].double(), whole[1].double(), **tol)


class _NewTensors(TorchDispatchMode):
    """Counts the tensors of at least `size` elements that torch operations allocate: results on a storage
    none of the operation's tensor arguments has (views, in-place and out= results are not new)."""

    def __init__(self, size):
        super().__init__()
        self.size, self.count = size, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        given = {a.untyped_storage().data_ptr() for a in pytree.tree_leaves((args, kwargs))
                 if isinstance(a, torch.Tensor)}
        for r in pytree.tree_leaves(result):
            if isinstance(r, torch.Tensor) and r.numel() >= self.size and r.untyped_storage().data_ptr() not in given:
                self.count += 1
        return result


FUSED = sorted(name for name, ref in REFERENCES.items()
               if ref.kind in (MULTICLASS, "distribution", "binary", "margin", "regression"))


@pytest.mark.parametrize("name", FUSED)
def test_the_fused_program_allocates_nothing_per_chunk(name, monkeypatch):
    """The fused program writes its temporaries into the buffers of a pool that the engine keeps across
    the chunks of a call: with twice as many chunks, a call allocates no more chunk-sized tensors."""
    kind = REFERENCES[name].kind
    row = kind in (MULTICLASS, "distribution")
    shape = (48, 16) if row else (768,)
    x, t = make_input(kind, shape, generator("pool", name))
    module = lossc.loss(name, backend="torch", reduction="sum", **REFERENCES[name].params)
    mod = sys.modules[type(module).__module__]
    from lossc import runtime as rt  # (the engine: the generated module imports it)
    if not row:
        t = t.to(x.dtype)
    values = rt._Values(mod.KERNEL.layout, rt._flat(mod.KERNEL, module.params),
                        rt._class_tensors(mod.KERNEL, module.params, None, x))
    width = shape[1] if row else 1
    counts = []
    for rows in (12, 6):  # 4 chunks, then 8
        monkeypatch.setattr(mod.KERNEL, "chunk", rows * width)
        with _NewTensors(6 * width) as new:
            rt._torch_engine(mod.KERNEL, x, t, None, None, None, 1.0, values, "sum", True)
        counts.append(new.count)
    assert counts[0] == counts[1], counts
