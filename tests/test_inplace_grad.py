"""``inplace_grad=True``: the forward writes the gradient over the input; checked against the hand-written
references (float64 on the torch engine, float32 under the triton kernels in each row regime), with
weights, ignore_index, [N, C, d1, d2] inputs, every reduction and grad_output != 1; and the refusals."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

import lossc
from conftest import (MULTICLASS, REFERENCES, backward, generator, grad_output, loss_shape, make_input,
                      reduce_reference, reference_unreduced)

TRITON = importlib.util.find_spec("triton") is not None and (
    torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET", "0") not in ("", "0"))
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"

CASES = [("cross_entropy", (13, 7)), ("focal", (5, 4, 3, 2)), ("label_smoothing", (11, 6)),
         ("kl_div", (9, 5)), ("sigmoid_focal", (13, 7)), ("huber", (5, 4, 3))]


def _inputs(kind, shape, g):
    """(input, target) float64; every fifth multiclass target ignored (-100)."""
    x, t = make_input(kind, shape, g)
    if kind == MULTICLASS:
        t = t.clone()
        t.view(-1)[::5] = -100
    return x, t


def _expected(name, x, t, reduction, weight, go):
    """(loss, gradient) of the hand-written reference under autograd, float64."""
    kind = REFERENCES[name].kind
    leaf = x.detach().double().requires_grad_(True)
    ii = -100 if kind == MULTICLASS else None
    unreduced = reference_unreduced(name, leaf, t, REFERENCES[name].params, ignore_index=ii, weight=weight)
    value = reduce_reference(unreduced, kind, t, weight=weight, ignore_index=ii, reduction=reduction,
                             reads_weight=REFERENCES[name].reads_weight)
    backward(value, go)
    return value.detach(), leaf.grad


def _run_inplace(name, x, t, reduction, weight, go, backend):
    """(loss, d loss / d h, the input's values after the backward, whether the gradient reaching the input
    is the input's own memory) with the input z = 3 h computed from a leaf h."""
    kind = REFERENCES[name].kind
    h = (x.detach() / 3).requires_grad_(True)
    z = h * 3
    seen = []
    z.register_hook(lambda grad: seen.append(grad.data_ptr() == z.data_ptr()))
    options = {"weight": weight} if weight is not None and kind == MULTICLASS else {}
    module = lossc.loss(name, reduction=reduction, backend=backend, inplace_grad=True, **options,
                        **REFERENCES[name].params)
    value = module(z, t)
    backward(value, go)
    return value.detach(), h.grad, z.detach(), seen == [True]


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name, shape", CASES, ids=[c[0] for c in CASES])
def test_torch_engine_writes_the_gradient_over_the_input(name, shape, reduction):
    kind = REFERENCES[name].kind
    g = generator("inplace", name, reduction)
    x, t = _inputs(kind, shape, g)
    weight = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.5 if kind == MULTICLASS else None
    go = grad_output(loss_shape(kind, shape) if reduction == "none" else (), "inplace", name)
    exp_value, exp_grad = _expected(name, x, t, reduction, weight, go)
    value, h_grad, z_after, own = _run_inplace(name, x, t, reduction, weight, go, "torch")
    torch.testing.assert_close(value, exp_value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(h_grad, 3 * exp_grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(z_after, exp_grad, rtol=1e-10, atol=1e-12)  # the input now holds dL/dz
    assert own  # the gradient handed back is the input's memory


@pytest.mark.skipif(not TRITON, reason="triton is not installed, or no GPU and TRITON_INTERPRET is not set")
@pytest.mark.parametrize("regime", [None, (8, 4)], ids=["default", "chunked"])
@pytest.mark.parametrize("reduction", ["none", "mean"])
@pytest.mark.parametrize("name, shape", CASES, ids=[c[0] for c in CASES])
def test_triton_kernels_write_the_gradient_over_the_input(name, shape, reduction, regime):
    kind = REFERENCES[name].kind
    if regime is not None and kind not in (MULTICLASS, "distribution"):
        pytest.skip("the row regimes are of row losses")
    g = generator("inplace-triton", name, reduction)
    x, t = _inputs(kind, shape, g)
    weight = torch.rand(shape[1], generator=g, dtype=torch.float64) + 0.5 if kind == MULTICLASS else None
    go = grad_output(loss_shape(kind, shape) if reduction == "none" else (), "inplace-triton", name)
    exp_value, exp_grad = _expected(name, x.float().double(), t, reduction, weight, go)
    device_t = t.to(DEVICE) if kind == MULTICLASS else t.float().to(DEVICE)
    device_w = None if weight is None else weight.float().to(DEVICE)
    device_go = None if go is None else go.float().to(DEVICE)
    run = lambda: _run_inplace(name, x.float().to(DEVICE), device_t, reduction, device_w, device_go, "triton")  # noqa: E731
    if regime is None:
        value, h_grad, z_after, own = run()
    else:
        launcher = lossc.module(name, target="all", **REFERENCES[name].params).KERNEL.triton
        with launcher.configured(tile_classes=regime[0], chunk=regime[1]):
            value, h_grad, z_after, own = run()
    tol = dict(rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(value.double().cpu(), exp_value, **tol)
    torch.testing.assert_close(z_after.double().cpu(), exp_grad, **tol)
    torch.testing.assert_close(h_grad.double().cpu(), 3 * exp_grad, **tol)
    assert own  # the gradient handed back is the input's memory


def test_an_input_that_another_node_saved_is_refused_at_its_backward():
    """exp saves its output: overwriting it would corrupt exp's backward, and autograd says so."""
    h = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    value = lossc.loss("cross_entropy", inplace_grad=True)(h.exp(), torch.tensor([0, 1, 2, 3]))
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        value.backward()


def test_refusals():
    t = torch.tensor([0, 1, 2, 3])
    leaf = torch.randn(4, 5, requires_grad=True)
    with pytest.raises(lossc.LossInputError, match="not a leaf"):
        lossc.loss("cross_entropy", inplace_grad=True)(leaf, t)
    with pytest.raises(lossc.LossInputError, match="nor a view of one"):  # it would overwrite the leaf
        lossc.loss("cross_entropy", inplace_grad=True)(leaf.view(4, 5), t)
    with pytest.raises(lossc.LossParamError, match="torch or triton engine"):
        lossc.loss("cross_entropy", inplace_grad=True, backend="reference")(leaf * 2, t)
    with pytest.raises(lossc.LossParamError, match="row and elementwise losses"):
        lossc.loss("anyloss_f1", inplace_grad=True)
    module = lossc.loss("cross_entropy", inplace_grad=True)
    with pytest.raises(lossc.LossParamError, match="torch.compile"):
        torch.compile(lambda z: module(z * 2, t), backend="eager")(leaf)


def test_without_a_gradient_the_input_is_left_alone():
    z = torch.randn(6, 5, dtype=torch.float64)
    before = z.clone()
    t = torch.tensor([0, 1, 2, 3, 4, 0])
    with torch.no_grad():
        value = lossc.loss("focal", inplace_grad=True)(z, t)
    torch.testing.assert_close(z, before, rtol=0, atol=0)
    torch.testing.assert_close(value, lossc.loss("focal")(before, t), rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["torch", pytest.param("triton", marks=pytest.mark.skipif(
    not TRITON, reason="triton is not installed, or no GPU and TRITON_INTERPRET is not set"))])
def test_a_strided_input_gets_its_gradient_written_over_it(backend):
    """A non-contiguous input (a transposed view of the model's output): the engine works on a copy and the
    gradient is copied over the input, in the input's own layout."""
    g = generator("inplace-strided", backend)
    dtype = torch.float64 if backend == "torch" else torch.float32
    base = torch.randn((7, 13), generator=g, dtype=torch.float64)
    t = torch.randint(0, 7, (13,), generator=g)
    h = base.to(dtype).to(DEVICE).clone().requires_grad_(True)
    z = (h * 1.0).t()  # [13, 7], not contiguous
    assert not z.is_contiguous()
    module = lossc.loss("focal", backend=backend, reduction="sum", inplace_grad=True)
    module(z, t.to(DEVICE)).backward()
    leaf = base.t().clone().requires_grad_(True)
    REFERENCES["focal"].fn(leaf, t, **REFERENCES["focal"].params).sum().backward()
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(z.detach().double().cpu(), leaf.grad, **tol)
    torch.testing.assert_close(h.grad.t().double().cpu(), leaf.grad, **tol)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_a_second_backward_is_refused(backend):
    """The backward scales the input's memory (the gradient) in place: a second backward through the same
    graph would scale it again, so autograd refuses it."""
    if backend == "triton" and not TRITON:
        pytest.skip("triton needs a GPU or TRITON_INTERPRET=1")
    h = torch.randn(6, 5, device=DEVICE if backend == "triton" else "cpu", requires_grad=True)
    t = torch.tensor([0, 1, 2, 3, 4, 0], device=h.device)
    out = lossc.loss("cross_entropy", backend=backend, inplace_grad=True)(h * 1.0, t)
    (out * 2.0).backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (out * 2.0).backward()
