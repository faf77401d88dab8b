"""The triton kernels of the batch form (partial sums per program, then the gradient) against the fused
torch engine in float64 on the same values: float32, bfloat16 and float16 inputs, probabilities and
logits, weights and ignore_index, several programs (n > the block), grad_output != 1. Under
TRITON_INTERPRET=1 on the CPU (set by conftest.py) or on a GPU."""

from __future__ import annotations

import os

import pytest
import torch

triton = pytest.importorskip("triton")

import lossc  # noqa: E402
from conftest import assert_fullgraph_matches_eager, generator  # noqa: E402
from references import BATCH_REFERENCES  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
if DEVICE == "cpu" and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
    pytest.skip("no GPU, and TRITON_INTERPRET is not set", allow_module_level=True)

# float32 accumulation over n terms: relative errors of about sqrt(n) eps in the sums
TOLERANCE = {torch.float32: 2e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def _run(name, backend, x, y, go, **options):
    call = {k: options.pop(k) for k in list(options) if k == "sample_weight"}
    module = lossc.loss(name, backend=backend, **options)
    leaf = x.detach().clone().requires_grad_(True)
    value = module(leaf, y, **call)
    (value * go).backward()
    return value.detach(), leaf.grad


@pytest.mark.parametrize("from_logits", [False, True], ids=["probabilities", "logits"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("name", sorted(BATCH_REFERENCES))
def test_triton_against_float64(name, dtype, from_logits):
    g = generator("triton-batch", name, str(dtype), from_logits)
    n = 2500  # three programs of 1024
    x = torch.randn(n, generator=g) * (3.0 if from_logits else 0.1)
    if not from_logits:
        x = (0.5 + x).clamp(0.0, 1.0)
        x[:4] = torch.tensor([0.0, 1.0, 0.0, 1.0])  # saturated: 1 - a must not round to 0
    y = (torch.rand(n, generator=g) < 0.4).float()
    x = x.to(dtype)
    value, grad = _run(name, "triton", x.to(DEVICE), y.to(dtype).to(DEVICE), 1.7, from_logits=from_logits)
    exp_value, exp_grad = _run(name, "torch", x.double(), y.double(), 1.7, from_logits=from_logits)
    assert value.dtype == dtype and grad.dtype == dtype
    tol = TOLERANCE[dtype]
    torch.testing.assert_close(value.double().cpu(), exp_value, rtol=tol, atol=tol)
    scale = float(exp_grad.abs().max())
    torch.testing.assert_close(grad.double().cpu(), exp_grad, rtol=tol, atol=tol * scale)
    if dtype == torch.float32 and not from_logits:  # the saturated entries to float32 accuracy
        torch.testing.assert_close(grad[:4].double().cpu(), exp_grad[:4], rtol=1e-4, atol=0)


@pytest.mark.parametrize("name", ["anyloss_f1", "anyloss_balanced_accuracy"])
def test_triton_weights_and_ignore_index(name):
    g = generator("triton-batch-weights", name)
    n = 1500
    x = (0.5 + torch.randn(n, generator=g) * 0.1).clamp(0.0, 1.0)
    y = (torch.rand(n, generator=g) < 0.4).float()
    y = torch.where(torch.rand(n, generator=g) < 0.2, torch.full_like(y, 5.0), y)
    sw = torch.rand(n, generator=g) * 2
    weight = torch.rand(n, generator=g) + 0.5
    value, grad = _run(name, "triton", x.to(DEVICE), y.to(DEVICE), 0.6, weight=weight.to(DEVICE), ignore_index=5,
                       sample_weight=sw.to(DEVICE))
    exp_value, exp_grad = _run(name, "torch", x.double(), y.double(), 0.6, weight=weight.double(), ignore_index=5,
                               sample_weight=sw.double())
    torch.testing.assert_close(value.double().cpu(), exp_value, rtol=2e-5, atol=2e-6)
    torch.testing.assert_close(grad.double().cpu(), exp_grad, rtol=2e-5, atol=2e-5 * float(exp_grad.abs().max()))
    assert torch.all(grad.cpu()[y == 5] == 0)


def test_the_generated_module_holds_the_batch_kernels():
    text = lossc.generate("anyloss_f1", target="triton")
    assert "_anyloss_f1_batch_sums" in text and "_anyloss_f1_batch_grad" in text
    assert "_tl_sigmoid(-" in text and "1.0 - _tl_sigmoid" not in text  # 1 - a is computed as sigmoid(-x)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_torch_compile_fullgraph(backend):
    """A batch loss traces as its two custom ops (and the in-place backward scaling on triton)."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(6, 1).to(DEVICE)
    loss = lossc.loss("anyloss_f1", backend=backend, from_logits=True)

    def step(x, y):
        return loss(layer(x).squeeze(1), y) * 1.5

    x = torch.randn(40, 6, device=DEVICE)
    y = (torch.arange(40, device=DEVICE) % 3 == 0).float()
    assert_fullgraph_matches_eager(step, layer, x, y)


def test_second_backward_is_refused_on_triton():
    """The backward scales the saved gradient in place, as the row form's does."""
    x = torch.rand(50, device=DEVICE, requires_grad=True)
    out = lossc.loss("anyloss_f1", backend="triton")(x, (torch.arange(50, device=DEVICE) % 2).float())
    (out * 2.0).backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        (out * 2.0).backward()
