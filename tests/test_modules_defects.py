"""Modules as users keep and call them (issue 12, "defects found from outside"): ignore_index=-100 for
elementwise and batch losses, double backward, torch.save in a new process, parameters given as tensors
that require grad, CPU autocast, and bounded caches. Truths are torch.nn.functional or hand-written
float64 references."""

import gc
import linecache
import os
import subprocess
import sys
import weakref

import pytest
import torch
import torch.nn.functional as F

import lossc
import lossc.api as api
from lossc.errors import LossParamError


def _anyloss_accuracy(s, y, L):
    """AnyLoss accuracy written out: 1 - (TP + TN) / N with a = sigmoid(L (s - 1/2))."""
    a = torch.sigmoid(L * (s - 0.5))
    return 1 - (y * a + (1 - y) * (1 - a)).sum() / s.numel()


# ---------------------------------------------------------------------------------------------
# ignore_index: None is "off"; -100 can be asked for by every kind


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_ignore_index_minus_100_drops_elementwise_targets(backend):
    torch.manual_seed(0)
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    y = torch.rand(4, 5, dtype=torch.float64)
    y[0, 1] = y[2, 3] = y[3, 0] = -100.0
    keep = y != -100
    for reduction in ("mean", "sum"):
        out = lossc.loss("bce", ignore_index=-100, reduction=reduction, backend=backend)(x, y)
        expected = F.binary_cross_entropy_with_logits(x[keep], y[keep], reduction=reduction)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(lossc.loss("bce", ignore_index=-100, backend=backend)(x, y), x)
    assert bool((grad[~keep] == 0).all()) and bool((grad[keep] != 0).all())
    r = torch.randn(4, 5, dtype=torch.float64)
    out = lossc.loss("mse", ignore_index=-100, backend=backend)(x, torch.where(keep, r, -100.0))
    torch.testing.assert_close(out, F.mse_loss(x[keep], r[keep]), rtol=1e-12, atol=1e-12)
    unreduced = lossc.loss("mse", ignore_index=-100, reduction="none", backend=backend)(x, torch.where(keep, r, -100.0))
    assert bool((unreduced[~keep] == 0).all())


def test_ignore_index_none_is_the_elementwise_default_and_drops_nothing():
    x = torch.randn(3, 4, dtype=torch.float64)
    y = torch.randn(3, 4, dtype=torch.float64)
    y[1, 2] = -100.0
    expected = F.mse_loss(x, y)
    torch.testing.assert_close(lossc.loss("mse")(x, y), expected, rtol=1e-12, atol=0)
    torch.testing.assert_close(lossc.loss("mse", ignore_index=None)(x, y), expected, rtol=1e-12, atol=0)
    assert lossc.loss("mse").ignore_index is None and lossc.loss("anyloss_f1").ignore_index is None
    module = lossc.module("mse")
    torch.testing.assert_close(module.mse_loss(x, y), expected, rtol=1e-12, atol=0)


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_ignore_index_minus_100_drops_batch_elements(backend):
    torch.manual_seed(1)
    s = torch.rand(40, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 2, (40,)).double()
    y[[3, 7, 20]] = -100.0
    keep = y != -100
    out = lossc.loss("anyloss_accuracy", L=10.0, ignore_index=-100, backend=backend)(s, y)
    torch.testing.assert_close(out, _anyloss_accuracy(s[keep], y[keep], 10.0), rtol=1e-12, atol=1e-12)
    (grad,) = torch.autograd.grad(out, s)
    assert bool((grad[~keep] == 0).all())
    with pytest.raises(lossc.LossError):  # not asked for: -100 is a target value, and not a label
        lossc.loss("anyloss_accuracy", L=10.0, backend=backend)(s, y)


def test_multiclass_default_stays_minus_100():
    torch.manual_seed(2)
    x = torch.randn(6, 4, dtype=torch.float64)
    y = torch.tensor([0, -100, 3, 2, -100, 1])
    torch.testing.assert_close(lossc.loss("cross_entropy")(x, y), F.cross_entropy(x, y), rtol=1e-12, atol=0)
    assert lossc.loss("cross_entropy").ignore_index == -100
    with pytest.raises(lossc.LossError):  # None: every target must be a class
        lossc.loss("cross_entropy", ignore_index=None)(x, y)
    y2 = torch.tensor([0, 1, 3, 2, 0, 1])
    torch.testing.assert_close(lossc.loss("cross_entropy", ignore_index=None)(x, y2), F.cross_entropy(x, y2),
                               rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# double backward


def _row(shape=(5, 4)):
    torch.manual_seed(3)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, shape[1], (shape[0],) + tuple(shape[2:]))
    return x, y


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradgradcheck_row_loss_torch_engine(reduction):
    x, y = _row()
    module = lossc.loss("focal", gamma=2.0, backend="torch", reduction=reduction)
    assert torch.autograd.gradgradcheck(lambda x: module(x, y), (x,))
    weighted = lossc.loss("cross_entropy", backend="torch", reduction=reduction,
                          weight=torch.tensor([1.0, 2.0, 0.5, 3.0], dtype=torch.float64))
    y[1] = -100
    assert torch.autograd.gradgradcheck(lambda x: weighted(x, y), (x,))


def test_gradgradcheck_row_loss_with_positions():
    x, y = _row((2, 3, 4))
    module = lossc.loss("cross_entropy", backend="torch")
    assert torch.autograd.gradgradcheck(lambda x: module(x, y), (x,))


def test_gradgradcheck_elementwise_loss_torch_engine():
    torch.manual_seed(4)
    x = torch.randn(7, dtype=torch.float64, requires_grad=True)
    y = torch.rand(7, dtype=torch.float64)
    module = lossc.loss("bce", backend="torch")
    assert torch.autograd.gradgradcheck(lambda x: module(x, y), (x,))
    y[2] = -100.0
    module = lossc.loss("bce", backend="torch", ignore_index=-100, reduction="none")
    assert torch.autograd.gradgradcheck(lambda x: module(x, y), (x,))


def test_gradgradcheck_batch_loss_torch_engine():
    torch.manual_seed(5)
    x = torch.randn(9, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 2, (9,)).double()
    module = lossc.loss("anyloss_f1", L=10.0, backend="torch", from_logits=True)
    assert torch.autograd.gradgradcheck(lambda x: module(x, y), (x,))


def test_hessian_matches_a_hand_written_reference():
    """The second derivative itself, against F.cross_entropy's (float64)."""
    x, y = _row()
    v = torch.randn_like(x)
    (g,) = torch.autograd.grad(lossc.loss("cross_entropy", backend="torch")(x, y), x, create_graph=True)
    (hv,) = torch.autograd.grad((g * v).sum(), x)
    (g_ref,) = torch.autograd.grad(F.cross_entropy(x, y), x, create_graph=True)
    (hv_ref,) = torch.autograd.grad((g_ref * v).sum(), x)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(hv, hv_ref, rtol=1e-10, atol=1e-14)


def test_double_backward_refuses_an_input_changed_in_place():
    x, y = _row()
    z = x * 1.0
    out = lossc.loss("cross_entropy", backend="torch")(z, y)
    with torch.no_grad():
        z.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        torch.autograd.grad(out, x, create_graph=True)


def test_double_backward_triton_engine_matches_reference():
    pytest.importorskip("triton")
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
        pytest.skip("no GPU, and TRITON_INTERPRET is not set")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(6)
    cases = [("focal", dict(gamma=2.0), torch.randn(6, 5), torch.randint(0, 5, (6,))),
             ("bce", {}, torch.randn(8), torch.rand(8))]
    for name, params, x, y in cases:
        x, y = x.to(device), y.to(device)
        v = torch.randn_like(x)
        results = []
        for backend in ("triton", "reference"):
            xr = x.clone().requires_grad_()
            (g,) = torch.autograd.grad(lossc.loss(name, backend=backend, **params)(xr, y), xr, create_graph=True)
            (hv,) = torch.autograd.grad((g * v).sum(), xr)
            results.append((g, hv))
        torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# torch.save / torch.load in a new process


_LOAD = """
import sys, torch
for path in sys.argv[1:]:
    module = torch.load(path + ".loss.pt", weights_only=False)
    x, y = torch.load(path + ".inputs.pt")
    print(repr(float(module(x, y))), module.training, type(module).__name__)
"""

CASES = ["focal", "text", "bare", "batch", "tasks"]


def _saved_case(case):
    """(module, x, y, the loss written out by hand) of one kind of module a user keeps."""
    torch.manual_seed(7)
    if case == "focal":
        module = lossc.loss("focal", gamma=1.5, weight=torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64),
                            ignore_index=1)
        x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 0])
        keep = y != 1
        logp = F.log_softmax(x, 1)[torch.arange(5), y]
        wy = module.weight[y]
        expected = (-(1 - logp.exp()) ** 1.5 * logp * wy)[keep].sum() / wy[keep].sum()
    elif case == "text":
        module = lossc.loss("loss sq(k = 2.0) over regression:\n    return k * r^2\n", k=3.0, reduction="sum")
        x, y = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
        expected = (3.0 * (x - y) ** 2).sum()
    elif case == "bare":
        module = lossc.loss("a * abs(r)", over="regression", a=0.5)
        x, y = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64)
        expected = (0.5 * (x - y).abs()).mean()
    elif case == "batch":
        module = lossc.loss("anyloss_accuracy", L=10.0)
        x, y = torch.rand(12, dtype=torch.float64), torch.randint(0, 2, (12,)).double()
        expected = _anyloss_accuracy(x, y, 10.0)
    else:
        module = lossc.loss("uncertainty_weighting")
        with torch.no_grad():
            for parameter in module.parameters():
                parameter.add_(0.25)  # learned values must survive the trip
        x, y = torch.tensor(1.5, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64)
        s = module.learned["s"].detach().double()
        expected = (torch.exp(-s[0]) * x + s[0] + torch.exp(-s[1]) * y + s[1]) / 2
    return module, x, y, expected


def test_torch_save_loads_in_a_new_process(tmp_path):
    expected = {}
    for case in CASES:
        module, x, y, expected[case] = _saved_case(case)
        module.eval()
        torch.save(module, tmp_path / f"{case}.loss.pt")
        torch.save((x, y), tmp_path / f"{case}.inputs.pt")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    result = subprocess.run([sys.executable, "-c", _LOAD] + [str(tmp_path / case) for case in CASES],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    for case, line in zip(CASES, result.stdout.splitlines(), strict=True):
        value, training, class_name = line.split()
        assert training == "False" and class_name == type(_saved_case(case)[0]).__name__
        assert float(value) == pytest.approx(float(expected[case]), rel=1e-12, abs=1e-15), case


def test_options_changed_after_construction_are_pickled():
    import pickle
    module = lossc.loss("mse")
    module.reduction = "sum"
    copy = pickle.loads(pickle.dumps(module))
    x, y = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    torch.testing.assert_close(copy(x, y), ((x - y) ** 2).sum(), rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# parameters given as tensors that require grad


def test_parameter_tensor_requiring_grad_is_refused():
    gamma = torch.tensor(2.0, requires_grad=True)
    with pytest.raises(LossParamError, match="requires grad"):
        lossc.loss("focal", gamma=gamma)
    with pytest.raises(LossParamError, match="requires grad"):
        lossc.module("focal").focal_loss(torch.randn(3, 2), torch.tensor([0, 1, 1]), gamma=torch.nn.Parameter(
            torch.tensor(1.0)))
    with pytest.raises(LossParamError, match="requires grad"):
        lossc.loss("ldam", counts=torch.rand(4, requires_grad=True))
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 1, 2, 2, 0])
    torch.testing.assert_close(lossc.loss("focal", gamma=gamma.detach())(x, y), lossc.loss("focal", gamma=2.0)(x, y),
                               rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------
# CPU autocast


@pytest.mark.parametrize("backend", ["torch", "reference"])
def test_cpu_autocast_returns_float32_as_cross_entropy(backend):
    torch.manual_seed(8)
    x = torch.randn(16, 10).bfloat16().requires_grad_()
    y = torch.randint(0, 10, (16,))
    module = lossc.loss("cross_entropy", backend=backend)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x, y)
        expected = F.cross_entropy(x, y)
    assert out.dtype == expected.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    (grad,) = torch.autograd.grad(out, x)
    (expected_grad,) = torch.autograd.grad(expected, x)
    assert grad.dtype == torch.bfloat16
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=0)
    s = torch.randn(8).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bce = lossc.loss("bce", backend=backend)(s, torch.rand(8))
        batch = lossc.loss("anyloss_f1", backend=backend, from_logits=True)(s, torch.randint(0, 2, (8,)).float())
    assert bce.dtype == batch.dtype == torch.float32
    assert module(x, y).dtype == torch.bfloat16  # (outside autocast: the input's dtype, as before)


# ---------------------------------------------------------------------------------------------
# bounded caches


def _generated_counts():
    import torch._library.custom_ops as custom_ops
    gc.collect()
    return (sum(name.startswith("lossc_generated_") for name in sys.modules),
            sum(name.startswith("<lossc ") for name in linecache.cache),
            sum(name.startswith("lossc::") for name in custom_ops.OPDEF_TO_LIB))


def test_caches_stay_bounded_over_many_distinct_losses(monkeypatch):
    monkeypatch.setattr(api, "CACHE_SIZE", 3)
    x = torch.randn(4, 3, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0])
    kept = lossc.loss("logsumexp(z) * 0.5 - z[y]", over="multiclass")  # still used after it leaves the caches
    first = weakref.ref(sys.modules[type(kept).__module__].KERNEL)
    dropped = weakref.ref(sys.modules[type(lossc.loss("logsumexp(z) * 0.25 - z[y]", over="multiclass"))
                                      .__module__].KERNEL)
    before = None
    for i in range(12):
        scale = 1.0 + i / 8
        module = lossc.loss(f"logsumexp(z) * {scale} - z[y]", over="multiclass")
        lse = torch.logsumexp(x, 1)
        torch.testing.assert_close(module(x, y), (lse * scale - x[torch.arange(4), y]).mean(), rtol=1e-12, atol=1e-12)
        del module
        if i == 5:
            before = _generated_counts()
    after = _generated_counts()
    assert len(api._MODULES) <= 3 and len(api._MEMORY) <= 3
    assert api._derive.cache_info().currsize <= api._derive.cache_info().maxsize
    assert after[0] <= before[0] and after[1] <= before[1] and after[2] <= before[2], (before, after)
    assert dropped() is None  # a module nothing uses is freed, its ops unregistered
    assert first() is not None  # one still in use lives, and works (forward and backward)
    z = x.clone().requires_grad_()
    kept(z, y).backward()
    expected = torch.softmax(x, 1) * 0.5
    expected[torch.arange(4), y] -= 1.0
    torch.testing.assert_close(z.grad, expected / 4, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["cross_entropy", "bce", "anyloss_f1"])
def test_class_weights_that_require_grad_are_refused(name):
    """A weight tensor that requires grad would have its gradient silently dropped (the weights are
    constants of the compiled loss, as torch.nn.functional.cross_entropy's have no derivative): refused."""
    weight = torch.ones(3 if name == "cross_entropy" else 4, requires_grad=True)
    with pytest.raises(lossc.LossParamError, match="requires grad"):
        lossc.loss(name, weight=weight)
    lossc.loss(name, weight=weight.detach())  # a constant weight is fine
