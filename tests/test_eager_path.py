"""Eager calls on plain tensors run the fused loss through a plain autograd.Function (``_Eager``), not
through its ``torch.library`` custom op, whose dispatch costs several times the host time of the rest of a
call; under a dispatch mode (fake tensors, tracing), torch.compile or functorch the custom op is used."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

import lossc


class PassThrough(TorchDispatchMode):
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _count_op_calls(kernel, attribute="op"):
    """Wraps the kernel's custom op so that its calls are counted; returns the counter."""
    fused = getattr(kernel, attribute)
    calls = []
    real = fused.op

    def counted(*args):
        calls.append(1)
        return real(*args)

    fused.op = counted
    return calls, lambda: setattr(fused, "op", real)


@pytest.mark.parametrize("name, shape", [("focal", (5, 7)), ("bce", (6,))])
def test_eager_calls_skip_the_custom_op_and_give_the_same_result(name, shape):
    module = lossc.loss(name, backend="torch")
    kernel = lossc.module(name).KERNEL
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    t = torch.randint(0, shape[1], (shape[0],), generator=g) if len(shape) == 2 else \
        (torch.rand(shape, generator=g) < 0.5).double()
    calls, restore = _count_op_calls(kernel)
    try:
        eager_leaf = x.clone().requires_grad_(True)
        eager = module(eager_leaf, t)
        (eager * 3.0).backward()
        assert not calls
        with torch.no_grad():
            module(x, t)
        assert not calls
        # the same call through the custom op (forced by a no-op dispatch mode) gives the same numbers
        op_leaf = x.clone().requires_grad_(True)
        with PassThrough():
            through_op = module(op_leaf, t)
        (through_op * 3.0).backward()
        assert calls
    finally:
        restore()
    assert torch.equal(eager, through_op)
    assert torch.equal(eager_leaf.grad, op_leaf.grad)


def test_fake_tensors_go_through_the_custom_op():
    module = lossc.loss("focal", backend="torch", validate=False, reduction="none")
    with FakeTensorMode():
        x = torch.empty(4, 6, requires_grad=True)
        t = torch.empty(4, dtype=torch.int64)
        out = module(x, t)
        assert out.shape == (4,)
        out.sum().backward()
        assert x.grad.shape == (4, 6)


def test_batch_losses_take_the_eager_path_too():
    kernel = lossc.module("anyloss_f1").KERNEL
    calls, restore = _count_op_calls(kernel)
    sums_calls, restore_sums = _count_op_calls(kernel, "sums_op")
    try:
        x = torch.rand(9, dtype=torch.float64, requires_grad=True)
        lossc.loss("anyloss_f1", backend="torch")(x, (torch.arange(9) % 2).double()).backward()
        assert not calls and not sums_calls and x.grad is not None
    finally:
        restore()
        restore_sums()
